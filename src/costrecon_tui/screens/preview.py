"""Confirmation modals that show the daemon's preview (the blast radius) before anything is sent."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Static

from costrecon_tui.client import ApprovalItem
from costrecon_tui.screens.dialogs import FittedModal, dialog_css
from costrecon_tui.widgets import display
from costrecon_tui.widgets.errors import ReportsWorkerErrors

if TYPE_CHECKING:
    from costrecon_tui.app import CostreconApp

PER_ITEM_SHOWN = 200  # a rich Table of 100k rows would take seconds; the totals above cover all

POLICIES = {
    "all": "all contract lines",
    "matching": "only lines still at the old catalogue cost",
}


def _dec(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' if n != 1 else ''}"


def preview_summary(p: dict[str, Any], *, skipped_note: str = "") -> Text:
    """The blast radius in words. Any field may be missing or null (an older or busier daemon):
    what is unknown is said to be unknown, never guessed."""
    n = display.number
    impact = _dec(p.get("monthly_impact"))
    cur = p.get("currency") or ""
    t = Text()
    t.append(_plural(n(p.get("items")), "item"), style="bold")
    t.append(" and ")
    t.append(_plural(n(p.get("lines")), "contract line"), style="bold")
    t.append(f" will change · {n(p.get('lines_skipped'))} lines skipped by policy")
    t.append(f" · {n(p.get('negotiated_lines'))} lines already differ (negotiated)\n")
    t.append(
        f"{n(p.get('api_calls'))} PSA API calls, {display.duration(p.get('estimated_seconds'))}"
    )
    t.append(" · monthly cost impact ")
    by_currency = p.get("impact_by_currency")
    if impact is None and isinstance(by_currency, dict) and by_currency:
        for n_cur, (code, value) in enumerate(sorted(by_currency.items())):
            v = _dec(value)
            if n_cur:
                t.append(", ")
            if v is None:
                t.append(f"unknown {code}", style="bold")
            else:
                arrow = display.UP if v > 0 else display.DOWN if v < 0 else "="
                t.append(f"{arrow}{display.signed(v)} {code}", style="bold")
    elif impact is None:
        t.append("unknown", style="bold")
    else:
        arrow = display.UP if impact > 0 else display.DOWN if impact < 0 else "="
        t.append(
            f"{arrow}{display.signed(impact)} {cur}".rstrip(),
            style="bold red" if impact > 0 else "bold green",
        )
    margin = margin_impact_text(p.get("margin"))
    if margin is not None:
        t.append("\n")
        t.append_text(margin)
    if skipped_note:
        t.append(f"\nNot included: {skipped_note}.", style="yellow")
    return t


def margin_impact_text(m: Any) -> Text | None:
    """``monthly margin 1,234.00 → 1,100.00 USD (−134.00) · 12 lines under the 20 % floor``:
    the margin beside the cost impact (issue 18.3); None when the daemon sent no margin part."""
    if not isinstance(m, dict):
        return None
    t = Text()
    monthly = display.mapping(m.get("monthly"))
    parts = []
    for code, v in sorted(monthly.items()):
        v = display.mapping(v)
        before, after, change = _dec(v.get("before")), _dec(v.get("after")), _dec(v.get("change"))
        if after is None:
            continue
        delta = "" if change is None else f" ({display.signed(change)})"
        parts.append(f"{display.amount(before)} → {display.amount(after)} {code}{delta}")
    t.append("monthly margin ")
    t.append(", ".join(parts) if parts else "unknown (no contract line prices)", style="bold")
    low = display.number(m.get("below_floor_count"))
    floor = display.plain(m.get("floor_pct") or "?")
    if low:
        t.append(f" · {_plural(low, 'line')} under the {floor} % margin floor", style="bold red")
    else:
        t.append(f" · no line under the {floor} % margin floor")
    unpriced = display.number(m.get("lines_unpriced"))
    if unpriced:
        t.append(f" · {unpriced:,} without a price", style="dim")
    return t


def margin_table(p: dict[str, Any]) -> Table | None:
    """The contract lines the new cost takes under the margin floor: customer, agreement, price,
    new cost and margin (issue 18.3)."""
    m = display.mapping(p.get("margin"))
    rows = m.get("below_floor")
    if not rows:
        return None
    table = Table(
        box=None,
        expand=True,
        pad_edge=False,
        show_edge=False,
        header_style="bold",
        title=f"Under the {display.plain(m.get('floor_pct') or '?')} % margin floor",
        title_justify="left",
        title_style="bold red",
    )
    table.add_column("Customer / agreement", no_wrap=True, ratio=1, overflow="ellipsis")
    table.add_column("Item", no_wrap=True, max_width=14, overflow="ellipsis")
    table.add_column("Price", justify="right", no_wrap=True)
    table.add_column("New cost", justify="right", no_wrap=True)
    table.add_column("Margin", justify="right", no_wrap=True)
    rows = rows[:PER_ITEM_SHOWN]  # the daemon names 200; a longer list would take seconds to draw
    for r in rows:
        r = display.mapping(r)
        who = " / ".join(x for x in (r.get("customer"), r.get("contract")) if x) or "—"
        after = r.get("margin_after_pct")
        table.add_row(
            display.plain(who),
            display.plain(r.get("item") or ""),
            display.amount(_dec(r.get("price"))),
            display.amount(_dec(r.get("cost_after"))),
            "—" if after is None else f"{display.plain(after)} %",
        )
    more = display.number(m.get("below_floor_count")) - len(rows)
    if more > 0:
        table.add_row("…", f"and {more:,} more lines", "", "", "")
    return table


def warnings_text(p: dict[str, Any]) -> Text | None:
    warnings = [display.plain(w) for w in p.get("warnings") or []]
    if not warnings:
        return None
    return Text("\n".join(f"! {w}" for w in warnings), style="yellow")


def per_item_table(p: dict[str, Any]) -> Table:
    table = Table(box=None, expand=True, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("PSA ID", no_wrap=True, max_width=18)
    table.add_column("Name", no_wrap=True, ratio=1, overflow="ellipsis")
    table.add_column("Before", justify="right", no_wrap=True)
    table.add_column("After", justify="right", no_wrap=True)
    table.add_column("Lines", justify="right", no_wrap=True)
    table.add_column("Skip", justify="right", no_wrap=True)
    per_item = p.get("per_item") or []
    for it in per_item[:PER_ITEM_SHOWN]:
        it = it or {}
        before = _dec(it.get("before"))
        after = _dec(it.get("after"))
        arrow = ""
        if before is not None and after is not None and after != before:
            arrow = display.UP if after > before else display.DOWN
        table.add_row(
            str(it.get("identifier") or "—"),
            str(it.get("name") or ""),
            display.amount(before),
            f"{arrow}{display.amount(after)}",
            str(display.number(it.get("lines"))),
            str(display.number(it.get("lines_skipped"))),
        )
    # ``items`` counts every item; the daemon details only the first ones in ``per_item``.
    items = p.get("items")
    total = max(len(per_item), items if isinstance(items, int) else 0)
    shown = min(len(per_item), PER_ITEM_SHOWN)
    if total > shown:
        table.add_row("…", f"and {total - shown:,} more items", "", "", "", "")
    return table


def parse_effective(text: str, today: dt.date) -> tuple[str | None, str | None]:
    """The date field: (a future day to schedule for, or None for "at once"; a problem)."""
    text = text.strip()
    if not text:
        return None, None
    try:
        day = dt.date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None:
        return None, "type a date as YYYY-MM-DD, or leave it empty for today"
    if day < today:
        return None, f"{text} is in the past; give today or a later date"
    return (day.isoformat() if day > today else None), None


class ApproveScreen(ReportsWorkerErrors, FittedModal[str | None]):
    """Shows the preview, lets the user choose the line policy and the effective date; dismisses
    with the policy or None (the date, if any, is left in ``effective_date``)."""

    if TYPE_CHECKING:  # Textual types `app` as any App; every view runs in CostreconApp
        app = getters.app(CostreconApp)

    SCOPED_CSS = False
    DEFAULT_CSS = dialog_css(
        "ApproveScreen",
        ".per-item { margin-top: 1; }\n"
        "ApproveScreen #effective-row { height: 1; }\n"
        "ApproveScreen #effective-row .label { width: auto; }\n"
        "ApproveScreen #effective { width: 14; }\n"
        "ApproveScreen #effective-note { height: auto; }",
    )
    BINDINGS = [
        Binding("y", "confirm", "Approve", id="approve.confirm"),
        Binding("p", "toggle_policy", "Line policy", id="approve.policy"),
        Binding("d", "edit_date", "Effective date", id="approve.date"),
        Binding("escape,n", "cancel", "Cancel", id="approve.cancel"),
    ]

    def __init__(
        self, items: list[ApprovalItem], preview: dict[str, Any], *, skipped_note: str = ""
    ) -> None:
        super().__init__()
        self.items = items
        self.preview = preview
        self.policy = preview.get("policy") or "all"
        self.skipped_note = skipped_note
        # A future day (ISO) schedules the change set for then; None pushes at once.
        self.effective_date: str | None = None
        self._date_problem: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self._title(), classes="title")
            yield Static(
                preview_summary(self.preview, skipped_note=self.skipped_note),
                classes="summary",
                id="summary",
            )
            yield Static(self._policy_text(), classes="policy", id="policy")
            with Horizontal(id="effective-row"):
                yield Static("Effective date (d): ", classes="label")
                yield Input(placeholder="today", id="effective", max_length=10, compact=True)
            yield Static(self._effective_text(), id="effective-note")
            with VerticalScroll(classes="fill per-item"):
                yield Static(warnings_text(self.preview) or "", id="warnings")
                yield Static(margin_table(self.preview) or "", id="margin-lines")
                yield Static(per_item_table(self.preview), id="per-item")
            with Horizontal(classes="buttons"):
                yield Button(self._confirm_label(), variant="error", id="confirm", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)
            yield Static(
                "y approve · p line policy · d date · esc cancel · ↑↓ scroll", classes="hint"
            )

    def _title(self) -> str:
        return (
            f"Approve cost change for {len(self.items)} item{'s' if len(self.items) != 1 else ''}?"
        )

    def _confirm_label(self) -> str:
        if self.effective_date:
            return f"Schedule {len(self.items)} (y)"
        return f"Approve {len(self.items)} (y)"

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#confirm", Button).focus()

    def action_confirm(self) -> None:
        if self._date_problem:
            self.notify(f"Effective date: {self._date_problem}.", severity="warning")
            return
        self.dismiss(self.policy)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_edit_date(self) -> None:
        self.query_one("#effective", Input).focus()

    def _effective_text(self) -> Text:
        if self._date_problem:
            return Text(self._date_problem, style="bold red")
        if self.effective_date is None:
            return Text("today: pushed as soon as approved", style="dim")
        how = display.plain(self.preview.get("effective_date_handling") or "")
        return Text(f"scheduled for {self.effective_date}. {how}".strip(), style="bold")

    @on(Input.Changed, "#effective")
    def _effective_changed(self, event: Input.Changed) -> None:
        self.effective_date, self._date_problem = parse_effective(event.value, dt.date.today())
        self.query_one("#effective-note", Static).update(self._effective_text())
        self.query_one("#confirm", Button).label = self._confirm_label()

    @on(Input.Submitted, "#effective")
    def _effective_submitted(self) -> None:
        self.query_one("#confirm", Button).focus()

    def _policy_text(self) -> Text:
        t = Text()
        t.append("Contract lines (p switches):\n", style="bold")
        for key, label in POLICIES.items():
            chosen = key == self.policy
            t.append(
                f"  {'(•)' if chosen else '( )'} update {label}", style="bold" if chosen else "dim"
            )
            if key == "matching":
                t.append(" — negotiated lines keep their cost", style="bold" if chosen else "dim")
            t.append("\n" if key == "all" else "")
        return t

    def action_toggle_policy(self) -> None:
        self.set_policy("matching" if self.policy == "all" else "all")

    def set_policy(self, policy: str) -> None:
        if policy == self.policy:
            return
        self.policy = policy
        self.query_one("#policy", Static).update(self._policy_text())
        self.query_one("#confirm", Button).disabled = True
        self._refresh_preview(policy)

    @work(exclusive=True, group="approve-preview", exit_on_error=False)
    async def _refresh_preview(self, policy: str) -> None:
        self.query_one("#summary", Static).update(Text("updating preview…", style="italic"))
        try:
            preview = await self.app.client.preview_change_set(self.items, policy)
        finally:
            self.query_one("#confirm", Button).disabled = False
        if policy != self.policy:
            return
        self.preview = preview
        self.query_one("#summary", Static).update(
            preview_summary(preview, skipped_note=self.skipped_note)
        )
        self.query_one("#warnings", Static).update(warnings_text(preview) or "")
        self.query_one("#margin-lines", Static).update(margin_table(preview) or "")
        self.query_one("#per-item", Static).update(per_item_table(preview))
        self.call_after_refresh(self.fit)

    @on(Button.Pressed, "#confirm")
    def _confirm(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.action_cancel()


class UndoScreen(FittedModal[bool]):
    """Shows the undo preview of a change set; dismisses with True to undo."""

    SCOPED_CSS = False
    DEFAULT_CSS = dialog_css("UndoScreen", ".per-item { margin-top: 1; }")
    BINDINGS = [
        Binding("y", "confirm", "Undo", id="undo.confirm"),
        Binding("escape,n", "cancel", "Cancel", id="undo.cancel"),
    ]

    def __init__(self, change_set_id: int, preview: dict[str, Any]) -> None:
        super().__init__()
        self.change_set_id = change_set_id
        self.preview = preview

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(
                f"Undo change set #{self.change_set_id}? (puts the old costs back, same conflict "
                "guard)",
                classes="title",
            )
            yield Static(preview_summary(self.preview), classes="summary")
            with VerticalScroll(classes="fill per-item"):
                yield Static(warnings_text(self.preview) or "")
                yield Static(per_item_table(self.preview))
            with Horizontal(classes="buttons"):
                yield Button(
                    f"Undo #{self.change_set_id} (y)", variant="error", id="confirm", compact=True
                )
                yield Button("Cancel (esc)", id="cancel", compact=True)
            yield Static("y undo · esc cancel · ↑↓ scroll items", classes="hint")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#confirm", Button).focus()

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#confirm")
    def _confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(False)
