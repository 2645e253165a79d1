"""The Costs view: the virtual grid plus filter, sort, in-place edit, revert and approval."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual import events, getters, on, work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.widgets import Input, Static

from costrecon_daemon.money import MoneyError, parse_amount
from costrecon_tui import keymap
from costrecon_tui.client import ApprovalItem, CostRow, DaemonError
from costrecon_tui.screens.item_detail import margin_lines, precedence_lines
from costrecon_tui.widgets import display
from costrecon_tui.widgets.cost_grid import CostGrid, fit
from costrecon_tui.widgets.errors import ReportsWorkerErrors

if TYPE_CHECKING:
    from costrecon_tui.app import CostreconApp

SORTS = [
    "identifier",
    "name",
    "contracts",
    "catalog_cost",
    "vendor_cost",
    "change",
    "change_pct",
    "state",
]
SORT_TITLES = {
    "identifier": "PSA ID",
    "name": "name",
    "contracts": "# contracts",
    "catalog_cost": "catalogue cost",
    "vendor_cost": "vendor cost",
    "change": "change",
    "change_pct": "change %",
    "state": "action",
}
SORT_COLUMN = {"change_pct": "change"}
CONFIRM_DELAY = 0.15

_DIGITS = re.compile(r"\d+")


def _decimal_mark(raw: str) -> tuple[str, str]:
    """Which mark is the decimal point in a cost typed by a person: ``(mark, "")`` or
    ``("", hint)`` when it cannot be told (``1,250`` is 1250 in one country and 1.25 in another)."""
    if "," not in raw:
        return ".", ""
    if "." in raw:
        return ("," if raw.rfind(",") > raw.rfind(".") else "."), ""
    after = raw.rsplit(",", 1)[1]
    if raw.count(",") > 1:
        return ".", ""  # 1,250,000: commas group thousands
    if len(after) == 3 and _DIGITS.fullmatch(after):
        whole = raw.rsplit(",", 1)[0].lstrip("$€£ ")
        return "", (
            f"{raw!r} is ambiguous: type {whole}{after} for thousands or {whole}.{after} "
            "(use '.' for decimals)"
        )
    return ",", ""


def parse_cost(text: str) -> tuple[Decimal | None, str]:
    """Validate a vendor cost typed by a person: a decimal ≥ 0 with at most 4 decimals.

    A decimal comma is read as a decimal point when that is unambiguous (``12,50``); ``1,250`` is
    refused with a hint. Returns ``(value, "")`` or ``(None, reason)``; the reason is one line,
    shown as the user types.
    """
    raw = text.strip()
    if not raw:
        return None, "type a cost, e.g. 22.50"
    if raw.startswith("-") or raw.startswith("−"):
        return None, "a cost cannot be negative"
    mark, hint = _decimal_mark(raw)
    if hint:
        return None, hint
    decimals = raw.rsplit(mark, 1)[1] if mark in raw else ""
    if len(decimals.strip()) > 4 and decimals.strip().isdigit():
        return None, f"at most 4 decimals (got {len(decimals.strip())})"
    if raw.startswith(mark):
        raw = "0" + raw  # ".5" is how people type half a unit
    try:
        value = parse_amount(raw, decimal_mark=mark)
    except MoneyError as exc:
        return None, f"{exc} (use digits and one '.')"
    if value < 0:
        return None, "a cost cannot be negative"
    return value, ""


def needs_second_look(old: Decimal | None, new: Decimal, pct_limit: float) -> str:
    """Why a manual cost deserves a second question ("" when it does not): it is zero, or it
    moves the cost it replaces by more than ``pct_limit`` percent."""
    if new == 0:
        return "The new cost is zero."
    if old is None or old == 0:
        return ""
    pct = (new - old) / old * 100
    if abs(pct) <= Decimal(str(pct_limit)):
        return ""
    word = "above" if pct > 0 else "below"
    return f"That is {abs(pct):.1f} % {word} the catalogue cost."


def approval_problem(row: CostRow) -> str | None:
    """Why a row cannot be approved (None when it can)."""
    if row.vendor_cost is None:
        return "no vendor cost"
    if row.change is None or row.change == 0:
        return "no change"
    if row.state in ("pending", "pushing"):
        return "already being pushed"
    return None


def info_text(row: CostRow, now: Any) -> Text:
    """The `i` detail of one row. Source precedence fields are shown when the daemon sends them
    (which source wins and why, the ones it beat); without them the detail still reads whole."""
    t = Text()
    t.append(row.identifier, style="bold")
    t.append(f"  {row.name}\n")
    t.append(
        f"PSA id {row.psa_id or '—'} · {row.contracts} contracts · {row.lines} contract lines"
        f" · {row.currency or 'currency unknown'}\n\n"
    )
    t.append(f"catalogue cost  {display.amount(row.catalog_cost)}\n")
    t.append(
        f"vendor cost     {display.amount(row.vendor_cost)}  "
        f"({display.source_text(row.vendor_source, now)})\n"
    )
    t.append(f"change          {display.change_text(row.change, row.change_pct)}\n")
    t.append_text(margin_lines(row))
    src = row.vendor_source
    if src and src.at:
        t.append(f"cost dated      {display.stamp(src.at, now)} UTC\n")
    t.append_text(precedence_lines(row, now))
    for key, value in (src.extra if src else {}).items():
        if key in ("wins_because", "competing"):
            continue  # the precedence block of the detail screen says these in words
        t.append(f"{key.replace('_', ' '):<15} {display.plain(value)}\n")
    sources = row.extra.get("vendor_sources") or row.extra.get("sources")
    if isinstance(sources, list) and sources:
        t.append("\nsources (the first wins)\n", style="bold")
        for s in sources:
            t.append(f"  {display.plain(s)}\n")
    for key, value in row.extra.items():
        if key not in ("vendor_sources", "sources"):
            t.append(f"{key.replace('_', ' '):<15} {display.plain(value)}\n")
    state = display.state_text(
        row.state, row.state_detail, vendor=row.vendor_cost, change=row.change, narrow=False
    )
    t.append(f"\naction          {state}\n")
    d = row.state_detail
    if d.get("change_set_id"):
        t.append(f"change set      #{d['change_set_id']} (see Activity, key 2)\n")
    if d.get("message"):
        t.append(f"reason          {display.plain(d['message'])}\n")
    return t


class GridHeader(Static):
    DEFAULT_CSS = "GridHeader { height: 1; background: $panel-darken-1; text-style: bold; }"


class CostsView(ReportsWorkerErrors, Vertical):
    if TYPE_CHECKING:  # Textual types `app` as any App; every view runs in CostreconApp
        app = getters.app(CostreconApp)

    BINDINGS = cast("list[BindingType]", keymap.COSTS)  # list is invariant

    DEFAULT_CSS = """
    CostsView { layers: base overlay; }
    CostsView #cost-filter {
        height: 1; border: none; padding: 0 1; display: none; background: $boost;
    }
    CostsView #cost-filter.-shown { display: block; }
    CostsView #cost-editor {
        layer: overlay; position: absolute; height: 1; border: none; padding: 0;
        display: none; background: $warning 30%;
    }
    CostsView #cost-editor.-shown { display: block; }
    CostsView #cost-editor.-invalid { background: $error 40%; }
    CostsView #cost-detail { height: 1; background: $panel; padding: 0 1; }
    CostsView #cost-detail.-invalid { background: $error 30%; }
    CostsView CostGrid { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.query_text = ""
        self.changed_only = False
        self.sort = "identifier"
        self.descending = False
        self.loaded = False
        self.loaded_query: tuple[str, bool, str, bool] | None = None
        self.local_query: str | None = None
        self._base: tuple[tuple[bool, str, bool], list[int]] | None = None
        self._editing: int | None = None
        self._edit_reason = ""

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="filter: PSA ID or name (enter keeps, esc clears)", id="cost-filter"
        )
        yield GridHeader(id="cost-header")
        yield CostGrid(id="cost-grid")
        yield Input(id="cost-editor", select_on_focus=True)
        yield Static(id="cost-detail")

    @property
    def grid(self) -> CostGrid:
        return self.query_one(CostGrid)

    @property
    def filter_input(self) -> Input:
        return self.query_one("#cost-filter", Input)

    @property
    def editor(self) -> Input:
        return self.query_one("#cost-editor", Input)

    def focus_main(self) -> None:
        self.grid.focus()

    # ------------------------------------------------------------------ loading

    def reload(self) -> None:
        self.load_view()

    @work(exclusive=True, group="costs-view", exit_on_error=False)
    async def load_view(self) -> None:
        """Fetch the id list for the current filter/sort (latest request wins)."""
        key = (self.query_text, self.changed_only, self.sort, self.descending)
        if self.local_query == self.query_text and self.query_text:
            # already shown exactly from local rows: the daemon only confirms, so let fast typing
            # cancel this request instead of paying for one per keystroke
            await asyncio.sleep(CONFIRM_DELAY)
        self.app.set_busy("costs", True)
        try:
            view = await self.app.client.cost_view(
                query=self.query_text,
                changed_only=self.changed_only,
                sort=self.sort,
                descending=self.descending,
            )
        finally:
            self.app.set_busy("costs", False)
        self.loaded = True
        same_query = self.local_query == key[0] or (
            self.loaded_query is not None and self.loaded_query[0] == key[0]
        )
        self.loaded_query = key
        self.local_query = None
        self.grid.set_ids(view.ids, view.total, keep_cursor=same_query)
        if not key[0]:
            # the unfiltered order: local filtering narrows it while the daemon answers. An
            # unchanged answer keeps the old list object, and with it the filter results cache.
            if self._base is not None and self._base[0] == key[1:] and self._base[1] == view.ids:
                return
            self._base = (key[1:], view.ids)
            self.grid.prefetch(view.ids)
        self._update_header()

    def on_daemon_rows(self, ids: list[int]) -> None:
        self.grid.invalidate(ids)

    def on_reconnected(self) -> None:
        self.grid.invalidate_all()
        self.load_view()

    # ------------------------------------------------------------------ header + detail line

    def _update_header(self) -> None:
        grid = self.grid
        t = Text(no_wrap=True)
        sort_col = SORT_COLUMN.get(self.sort, self.sort)
        for n, col in enumerate(grid.columns):
            if n > 1:
                t.append(" ")
            title = col.title
            if col.key == sort_col:
                arrow = "↓" if self.descending else "↑"
                title = f"{title}{'%' if self.sort == 'change_pct' else ''}{arrow}"
            t.append(fit(title, col.width, col.right))
        self.query_one(GridHeader).update(t)

    def _update_detail(self) -> None:
        detail = self.query_one("#cost-detail", Static)
        if self._editing is not None:
            detail.set_class(bool(self._edit_reason), "-invalid")
            msg = f"✗ {self._edit_reason}" if self._edit_reason else "enter saves · esc cancels"
            detail.update(Text(f"Vendor cost: {msg}", no_wrap=True, overflow="ellipsis"))
            return
        detail.remove_class("-invalid")
        grid = self.grid
        t = Text(no_wrap=True, overflow="ellipsis")
        shown = len(grid.ids)
        if not self.loaded:
            t.append("loading cost table…")
            detail.update(t)
            return
        t.append(f"{shown:,}" + (f"/{grid.total:,}" if shown != grid.total else "") + " rows")
        if grid.marked:
            hidden = grid.hidden_marks
            t.append(f" · {len(grid.marked):,} marked", style="bold")
            if hidden:
                t.append(f" ({hidden:,} hidden by filter)")
        if self.changed_only:
            t.append(" · changed only")
        if self.query_text:
            t.append(f" · filter “{self.query_text}”")
        row = grid.cursor_row
        if row is not None:
            t.append(" · ")
            if row.state in ("conflict", "failed", "denied") and row.state_detail.get("message"):
                t.append(f"{row.state}: {row.state_detail['message']}", style="bold")
            else:
                t.append(
                    f"{row.identifier}: {display.source_text(row.vendor_source, self.app.now())}"
                )
                t.append(f" · {row.contracts} contracts, {row.lines} lines")
                if row.below_margin_floor:
                    low = row.line_margin_min_after_pct
                    t.append(
                        f" · ! margin after {'—' if low is None else f'{low:.1f} %'} "
                        "is under the floor",
                        style="bold",
                    )
        detail.update(t)

    @on(CostGrid.Changed)
    def _grid_changed(self) -> None:
        self._update_header()
        self._update_detail()

    @on(CostGrid.RowsArrived)
    def _rows_arrived(self) -> None:
        self._update_detail()

    # ------------------------------------------------------------------ filter + sort

    def action_filter(self) -> None:
        self.filter_input.add_class("-shown")
        self.screen.set_focus(self.filter_input)  # at once: keys typed with "/" follow (TypeAhead)

    @on(Input.Changed, "#cost-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_text = event.value.strip()
        self._filter_locally()
        self.load_view()  # the daemon's answer replaces the local one when it arrives

    def _filter_locally(self) -> None:
        """Show the filter result at once from the rows already loaded, when that is exact."""
        if self._base is None or self._base[0] != (self.changed_only, self.sort, self.descending):
            return
        base = self._base[1]
        ids = self.grid.local_filter(base, self.query_text) if self.query_text else base
        if ids is None:
            return
        self.local_query = self.query_text
        self.grid.set_ids(ids, self.grid.total, keep_cursor=False)

    @on(Input.Submitted, "#cost-filter")
    def _filter_submitted(self) -> None:
        if not self.filter_input.value:
            self.filter_input.remove_class("-shown")
        self.grid.focus()

    def clear_filter(self) -> None:
        self.filter_input.value = ""  # Input.Changed reloads
        self.query_text = ""
        self.filter_input.remove_class("-shown")
        self.load_view()

    def action_back(self) -> None:
        """esc: cancel an edit, else clear the filter, else clear the marks."""
        if self._editing is not None:
            self.cancel_edit()
        elif self.query_text or self.filter_input.has_class("-shown"):
            self.clear_filter()
            self.grid.focus()
        elif self.grid.marked:
            n = len(self.grid.marked)
            self.grid.clear_marks()
            self.notify(f"Cleared {n:,} mark{'s' if n != 1 else ''}.", timeout=2)

    def action_sort(self, step: int) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + step) % len(SORTS)]
        self.notify(f"Sorted by {SORT_TITLES[self.sort]}", timeout=1.5)
        self._update_header()
        self.load_view()

    def action_sort_direction(self) -> None:
        self.descending = not self.descending
        self._update_header()
        self.load_view()

    def action_changed_only(self) -> None:
        self.changed_only = not self.changed_only
        self.load_view()

    def action_reload(self) -> None:
        self.grid.invalidate_all()
        self.load_view()

    # ------------------------------------------------------------------ edit

    def action_edit(self) -> None:
        grid = self.grid
        row = grid.cursor_row
        if row is None:
            return
        if row.state in ("pending", "pushing"):
            self.notify(
                f"{row.identifier} is being pushed; edit it when the push finishes.",
                severity="warning",
            )
            return
        col_x = 0
        width = 12
        for n, col in enumerate(grid.columns):
            if col.key == "vendor_cost":
                # the editor covers the vendor and change cells; catalogue cost stays visible
                change = grid.columns[n + 1].width if n + 1 < len(grid.columns) else 0
                width = col.width + 1 + change
                break
            col_x += col.width + (1 if n > 0 else 0)
        x = col_x
        y = grid.region.y - self.region.y + (grid.cursor - int(grid.scroll_offset.y))
        editor = self.editor
        editor.styles.offset = (x, y)
        editor.styles.width = width
        self._editing = row.id
        editor.value = "" if row.vendor_cost is None else format(row.vendor_cost.normalize(), "f")
        self._validate(editor.value)
        editor.add_class("-shown")
        self.screen.set_focus(editor)  # at once: keys typed with "e" follow (TypeAhead)

    def _validate(self, text: str) -> Decimal | None:
        value, reason = parse_cost(text)
        self._edit_reason = reason
        self.editor.set_class(bool(reason), "-invalid")
        self._update_detail()
        return value

    @on(Input.Changed, "#cost-editor")
    def _editor_changed(self, event: Input.Changed) -> None:
        if self._editing is not None:
            self._validate(event.value)

    @on(Input.Submitted, "#cost-editor")
    def _editor_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self._editing is None:
            return
        value = self._validate(event.value)
        if value is None:
            self.app.bell()
            return  # refused: the reason is on screen and nothing is sent
        item_id = self._editing
        self.cancel_edit()
        row = self.grid.rows.get(item_id)
        if row is not None and row.vendor_cost == value:
            self.notify("Unchanged.", timeout=1.5)
            return
        self._save_cost(item_id, value)

    async def _second_look(self, row: CostRow | None, value: Decimal) -> bool:
        if row is None:
            return True
        old = row.catalog_cost if row.catalog_cost is not None else row.vendor_cost
        why = needs_second_look(old, value, getattr(self.app, "confirm_change_pct", 50.0))
        if not why:
            return True
        from costrecon_tui.screens.dialogs import ConfirmScreen

        detail = Text()
        detail.append(f"{row.identifier}  {row.name}\n\n")
        detail.append(f"catalogue cost  {display.amount(old)} {row.currency}\n")
        detail.append(f"new vendor cost {display.amount(value)} {row.currency}\n\n", style="bold")
        detail.append(why, style="bold yellow")
        confirmed = await self.app.push_screen_wait(
            ConfirmScreen("Set this vendor cost?", detail, yes="Set cost")
        )
        return bool(confirmed)

    def cancel_edit(self) -> None:
        self._editing = None
        self._edit_reason = ""
        self.editor.remove_class("-shown", "-invalid")
        self.grid.focus()
        self._update_detail()

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        if event.widget is self.editor and self._editing is not None and not self.app._closing:
            self.cancel_edit()

    @work(group="costs-edit", exit_on_error=False)
    async def _save_cost(self, item_id: int, value: Decimal) -> None:
        if not await self._second_look(self.grid.rows.get(item_id), value):
            self.notify("Vendor cost not changed.", timeout=2)
            return
        row = await self.app.client.set_manual_cost(item_id, value)
        self.grid.update_rows([row])
        self.notify(
            f"{row.identifier}: vendor cost set to {display.amount(value)} {row.currency} "
            "(manual).",
            timeout=3,
        )

    def action_revert(self) -> None:
        row = self.grid.cursor_row
        if row is None:
            return
        if not row.vendor_source or row.vendor_source.kind != "manual":
            self.notify(f"{row.identifier} has no manual cost to revert.", severity="warning")
            return
        self._revert(row.id)

    @work(group="costs-edit", exit_on_error=False)
    async def _revert(self, item_id: int) -> None:
        row = await self.app.client.revert_manual_cost(item_id)
        self.grid.update_rows([row])
        self.notify(
            f"{row.identifier}: manual cost reverted; vendor cost is "
            f"{display.amount(row.vendor_cost)}.",
            timeout=3,
        )

    # ------------------------------------------------------------------ info

    def action_info(self) -> None:
        row = self.grid.cursor_row
        if row is None:
            return
        from costrecon_tui.screens.item_detail import ItemDetailScreen

        now = self.app.now()
        self.app.push_screen(ItemDetailScreen(row, info_text(row, now), now))

    def action_toggle_prices(self) -> None:
        shown = self.grid.toggle_prices()
        self.notify(
            "Price and margin columns shown." if shown else "Price and margin columns hidden.",
            timeout=1.5,
        )

    def help_text(self) -> Text:
        """What `?` adds in this view: what each column means."""
        from costrecon_tui.widgets.cost_grid import COLUMN_HELP

        t = Text("\nColumns\n", style="bold")
        for name, meaning in COLUMN_HELP:
            t.append(f"{name:<15}", style="bold")
            t.append(f" {meaning}\n")
        return t

    # ------------------------------------------------------------------ approve

    def action_approve(self) -> None:
        grid = self.grid
        ids = grid.marked_in_order()
        if not ids:
            if grid.cursor_id is None:
                return
            ids = [grid.cursor_id]
        self.prepare_approval(ids)

    @work(exclusive=True, group="costs-approve", exit_on_error=False)
    async def prepare_approval(self, ids: list[int]) -> None:
        from costrecon_tui.screens.preview import ApproveScreen

        client = self.app.client
        self.app.set_busy("approve", True)
        try:
            rows = await self.grid.ensure_rows(ids)
            eligible: list[CostRow] = []
            skipped: dict[str, int] = {}
            for row in rows:
                problem = approval_problem(row)
                if problem:
                    skipped[problem] = skipped.get(problem, 0) + 1
                else:
                    eligible.append(row)
            skipped_note = ", ".join(f"{n} {why}" for why, n in skipped.items())
            if not eligible:
                what = rows[0].identifier if len(rows) == 1 else f"the {len(rows)} marked rows"
                self.notify(f"Nothing to approve: {what} — {skipped_note}.", severity="warning")
                return
            items = [ApprovalItem(r.id, r.vendor_cost, r.catalog_cost) for r in eligible]  # type: ignore[arg-type]
            try:
                preview = await client.preview_change_set(items, "all")
            except DaemonError as exc:
                if exc.code == "stale":
                    self.grid.invalidate(ids)
                    self.notify(str(exc), severity="warning", timeout=8)
                    return
                raise
        finally:
            self.app.set_busy("approve", False)
        dialog = ApproveScreen(items, preview, skipped_note=skipped_note)
        policy = await self.app.push_screen_wait(dialog)
        if not policy:
            return
        # A big set answered "recording" (issue 14): said at once, the change set follows.
        client.on_recording = lambda message: self.notify(message, timeout=8)
        try:
            change_set = await client.approve(items, policy, effective_date=dialog.effective_date)
        except DaemonError as exc:
            if exc.code == "stale":
                self.grid.invalidate(ids)
                self.notify(str(exc), severity="warning", timeout=8)
                return
            raise
        self.grid.clear_marks([i.item_id for i in items])
        self.grid.invalidate([i.item_id for i in items])
        if change_set.get("status") == "scheduled":
            self.notify(
                f"Change set #{change_set['id']} scheduled for {change_set.get('effective_date')}; "
                "x in the Activity view cancels it before then.",
                timeout=5,
            )
            return
        self.notify(
            f"Change set #{change_set['id']} approved: {len(items)} "
            f"item{'s' if len(items) != 1 else ''}, "
            f"{change_set.get('counts', {}).get('pending', '?')} targets queued for push.",
            timeout=5,
        )
