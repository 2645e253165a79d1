"""The costrecon TUI: five views over the daemon's local API, live through its event feed.

The app talks to costrecond only through ``client`` (a :class:`costrecon_tui.client.DaemonClient`
or anything with the same methods). Every call runs in a worker; failures come back to
:meth:`CostreconApp.report_error`, the one place that turns them into words for people.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Header
from textual.worker import WorkerCancelled

from costrecon_tui import keymap as keys
from costrecon_tui.client import ClientError, DaemonError, DaemonNotRunning, Event
from costrecon_tui.commands import CostreconCommands
from costrecon_tui.screens.activity import ActivityView
from costrecon_tui.screens.costs import CostsView
from costrecon_tui.screens.dialogs import ErrorScreen, HelpScreen, NotRunningScreen
from costrecon_tui.screens.files import FilesView
from costrecon_tui.screens.mappings import MappingsView
from costrecon_tui.screens.sync import SyncView
from costrecon_tui.widgets import display
from costrecon_tui.widgets.errors import StaysUp
from costrecon_tui.widgets.notices import Notices
from costrecon_tui.widgets.status_line import StatusLine
from costrecon_tui.widgets.tables import KeyTable

log = logging.getLogger("costrecon_tui")
# Textual draws on stderr: an unconfigured logger must never fall back to printing there.
# cli.py may attach a file handler (details of unexpected errors go to the log, not the screen).
log.addHandler(logging.NullHandler())

VIEWS = ["costs", "activity", "files", "mappings", "sync"]
GRID_ACTIONS = {b.action.split("(")[0] for b in keys.GRID}
TITLES = {
    "costs": "Costs",
    "activity": "Activity",
    "files": "Files",
    "mappings": "Mappings",
    "sync": "Sync",
}
RETRY_SECONDS = 2.0
# More unexpected errors than this within ERROR_WINDOW seconds means something is failing on every
# frame: the app ends (terminal restored, exit status 1) instead of stacking error panels.
MAX_ERRORS = 5
ERROR_WINDOW = 10.0


class MainScreen(StaysUp, Screen[None]):
    """Header, status line, the five views in a switcher, footer."""

    BINDINGS = cast("list[BindingType]", keys.MAIN)  # list is invariant

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")
        yield StatusLine(id="status-line")
        with ContentSwitcher(initial="costs", id="views"):
            yield CostsView(id="costs")
            yield ActivityView(id="activity")
            yield FilesView(id="files")
            yield MappingsView(id="mappings")
            yield SyncView(id="sync")
        yield Notices(id="notices")
        yield Footer()

    def on_mount(self) -> None:
        self.app.main_ready()  # type: ignore[attr-defined]

    def action_show_view(self, name: str) -> None:
        self.app.show_view(name)  # type: ignore[attr-defined]

    def action_cycle_view(self, step: int) -> None:
        app: CostreconApp = self.app  # type: ignore[assignment]
        app.show_view(VIEWS[(VIEWS.index(app.current_view) + step) % len(VIEWS)])


class CostreconApp(StaysUp, App[None]):
    TITLE = "costrecon"
    CSS_PATH = Path(__file__).parent / "app.tcss"
    BINDINGS = cast("list[BindingType]", keys.APP)  # list is invariant
    COMMANDS = App.COMMANDS | {CostreconCommands}
    EVENT_TIMEOUT = 25.0
    RETRY_SECONDS = RETRY_SECONDS

    def __init__(
        self,
        client: Any,
        *,
        keymap: dict[str, str] | None = None,
        start_daemon: Callable[[], None] | None = None,
        clock: Callable[[], datetime] | None = None,
        log_path: str | None = None,
        confirm_change_pct: float = 50.0,
    ) -> None:
        super().__init__()
        self.log_path = log_path
        self.confirm_change_pct = confirm_change_pct
        self.unexpected_errors: list[tuple[str, BaseException]] = []
        self._main_is_ready = False
        self._error_clock: list[tuple[float, str]] = []
        self._sync_view_fetched = 0.0
        self.client = client
        self.start_daemon = start_daemon
        self._clock = clock or (lambda: datetime.now(UTC))
        self.connected: bool | None = None
        self.status: dict[str, Any] | None = None
        self.sync_event: dict[str, Any] | None = None
        self.pushes: dict[int, dict[str, Any]] = {}
        self.last_event_id: int | None = None
        self.current_view = "costs"
        self._busy: set[str] = set()
        self._retry = asyncio.Event()
        self._not_running: NotRunningScreen | None = None
        self._attempts = 0
        if keymap:
            unknown = keys.unknown_ids(keymap)
            if unknown:
                log.warning("keymap: no binding with id %s", ", ".join(unknown))
            self.set_keymap(keymap)

    def now(self) -> datetime:
        return self._clock()

    def get_default_screen(self) -> Screen[Any]:
        return MainScreen()

    def main_ready(self) -> None:
        """Called by MainScreen once its views exist: focus the grid and connect."""
        self._main_is_ready = True
        self.sub_title = TITLES[self.current_view]
        self.costs.grid.focus()
        self._show_status()
        self.supervise()

    # ------------------------------------------------------------------ views

    @property
    def main(self) -> MainScreen:
        return self.screen_stack[0]  # type: ignore[return-value]

    @property
    def costs(self) -> CostsView:
        return self.main.query_one(CostsView)

    @property
    def activity_view(self) -> ActivityView:
        return self.main.query_one(ActivityView)

    @property
    def files(self) -> FilesView:
        return self.main.query_one(FilesView)

    @property
    def mappings_view(self) -> MappingsView:
        return self.main.query_one(MappingsView)

    @property
    def sync_view(self) -> SyncView:
        return self.main.query_one(SyncView)

    def view(self, name: str) -> Any:
        return self.main.query_one(f"#{name}")

    def show_view(self, name: str) -> None:
        if name not in VIEWS:
            return
        self.current_view = name
        self.main.query_one(ContentSwitcher).current = name
        self.sub_title = TITLES[name]
        view = self.view(name)
        view.focus_main()
        for table in view.query(KeyTable):
            self.call_after_refresh(table.fit_flex_column)

    def action_show_view(self, name: str) -> None:
        if self.screen is not self.main:
            self.pop_screen()
        self.show_view(name)

    def action_sync_now(self) -> None:
        self.sync_view.sync_now()

    def action_in_view(self, view: str, action: str) -> None:
        """A palette command: switch to the view it acts on, then run the view's action there
        (never on a view the user cannot see)."""
        if self.screen is not self.main:
            self.pop_screen()
        self.show_view(view)
        target = self.costs.grid if view == "costs" and action in GRID_ACTIONS else self.view(view)

        async def run() -> None:
            await self.run_action(action, target)

        self.call_after_refresh(lambda: self.run_worker(run(), exit_on_error=False))

    def keys_for(self, binding: Any) -> str:
        """The key(s) that run a binding now, after the user's keymap."""
        keys_ = self._keymap.get(binding.id, binding.key) if binding.id else binding.key
        return ", ".join(self.get_key_display(Binding(k.strip(), "")) for k in keys_.split(","))

    def action_help(self) -> None:
        screen = self.screen
        by_id: dict[str, tuple[list[str], str]] = {}
        for _key, active in screen.active_bindings.items():
            b = active.binding
            if not b.id or b.system:
                continue  # Textual's own scroll keys etc.: not ours to document
            keys_, desc = by_id.setdefault(b.id, ([], b.description or b.action))
            shown = self.get_key_display(b)
            if shown not in keys_:
                keys_.append(shown)
        rows = [(", ".join(k), desc, bid) for bid, (k, desc) in by_id.items()]
        title = TITLES[self.current_view] if screen is self.main else type(screen).__name__
        view = (
            next(iter(self.query(f"#{self.current_view}")), None) if screen is self.main else None
        )
        extra = (  # e.g. the columns
            view.help_text() if view is not None and hasattr(view, "help_text") else None
        )
        self.push_screen(HelpScreen(title, rows, extra))

    # ------------------------------------------------------------------ busy + status line

    def set_busy(self, key: str, busy: bool) -> None:
        if busy:
            self._busy.add(key)
        else:
            self._busy.discard(key)
        self._show_status()

    def _show_status(self) -> None:
        try:
            line = self.main.query_one(StatusLine)
        except Exception:  # not composed yet
            return
        line.show(
            connected=self.connected is not False,
            status=self.status,
            sync_state=self.sync_event,
            pushes=self.pushes,
            now=self.now(),
            busy=bool(self._busy),
        )

    @work(exclusive=True, group="status", exit_on_error=False)
    async def refresh_status(self) -> None:
        self.status = await self.client.status()
        self._status_changed()

    def _status_changed(self) -> None:
        self._show_status()
        if self.status is not None:
            self.sync_view.show_status(self.status, self.sync_event)
            self.files.set_inbox(self.status.get("inbox") or {})

    # ------------------------------------------------------------------ connection + events

    @work(exclusive=True, group="daemon-connection", exit_on_error=False)
    async def supervise(self) -> None:
        """Connect, then long-poll events; on loss show the not-running screen and retry every ~2 s.

        After a reconnect, events resume from the last id seen and every view is fetched again, so
        nothing that happened while the daemon was away is lost.
        """
        while True:
            try:
                status = await self.client.status()
            except DaemonNotRunning as exc:
                self._disconnected(str(exc))
                await self._wait_retry()
                continue
            except ClientError as exc:
                self._attempts += 1
                self.notify(str(exc), severity="error", timeout=4)
                await self._wait_retry()
                continue
            was_connected = self.connected
            self._connected(status)
            if self.last_event_id is None:
                self.last_event_id = int((status.get("events") or {}).get("last_id") or 0)
            if was_connected is not True:
                self._reload_views()
            try:
                while True:
                    batch = await self.client.events(
                        since=self.last_event_id, timeout=self.EVENT_TIMEOUT
                    )
                    for ev in batch:
                        self.last_event_id = max(self.last_event_id or 0, ev.id)
                        try:
                            self.dispatch_event(ev)
                        except Exception as exc:  # one bad event must not stop the feed
                            log.exception("event %s", ev)
                            self.notify(
                                f"Could not show event {ev.kind} #{ev.id}: {exc}", severity="error"
                            )
            except DaemonNotRunning as exc:
                self._disconnected(str(exc))
                await self._wait_retry()
            except ClientError as exc:
                log.warning("event feed: %s", exc)
                await self._wait_retry(min(1.0, self.RETRY_SECONDS))

    async def _wait_retry(self, seconds: float | None = None) -> None:
        if seconds is None:
            seconds = self.RETRY_SECONDS
        self._retry.clear()
        try:
            await asyncio.wait_for(self._retry.wait(), seconds)
        except TimeoutError:
            pass

    def retry_now(self) -> None:
        self._retry.set()

    def _connected(self, status: dict[str, Any]) -> None:
        if self.connected is False:
            self.notify("Reconnected to costrecond.", timeout=3)
        self.connected = True
        self._attempts = 0
        self.status = status
        self.pushes = {
            int(cs): self.pushes.get(int(cs), {"done": 0, "total": "?"})
            for cs in (status.get("push") or {}).get("running") or []
        }
        if self._not_running is not None:
            screen, self._not_running = self._not_running, None
            while screen in self.screen_stack and len(self.screen_stack) > 1:
                self.pop_screen()
        self._status_changed()

    def _disconnected(self, message: str) -> None:
        self._attempts += 1
        first = self.connected is not False
        self.connected = False
        self._show_status()
        if self._not_running is None:
            self._not_running = NotRunningScreen(
                message,
                can_start=self.start_daemon is not None,
                attempts=self._attempts,
                retry_seconds=self.RETRY_SECONDS,
            )
            # close any modal first: its data belongs to the daemon that went away
            while len(self.screen_stack) > 1:
                self.pop_screen()
            self.push_screen(self._not_running)
            if first:
                log.warning("daemon not running: %s", message)
        self.call_after_refresh(self._show_attempt, message)

    def _show_attempt(self, message: str) -> None:
        if self._not_running is not None and self._not_running.is_mounted:
            self._not_running.show_attempt(self._attempts, message)

    def start_daemon_now(self) -> None:
        if self.start_daemon is None:
            return
        self._start_daemon_worker()

    @work(thread=True, exclusive=True, group="start-daemon", exit_on_error=False)
    def _start_daemon_worker(self) -> None:
        self.call_from_thread(self.notify, "Starting costrecond…", timeout=2)
        assert self.start_daemon is not None
        self.start_daemon()
        self.call_from_thread(self.retry_now)

    def _reload_views(self) -> None:
        self.costs.on_reconnected()
        self.activity_view.on_reconnected()
        self.files.on_reconnected()
        self.mappings_view.on_reconnected()

    def dispatch_event(self, ev: Event) -> None:
        """Route one event from the daemon's feed to the views it concerns."""
        data = ev.data or {}
        if ev.kind == "activity":
            self.activity_view.add_entry(data)
            action = data.get("action") or ""
            if action.startswith("mapping."):
                self.mappings_view.load()
            elif action.startswith("import."):
                self.files.load()
        elif ev.kind == "rows":
            self.costs.on_daemon_rows([int(i) for i in data.get("ids") or []])
        elif ev.kind == "view":
            self.costs.load_view()
        elif ev.kind == "sync":
            self.sync_event = data
            if data.get("state") == "failed":
                self.notify(
                    f"PSA sync failed: {display.plain(data.get('message'))}",
                    severity="error",
                    timeout=8,
                )
            if data.get("state") in ("done", "failed"):
                self.refresh_status()
            else:
                self._status_changed()
        elif ev.kind == "push":
            cs_id = display.number(data.get("change_set_id"))
            status = data.get("status")
            if status in ("pending", "pushing"):
                self.pushes[cs_id] = data
            elif status in ("scheduled", "cancelled"):
                # Nothing is being sent: an approval waiting for its date, or one called off.
                self.pushes.pop(cs_id, None)
                self.notify(f"Change set #{cs_id} {status}.", timeout=4)
            else:
                self.pushes.pop(cs_id, None)
                severity = "information" if status == "done" else "warning"
                self.notify(
                    f"Change set #{cs_id} {status}: {data.get('done')}/{data.get('total')} "
                    "targets.",
                    severity=severity,
                    timeout=6,
                )
            self._show_status()
        elif ev.kind == "imports":
            self.files.load()
            self.mappings_view.load()
            self.refresh_status()
        if self.current_view == "sync" and ev.kind != "sync":
            # the Sync view shows counts, inbox and pushes: keep it live while it is on screen,
            # at most one status request a second however busy the feed is
            now = time.monotonic()
            if now - self._sync_view_fetched >= 1.0:
                self._sync_view_fetched = now
                self.refresh_status()

    # ------------------------------------------------------------------ errors

    def report_error(self, exc: BaseException, *, context: str = "") -> None:
        """The one place where failures become words for people (never a traceback)."""
        if isinstance(exc, WorkerCancelled | asyncio.CancelledError):
            return
        if isinstance(exc, DaemonNotRunning):
            if self.connected is not False:
                self._disconnected(str(exc))
            self.retry_now()
            return
        if isinstance(exc, DaemonError):
            self.notify(str(exc), severity="error", timeout=8)
            return
        if isinstance(exc, ClientError):
            self.notify(str(exc), severity="error", timeout=6)
            return
        if not self.report_unexpected(exc, context or "a worker"):
            log.error("unexpected error in %s", context or "a worker", exc_info=exc)

    def report_unexpected(self, exc: BaseException, where: str) -> bool:
        """Show an unexpected failure in the error panel and keep running. False when the app
        cannot carry on (not started yet, or failing over and over): the caller lets it end."""
        now = time.monotonic()
        recent = [t for t, _ in self._error_clock if now - t < ERROR_WINDOW]
        if not self._main_is_ready or self._exit or len(recent) >= MAX_ERRORS:
            return False
        log.error("unexpected error in %s", where, exc_info=exc)
        self.unexpected_errors.append((where, exc))
        self._error_clock.append((now, where))
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.call_later(self._show_error_panel, f"An action failed unexpectedly ({message}).")
        return True

    def _show_error_panel(self, message: str) -> None:
        if isinstance(self.screen, ErrorScreen):
            return  # one panel at a time; the log has every failure
        # a dialog that failed may be half built and no longer answer keys: close dialogs first
        while len(self.screen_stack) > 1 and not isinstance(self.screen, NotRunningScreen):
            self.pop_screen()
        self.push_screen(ErrorScreen(message, self.log_path))

    def _handle_exception(self, error: Exception) -> None:
        # Textual ends the app on any exception it catches; keep running when it is safe to
        if self.report_unexpected(error, "Textual"):
            return
        log.critical("the TUI ends after an unexpected error", exc_info=error)
        super()._handle_exception(error)

    def notice_messages(self) -> list[str]:
        """Every notification still held (newest last), as the user reads them."""
        try:
            return [n.message for n in self.main.query_one(Notices).notices]
        except Exception:
            return [n.message for n in self._notifications]

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: Any = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Notifications go to the notice lines above the footer (no toast over the table)."""
        try:
            notices = self.main.query_one(Notices)
        except Exception:
            super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)
            return
        text = f"{title}: {message}" if title else message
        notices.add(text, str(severity), 5.0 if timeout is None else timeout)

    def on_worker_state_changed(self, event: Any) -> None:
        from textual.worker import WorkerState

        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self.report_error(event.worker.error, context=event.worker.name)
