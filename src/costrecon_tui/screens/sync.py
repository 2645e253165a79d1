"""The Sync view: PSA connection, the permissions check (messages verbatim), last/next sync."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual import getters, work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from costrecon_tui import keymap
from costrecon_tui.widgets import display
from costrecon_tui.widgets.errors import ReportsWorkerErrors

if TYPE_CHECKING:
    from costrecon_tui.app import CostreconApp

# What costrecon needs of a PSA API user (psa/base.py PermissionProblem.capability). The daemon
# reports only the problems today; a capability it checked without a problem is shown as ✓.
CAPABILITIES = {
    "read_catalog": "read the product catalogue",
    "edit_catalog": "update catalogue item costs",
    "read_lines": "read contract lines",
    "edit_lines": "update contract line costs",
    "read_costs": "see cost fields",
}


def permission_rows(psa: dict[str, Any]) -> list[tuple[bool | None, str, str]]:
    """``(ok, what, fix)`` for each permission: ok is None when it could not be checked.

    A ``permissions`` list (``{capability, ok, message}``), when the daemon sends one, is shown as
    it is; otherwise every known capability not named by a problem counts as checked and fine.
    """
    listed = psa.get("permissions")
    if isinstance(listed, list) and listed:
        out = []
        for p in listed:
            if not isinstance(p, dict):
                continue
            cap = str(p.get("capability") or "?")
            ok = p.get("ok")
            out.append(
                (
                    None if ok is None else bool(ok),
                    CAPABILITIES.get(cap, cap.replace("_", " ")),
                    display.plain(p.get("message") or p.get("fix") or ""),
                )
            )
        return out
    problems = [p for p in psa.get("permission_problems") or [] if isinstance(p, dict)]
    checked = bool(psa.get("connected"))
    failing = {str(p.get("capability")): display.plain(p.get("message") or "") for p in problems}
    out = []
    for cap, what in CAPABILITIES.items():
        if cap in failing:
            out.append((False, what, failing.pop(cap)))
        else:
            out.append((True if checked else None, what, ""))
    for cap, fix in failing.items():
        out.append((False, cap.replace("_", " "), fix))
    return out


class SyncView(ReportsWorkerErrors, VerticalScroll, can_focus=True):
    if TYPE_CHECKING:  # Textual types `app` as any App; every view runs in CostreconApp
        app = getters.app(CostreconApp)

    BINDINGS = cast("list[BindingType]", keymap.SYNC)  # list is invariant

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

    def on_mount(self) -> None:
        # relative times ("12 min ago") go stale while the view is shown
        self.set_interval(5.0, self._tick)

    def _tick(self) -> None:
        if self.display and getattr(self.app, "current_view", "") == "sync" and self.status:
            self.query_one("#sync-body", Static).update(self._render_body())

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
            t.append(
                f"  ✗ not connected: {display.plain(psa.get('error') or 'no answer')}\n",
                style="bold red",
            )
        t.append("\nPermissions of the API user\n", style="bold underline")
        for ok, what, fix in permission_rows(psa):
            if ok is None:
                t.append(f"  ? {what}: {fix or 'not checked (no connection)'}\n", style="dim")
            elif ok:
                t.append(f"  ✓ {what}\n", style="green")
            else:
                t.append(f"  ✗ {what}\n", style="bold red")
                t.append(f"    fix: {fix or 'see the PSA reference in the README'}\n")
        t.append("\nSync\n", style="bold underline")
        ev = self.sync_event or {}
        if psa.get("syncing") or ev.get("state") == "running":
            t.append(
                f"  ⟳ syncing now{': ' + ev['message'] if ev.get('message') else ''}\n",
                style="yellow",
            )
        elif ev.get("state") == "failed":
            t.append(
                f"  ✗ last sync failed: {display.plain(ev.get('message'))}\n", style="bold red"
            )
        for label, key in (("last sync", "last_sync"), ("next sync", "next_sync")):
            when = psa.get(key)
            shown = f"{display.stamp(when, now)} UTC ({display.age(when, now)})" if when else "—"
            t.append(f"  {label}  {shown}\n")
        if psa.get("last_result"):
            t.append(f"  result     {display.plain(psa['last_result'])}\n")
        self._render_vendors(t, st.get("vendors") or {}, now)
        c = st.get("counts") or {}
        t.append("\nMirror\n", style="bold underline")
        t.append(
            f"  {display.number(c.get('items')):,} items · {display.number(c.get('contracts')):,} "
            f"contracts · {display.number(c.get('lines')):,} lines · "
            f"{display.number(c.get('vendor_costs')):,} vendor costs · "
            f"{display.number(c.get('unmatched')):,} unmatched vendor rows\n"
        )
        inbox = st.get("inbox") or {}
        t.append(
            f"  inbox {inbox.get('path') or '—'} ({display.number(inbox.get('pending'))} waiting)\n"
        )
        d = st.get("daemon") or {}
        t.append("\nDaemon\n", style="bold underline")
        t.append(
            f"  costrecond {d.get('version') or '—'} · pid {d.get('pid') or '—'} · "
            f"user {d.get('user') or '—'} · started {display.age(d.get('started_at'), now)}\n"
            f"  state {d.get('state_dir') or '—'}\n"
        )
        t.append("\ns syncs now.", style="dim")
        return t

    @staticmethod
    def _render_vendors(t: Text, vendors: dict[str, Any], now: Any) -> None:
        """Distributor API sources (issue 16): state, last and next pull, the fix when refused."""
        sources = [s for s in vendors.get("sources") or [] if isinstance(s, dict)]
        if not sources:
            return
        t.append("\nVendor APIs\n", style="bold underline")
        for src in sources:
            name = display.plain(src.get("vendor") or src.get("name") or "?")
            state = src.get("state") or "idle"
            if state == "pulling":
                t.append(f"  ⟳ {name}: pulling now\n", style="yellow")
            elif state == "failed":
                t.append(
                    f"  ✗ {name}: {display.plain(src.get('error') or 'failed')}\n",
                    style="bold red",
                )
                if src.get("fix"):
                    t.append(f"    fix: {display.plain(src['fix'])}\n")
            elif state == "ok":
                t.append(
                    f"  ✓ {name}: {display.plain(src.get('last_result') or '')}\n", style="green"
                )
            else:
                t.append(f"  · {name}: not pulled yet\n", style="dim")
            for label, key in (("last pull", "last_pull"), ("next pull", "next_pull")):
                when = src.get(key)
                shown = (
                    f"{display.stamp(when, now)} UTC ({display.age(when, now)})" if when else "—"
                )
                t.append(f"    {label}  {shown}\n")

    def action_reload(self) -> None:
        self.reload()

    def action_sync_now(self) -> None:
        self.sync_now()

    @work(exclusive=True, group="sync-now", exit_on_error=False)
    async def sync_now(self) -> None:
        await self.app.client.sync_now()
        self.notify("Sync started.", timeout=2)
