"""The `i` detail of one cost row: costs, price and margins, which source wins and why, and the
vendor-cost history as a sparkline above the table of values (issues 18.3, 18.5, 20.11)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from textual import getters, work
from textual.widgets import Sparkline, Static

from costrecon_tui.client import CostRow
from costrecon_tui.screens.dialogs import TextScreen
from costrecon_tui.widgets import display

if TYPE_CHECKING:
    from costrecon_tui.app import CostreconApp

HISTORY_ROWS = 50  # the newest values in the table; the sparkline draws every one

KIND_WORDS = {
    "import": "price file",
    "pull": "distributor API",
    "manual": "manual edit",
    "revert": "manual reverted",
}


def _dec(value: Any) -> Decimal | None:
    try:
        return None if value is None else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def margin_lines(row: CostRow) -> Text:
    t = Text()
    if row.price is None:
        t.append("price           — (the PSA gives no sell price for this item)\n")
        return t
    t.append(f"price           {display.amount(row.price)}  (read from the PSA, never changed)\n")
    now = "—" if row.margin_pct is None else f"{row.margin_pct:.1f} %"
    after = "—" if row.margin_after_pct is None else f"{row.margin_after_pct:.1f} %"
    t.append(f"margin now      {now}\n")
    t.append(f"margin after    {after}")
    if row.line_margin_min_after_pct is not None:
        t.append(f"  (lowest contract line {row.line_margin_min_after_pct:.1f} %)")
    t.append("\n")
    if row.below_margin_floor:
        t.append(
            "! the vendor cost takes at least one contract line below the margin floor "
            "([push] margin_floor); the approval lists them\n",
            style="bold",
        )
    return t


def precedence_lines(row: CostRow, now: datetime) -> Text:
    """Which source wins and why, when more than one supplies a cost (issue 20.11)."""
    t = Text()
    src = row.vendor_source
    why = src.extra.get("wins_because") if src else None
    if not row.vendor_sources:
        return t
    t.append(f"\n{len(row.vendor_sources)} sources supply a cost; the first wins\n", style="bold")
    if why:
        t.append(f"wins because    {display.plain(why)}\n")
    for s in row.vendor_sources:
        who = s.get("vendor") or (f"manual by {s.get('by')}" if s.get("by") else s.get("kind"))
        where = f" ({s.get('file')})" if s.get("file") else ""
        mark = "▶ " if s.get("wins") else "  "
        t.append(
            f"{mark}{display.amount(_dec(s.get('cost'))):>10} {s.get('currency') or ''}  "
            f"{display.plain(who)}{display.plain(where)}, {display.stamp(s.get('at'), now)}\n"
        )
    return t


def history_table(points: list[dict[str, Any]], now: datetime) -> Table:
    table = Table(box=None, expand=True, header_style="bold", pad_edge=False)
    table.add_column("When", no_wrap=True)
    table.add_column("Vendor cost", justify="right", no_wrap=True)
    table.add_column("Source", ratio=1, overflow="ellipsis", no_wrap=True)
    table.add_column("By", no_wrap=True)
    for p in reversed(points[-HISTORY_ROWS:]):  # newest first
        what = KIND_WORDS.get(str(p.get("kind")), display.plain(p.get("kind")))
        where = p.get("source") or ""
        vendor = f" · {p['vendor']}" if p.get("vendor") else ""
        table.add_row(
            display.stamp(p.get("at"), now),
            display.amount(_dec(p.get("cost"))) if p.get("cost") is not None else "—",
            f"{what}: {display.plain(where)}{display.plain(vendor)}",
            display.plain(p.get("by") or ""),
        )
    return table


def pricing_text(
    points: list[dict[str, Any]], now: datetime, current: Decimal | None = None
) -> Text:
    """The terms and rate bands of the distributor-API value in use (issue 16): which band the
    cost came from, and what another quantity would cost. One pull can price an item twice (an
    annual and a monthly term); the one whose cost the row shows is drawn, else the newest."""
    t = Text()
    pulled = [p for p in points if p.get("kind") == "pull" and isinstance(p.get("terms"), dict)]
    if not pulled:
        return t
    in_use = [p for p in pulled if current is not None and _dec(p.get("cost")) == current]
    p = (in_use or pulled)[-1]
    terms = p["terms"]
    bits = [
        display.plain(terms.get("billing") or "billing term not given"),
        display.plain(terms.get("commitment") or "no commitment"),
        f"priced for quantity {display.plain(terms.get('quantity'))}",
    ]
    unused = "" if in_use or current is None else " (not the cost in use)"
    t.append(
        f"{display.plain(p.get('vendor') or 'distributor')} API pull, "
        f"{display.stamp(p.get('at'), now)}{unused}: {', '.join(bits)}\n",
        style="bold",
    )
    bands = [b for b in p.get("bands") or [] if isinstance(b, dict)]
    if not bands:
        t.append("  one price for every quantity\n")
        return t
    # Bands are kept as the distributor sent them: per its billing period, before the cost
    # column's conversion to the catalogue's period.
    t.append(f"  rate bands per {display.plain(terms.get('billing') or 'billing period')}:\n")
    quantity = terms.get("quantity")
    for b in bands:
        start, end = b.get("start"), b.get("end")
        span = f"{start}+" if end is None else f"{start}–{end}"
        holds = (
            isinstance(quantity, int)
            and isinstance(start, int)
            and start <= quantity
            and (end is None or (isinstance(end, int) and quantity <= end))
        )
        mark = "▶ " if holds else "  "
        kind = display.plain(b.get("charge_type") or "")
        listed = _dec(b.get("list_price"))
        lst = f"  list {display.amount(listed)}" if listed is not None else ""
        t.append(f"{mark}{span:>12}  {display.amount(_dec(b.get('cost'))):>10}  {kind}{lst}\n")
    return t


def chart_values(points: list[dict[str, Any]]) -> list[float]:
    # floats only to size the bars on screen; every figure shown is the Decimal text
    return [float(c) for p in points if (c := _dec(p.get("cost"))) is not None]


class ItemDetailScreen(TextScreen):
    """TextScreen plus the cost history, fetched when shown."""

    if TYPE_CHECKING:  # Textual types `app` as any App; every view runs in CostreconApp
        app = getters.app(CostreconApp)

    DEFAULT_CSS = """
    ItemDetailScreen Sparkline { height: 3; margin: 1 0 0 0; }
    ItemDetailScreen #history-caption { color: $text-muted; }
    ItemDetailScreen #history-pricing { margin: 1 0 0 0; display: none; }
    """

    def __init__(self, row: CostRow, body: Text, now: datetime) -> None:
        """``body`` is the row's detail (screens.costs.info_text); the history is added below."""
        super().__init__(
            f"Item {row.identifier}",
            body,
            extra=[
                Static("", id="history-pricing"),
                Static("vendor-cost history: loading…", id="history-caption"),
                Sparkline([], id="history-chart"),
                Static("", id="history-table"),
            ],
        )
        self.row = row
        self.now = now

    def on_mount(self) -> None:
        super().on_mount()
        self.load_history()

    @work(exclusive=True, group="item-history", exit_on_error=False)
    async def load_history(self) -> None:
        caption = self.query_one("#history-caption", Static)
        try:
            data = await self.app.client.cost_history(self.row.id)
        except Exception as exc:  # shown in the dialog; the rest of the detail stays useful
            caption.update(f"vendor-cost history: not available ({exc})")
            self.query_one("#history-chart").display = False
            return
        points = [p for p in (data or {}).get("points") or [] if isinstance(p, dict)]
        values = chart_values(points)
        chart = self.query_one("#history-chart", Sparkline)
        if len(values) < 2:
            chart.display = False
        else:
            chart.data = values
        if not points:
            caption.update("vendor-cost history: no vendor cost recorded yet")
        else:
            costs = [c for p in points if (c := _dec(p.get("cost"))) is not None]
            span = f", {display.amount(min(costs))}–{display.amount(max(costs))}" if costs else ""
            caption.update(
                f"vendor-cost history: {len(points)} value{'s' if len(points) != 1 else ''}"
                f"{span} {data.get('currency') or ''} (oldest left, newest right)"
            )
            self.query_one("#history-table", Static).update(history_table(points, self.now))
            pricing = pricing_text(points, self.now, self.row.vendor_cost)
            self.query_one("#history-pricing", Static).update(pricing)
            self.query_one("#history-pricing").display = bool(pricing)
        self.call_after_refresh(self.fit)
