"""Confirmation modals that show the daemon's preview (the blast radius) before anything is sent."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from costrecon_tui.client import ApprovalItem
from costrecon_tui.widgets import display
from costrecon_tui.widgets.errors import ReportsWorkerErrors

PER_ITEM_SHOWN = 200  # a rich Table of 100k rows would take seconds; the totals above cover all

POLICIES = {
    "all": "all contract lines",
    "matching": "only lines still at the old catalogue cost",
}


def modal_css(name: str) -> str:
    return f"""
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 100; max-width: 100%; height: auto; max-height: 100%;
    border: thick $primary; background: $surface; padding: 0 1;
}}
{name} .title {{ text-style: bold; height: auto; }}
{name} .summary {{ height: auto; }}
{name} .policy {{ height: auto; margin-top: 1; }}
{name} .per-item {{ height: auto; max-height: 12; border: none; margin-top: 1; }}
{name} .buttons {{ height: 1; margin-top: 1; }}
{name} Button {{ margin-right: 2; }}
{name} .hint {{ color: $text-muted; height: 1; }}
"""


def preview_summary(p: dict[str, Any], *, skipped_note: str = "") -> Text:
    impact = Decimal(str(p.get("monthly_impact") or "0"))
    cur = p.get("currency") or ""
    t = Text()
    t.append(f"{p['items']} item{'s' if p['items'] != 1 else ''}", style="bold")
    t.append(" and ")
    t.append(f"{p['lines']} contract line{'s' if p['lines'] != 1 else ''}", style="bold")
    t.append(f" will change · {p.get('lines_skipped', 0)} lines skipped by policy")
    t.append(f" · {p.get('negotiated_lines', 0)} lines already differ (negotiated)\n")
    t.append(
        f"{p.get('api_calls', 0)} PSA API calls, {display.duration(p.get('estimated_seconds', 0))}"
    )
    t.append(" · monthly cost impact ")
    arrow = display.UP if impact > 0 else display.DOWN if impact < 0 else "="
    t.append(
        f"{arrow}{display.signed(impact)} {cur}", style="bold red" if impact > 0 else "bold green"
    )
    if skipped_note:
        t.append(f"\nNot included: {skipped_note}.", style="yellow")
    for w in p.get("warnings") or []:
        t.append(f"\n! {w}", style="yellow")
    return t


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
        before = Decimal(str(it["before"])) if it.get("before") is not None else None
        after = Decimal(str(it["after"])) if it.get("after") is not None else None
        arrow = ""
        if before is not None and after is not None and after != before:
            arrow = display.UP if after > before else display.DOWN
        table.add_row(
            it.get("identifier", ""),
            it.get("name", ""),
            display.amount(before),
            f"{arrow}{display.amount(after)}",
            str(it.get("lines", 0)),
            str(it.get("lines_skipped", 0)),
        )
    if len(per_item) > PER_ITEM_SHOWN:
        table.add_row("…", f"and {len(per_item) - PER_ITEM_SHOWN:,} more items", "", "", "", "")
    return table


class ApproveScreen(ReportsWorkerErrors, ModalScreen[str | None]):
    """Shows the preview, lets the user choose the line policy; dismisses with the policy or None."""

    SCOPED_CSS = False
    DEFAULT_CSS = modal_css("ApproveScreen")
    BINDINGS = [
        Binding("y", "confirm", "Approve", id="approve.confirm"),
        Binding("p", "toggle_policy", "Line policy", id="approve.policy"),
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

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self._title(), classes="title")
            yield Static(
                preview_summary(self.preview, skipped_note=self.skipped_note),
                classes="summary",
                id="summary",
            )
            yield Static(self._policy_text(), classes="policy", id="policy")
            with VerticalScroll(classes="per-item"):
                yield Static(per_item_table(self.preview), id="per-item")
            with Horizontal(classes="buttons"):
                yield Button(self._confirm_label(), variant="error", id="confirm", compact=True)
                yield Button("Cancel", id="cancel", compact=True)
            yield Static("y approve · p line policy · esc cancel", classes="hint")

    def _title(self) -> str:
        return (
            f"Approve cost change for {len(self.items)} item{'s' if len(self.items) != 1 else ''}?"
        )

    def _confirm_label(self) -> str:
        return f"Approve {len(self.items)} (y)"

    def on_mount(self) -> None:
        self.query_one("#confirm", Button).focus()

    def action_confirm(self) -> None:
        self.dismiss(self.policy)

    def action_cancel(self) -> None:
        self.dismiss(None)

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
        self.query_one("#per-item", Static).update(per_item_table(preview))

    @on(Button.Pressed, "#confirm")
    def _confirm(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.action_cancel()


class UndoScreen(ModalScreen[bool]):
    """Shows the undo preview of a change set; dismisses with True to undo."""

    SCOPED_CSS = False
    DEFAULT_CSS = modal_css("UndoScreen")
    BINDINGS = [
        Binding("y", "confirm", "Undo", id="undo.confirm"),
        Binding("escape,n", "cancel", "Cancel", id="undo.cancel"),
    ]

    def __init__(self, change_set_id: int, preview: dict[str, Any]) -> None:
        super().__init__()
        self.change_set_id = change_set_id
        self.preview = preview

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                f"Undo change set #{self.change_set_id}? (puts the old costs back, same conflict guard)",
                classes="title",
            )
            yield Static(preview_summary(self.preview), classes="summary")
            with VerticalScroll(classes="per-item"):
                yield Static(per_item_table(self.preview))
            with Horizontal(classes="buttons"):
                yield Button(
                    f"Undo #{self.change_set_id} (y)", variant="error", id="confirm", compact=True
                )
                yield Button("Cancel", id="cancel", compact=True)
            yield Static("y undo · esc cancel", classes="hint")

    def on_mount(self) -> None:
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
