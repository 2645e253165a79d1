"""costrecond: wires the parts together and owns the lifecycle (DESIGN.md §2).

Start order: instance lock → database backup + migrations → store → socket → API → workers
(sync loop, inbox watcher, push worker). Shutdown (SIGTERM/SIGINT) runs it backwards: stop
accepting, stop workers at a safe point, finish or roll back the current transaction,
checkpoint the database, remove the socket, release the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlalchemy import func, select

from . import __version__, activity, events
from .api import make_app
from .config import Config, current_user
from .db import CatalogItem, Contract, ContractLine
from .lifecycle import InstanceLock, bind_socket, prepare_runtime_dir
from .peers import Gate
from .psa import registry as psa_registry
from .psa.base import Connector, PermissionProblem, PSAError
from .store import Store, current_revision, migrate
from .sync import get_state, run_sync

log = logging.getLogger(__name__)
SYSTEM = "costrecond"  # the actor for what the daemon does by itself


def build_connector(cfg: Config) -> Connector | None:
    if cfg.psa.kind == "none":
        return None
    return psa_registry.build(cfg.psa.kind, cfg.psa.settings)


class Daemon:
    def __init__(
        self,
        cfg: Config,
        *,
        connector_factory: Callable[[Config], Connector | None] = build_connector,
    ):
        self.cfg = cfg
        self.pid = os.getpid()
        self.user = current_user()
        self.started_at = dt.datetime.now(dt.UTC)
        self.gate = Gate(cfg.daemon.allowed_users, cfg.daemon.allowed_groups)
        self.stopping = asyncio.Event()
        self._connector_factory = connector_factory
        self.connector: Connector | None = None
        self.store: Store
        self.bus: events.EventBus
        self.schema_version = ""
        self.psa_state: dict[str, Any] = {
            "connected": False,
            "error": None,
            "permission_problems": [],
            "syncing": False,
            "next_sync": None,
        }
        self._sync_wakeup = asyncio.Event()
        self._sync_full_requested = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._lock = InstanceLock(cfg.lock_path)
        self._runner: web.AppRunner | None = None
        # Optional parts attach themselves here (intake, recon, changes); each has start/stop.
        self.parts: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        self._lock.acquire()
        try:
            await self._start()
            if ready:
                ready()
            await self.stopping.wait()
        finally:
            await self._shutdown()
            self._lock.release()

    def request_stop(self) -> None:
        self.stopping.set()

    async def _start(self) -> None:
        cfg = self.cfg
        cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        backup = await asyncio.to_thread(migrate, cfg.database_url)
        self.bus = events.EventBus(loop)
        self.store = Store(cfg.database_url, self.bus)
        self.schema_version = (
            await asyncio.to_thread(current_revision, self.store.writer_engine) or ""
        )
        # Events are a feed for live clients, the activity log is the record: keep a week of them.
        await self.store.write(events.prune)
        self.connector = self._connector_factory(cfg)
        await self._attach_parts()

        prepare_runtime_dir(cfg.runtime_dir, cfg.daemon.socket_group)
        sock = bind_socket(cfg.socket_path, cfg.daemon.socket_group)
        from .api import routes_for_parts

        app = make_app(self, routes_for_parts(self))
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=3.0
        )
        await self._runner.setup()
        await web.SockSite(self._runner, sock, shutdown_timeout=3.0).start()

        await self.store.write(
            lambda c: activity.append(
                c,
                actor=SYSTEM,
                action="daemon.start",
                subject=f"pid {self.pid}",
                details={
                    "version": __version__,
                    "user": self.user,
                    "psa": cfg.psa.kind,
                    "schema": self.schema_version,
                    "backup": backup,
                },
            )
        )
        log.info("costrecond %s listening on %s (pid %d)", __version__, cfg.socket_path, self.pid)
        if self.connector is not None:
            self._spawn(self._sync_loop(), "sync")
        for name, part in self.parts.items():
            if hasattr(part, "start"):
                self._spawn(part.start(), name)

    async def _attach_parts(self) -> None:
        """Optional subsystems; each module registers itself if present."""
        from . import parts

        await parts.attach(self)

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("background task %s failed", task.get_name(), exc_info=exc)

    async def _shutdown(self) -> None:
        self.stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()  # stop accepting, close connections
        for part in self.parts.values():
            if hasattr(part, "stop"):
                with contextlib.suppress(Exception):
                    await part.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.connector is not None:
            with contextlib.suppress(Exception):
                await self.connector.aclose()
        if hasattr(self, "store"):
            with contextlib.suppress(Exception):
                await self.store.write(
                    lambda c: activity.append(
                        c, actor=SYSTEM, action="daemon.stop", subject=f"pid {self.pid}"
                    )
                )
            await asyncio.to_thread(self.store.close)
        with contextlib.suppress(FileNotFoundError):
            if self._runner is not None:
                self.cfg.socket_path.unlink()
        log.info("costrecond stopped")

    # ------------------------------------------------------------------ sync

    async def request_sync(self, actor: str, *, full: bool = False) -> dict[str, Any]:
        if self.connector is None:
            from .api import ApiError

            raise ApiError(
                409,
                "no_psa",
                "No PSA is configured; set [psa] kind and its settings in the config file.",
            )
        self._sync_full_requested = self._sync_full_requested or full
        self._sync_requested_by = actor
        self._sync_wakeup.set()
        return {"started": True, "full": full, "already_running": self.psa_state["syncing"]}

    async def _connect(self) -> bool:
        assert self.connector is not None
        try:
            await self.connector.connect()
            problems: list[PermissionProblem] = await self.connector.check_permissions()
        except PSAError as exc:
            message = exc.message
            self.psa_state.update(connected=False, error=message)
            await self.store.write(
                lambda c: events.emit(c, "sync", {"state": "failed", "message": message})
            )
            return False
        self.psa_state.update(
            connected=True,
            error=None,
            permission_problems=[
                {"capability": p.capability, "message": p.message} for p in problems
            ],
        )
        return True

    async def _sync_loop(self) -> None:
        cfg = self.cfg.sync
        first = True
        while not self.stopping.is_set():
            actor = getattr(self, "_sync_requested_by", None) or SYSTEM
            if not first or cfg.on_start or self._sync_wakeup.is_set():
                await self.sync_once(actor)
            first = False
            self._sync_requested_by = None
            wait = cfg.interval_minutes * 60
            self.psa_state["next_sync"] = (
                dt.datetime.now(dt.UTC) + dt.timedelta(seconds=wait)
            ).isoformat()
            self._sync_wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sync_wakeup.wait(), wait)

    async def sync_once(self, actor: str) -> None:
        assert self.connector is not None
        if not self.psa_state["connected"] and not await self._connect():
            return
        full = self._sync_full_requested or await self._full_due()
        self._sync_full_requested = False
        self.psa_state["syncing"] = True
        await self.store.write(lambda c: events.emit(c, "sync", {"state": "running", "full": full}))
        try:
            await run_sync(self.store, self.connector, actor=actor, full=full)
            self.psa_state["error"] = None
            if "recon" in self.parts:
                await self.parts["recon"].reload()
            if "intake" in self.parts:  # re-match unmatched vendor rows against the fresh catalogue
                await self.parts["intake"].after_sync()
        except PSAError as exc:
            message = exc.message
            self.psa_state["error"] = message
            log.warning("sync failed: %s", message)
            await self.store.write(
                lambda c: (
                    events.emit(c, "sync", {"state": "failed", "message": message}),
                    activity.append(
                        c,
                        actor=actor,
                        action="sync.failed",
                        subject=self.connector.display_name,
                        details={"message": message},
                    ),
                )
            )
            if exc.status in (401, 403):
                self.psa_state["connected"] = False
        finally:
            self.psa_state["syncing"] = False

    async def _full_due(self) -> bool:
        last = await self.store.read(lambda c: get_state(c, "last_full_sync"))
        if not last:
            return True
        age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(last)
        return age.total_seconds() > self.cfg.sync.full_every_hours * 3600

    # ------------------------------------------------------------------ status

    async def status(self) -> dict[str, Any]:
        def _read(conn: Any) -> dict[str, Any]:
            return {
                "counts": {
                    "items": conn.execute(
                        select(func.count())
                        .select_from(CatalogItem)
                        .where(CatalogItem.gone.is_(False))
                    ).scalar(),
                    "contracts": conn.execute(
                        select(func.count()).select_from(Contract).where(Contract.gone.is_(False))
                    ).scalar(),
                    "lines": conn.execute(
                        select(func.count())
                        .select_from(ContractLine)
                        .where(ContractLine.gone.is_(False))
                    ).scalar(),
                },
                "last_sync": get_state(conn, "last_sync"),
                "last_full_sync": get_state(conn, "last_full_sync"),
                "last_result": get_state(conn, "last_result"),
                "last_event": events.last_id(conn),
            }

        info = await self.store.read(_read)
        c = self.connector
        status: dict[str, Any] = {
            "daemon": {
                "pid": self.pid,
                "version": __version__,
                "started_at": self.started_at.isoformat(),
                "state_dir": str(self.cfg.state_dir),
                "socket": str(self.cfg.socket_path),
                "user": self.user,
                "schema_version": self.schema_version,
                "config": str(self.cfg.path) if self.cfg.path else None,
            },
            "psa": {
                "kind": self.cfg.psa.kind,
                "name": c.display_name if c else "none configured",
                "connected": self.psa_state["connected"],
                "error": self.psa_state["error"],
                "permission_problems": self.psa_state["permission_problems"],
                "last_sync": info["last_sync"],
                "last_full_sync": info["last_full_sync"],
                "next_sync": self.psa_state["next_sync"] if c else None,
                "syncing": self.psa_state["syncing"],
                "last_result": info["last_result"],
                "limits": _limits(c),
            },
            "counts": info["counts"],
            "last_event": info["last_event"],
            "events": {"last_id": info["last_event"]},
            "inbox": {"path": str(self.cfg.inbox_dir), "pending": 0},
            "push": {"running": []},
        }
        for part in self.parts.values():
            if hasattr(part, "status"):
                await part.status(status)
        return status


def _limits(c: Connector | None) -> dict[str, Any] | None:
    if c is None:
        return None
    lim = c.limits
    return {"concurrency": lim.concurrency, "per_hour": lim.per_hour, "per_minute": lim.per_minute}
