"""The Sync view: PSA connection, the permissions check (messages verbatim), last/next sync."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from costrecon_tui import keymap
from costrecon_tui.widgets import display
from costrecon_tui.widgets.errors import ReportsWorkerErrors


class SyncView(ReportsWorkerErrors, VerticalScroll, can_focus=True):
    BINDINGS = keymap.SYNC

    DEFAULT_CSS = """
    SyncView { padding: 0 1; }
    SyncView #sync-body { height: auto; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.status: dict[str, Any] | None = None
        self.sync_event: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Static("loading…", id="sync-body")

    def focus_main(self) -> None:
        self.focus()

    def reload(self) -> None:
        self.app.refresh_status()

    on_reconnected = reload

    def show_status(self, status: dict[str, Any] | None, sync_event: dict[str, Any] | None) -> None:
        self.status = status
        self.sync_event = sync_event
        self.query_one("#sync-body", Static).update(self._render_body())

    def _render_body(self) -> Text:
        t = Text()
        st = self.status
        if st is None:
            t.append("loading…")
            return t
        now = self.app.now()
        psa = st.get("psa") or {}
        t.append("PSA\n", style="bold underline")
        t.append(f"  {psa.get('name') or psa.get('kind') or '—'} ({psa.get('kind') or '?'})\n")
        if psa.get("connected"):
            t.append("  ✓ connected\n", style="green")
        else:
            t.append(f"  ✗ not connected: {psa.get('error') or 'no answer'}\n", style="bold red")
        t.append("\nPermissions check\n", style="bold underline")
        problems = psa.get("permission_problems") or []
        if not problems:
            t.append(
                "  ✓ the API user can read and update everything costrecon needs\n", style="green"
            )
        for p in problems:
            t.append(f"  ✗ {p.get('capability')}: ", style="bold red")
            t.append(f"{p.get('message')}\n")
        t.append("\nSync\n", style="bold underline")
        ev = self.sync_event or {}
        if psa.get("syncing") or ev.get("state") == "running":
            t.append(
                f"  ⟳ syncing now{': ' + ev['message'] if ev.get('message') else ''}\n",
                style="yellow",
            )
        elif ev.get("state") == "failed":
            t.append(f"  ✗ last sync failed: {ev.get('message')}\n", style="bold red")
        t.append(
            f"  last sync  {psa.get('last_sync') or 'never'} ({display.age(psa.get('last_sync'), now)})\n"
        )
        t.append(
            f"  next sync  {psa.get('next_sync') or '—'} ({display.age(psa.get('next_sync'), now)})\n"
        )
        if psa.get("last_result"):
            t.append(f"  result     {psa['last_result']}\n")
        c = st.get("counts") or {}
        t.append("\nMirror\n", style="bold underline")
        t.append(
            f"  {c.get('items', 0):,} items · {c.get('contracts', 0):,} contracts · {c.get('lines', 0):,} lines · "
            f"{c.get('vendor_costs', 0):,} vendor costs · {c.get('unmatched', 0):,} unmatched vendor rows\n"
        )
        inbox = st.get("inbox") or {}
        t.append(f"  inbox {inbox.get('path') or '—'} ({inbox.get('pending', 0)} waiting)\n")
        d = st.get("daemon") or {}
        t.append("\nDaemon\n", style="bold underline")
        t.append(
            f"  costrecond {d.get('version')} · pid {d.get('pid')} · user {d.get('user')} · "
            f"started {display.age(d.get('started_at'), now)}\n  state {d.get('state_dir')}\n"
        )
        t.append("\ns syncs now.", style="dim")
        return t

    def action_reload(self) -> None:
        self.reload()

    def action_sync_now(self) -> None:
        self.sync_now()

    @work(exclusive=True, group="sync-now", exit_on_error=False)
    async def sync_now(self) -> None:
        await self.app.client.sync_now()
        self.notify("Sync started.", timeout=2)
