"""costrecond's composition root: builds the parts, wires them together and owns the lifecycle
(DESIGN.md §2).

Start order: instance lock → database backup + migrations → store → parts (connector, cost table,
intake, push worker, sync loop, approvals) → socket → API → workers (inbox watcher everywhere;
sync loop and push worker only while this daemon leads, leadership.py; on a shared PostgreSQL
database also the feed of the other daemons' events, shared_feed.py). Shutdown (SIGTERM/SIGINT)
runs it backwards: stop accepting, stop workers at a safe point, finish or roll back the current
transaction, checkpoint the database, remove the socket, release leadership and the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import func, select

from . import __version__, activity, events
from .api import ApiRunner, Services, make_app
from .changes import Approvals, PushWorker
from .config import Config, current_user
from .costs import CostTable
from .db import CatalogItem, Contract, ContractLine
from .intake import Intake
from .leadership import FencedStore, Leadership
from .lifecycle import InstanceLock, bind_socket, prepare_runtime_dir
from .mirror import SyncLoop, get_state
from .mirror.loop import SYSTEM
from .mirror.sync import set_state
from .peers import Gate
from .psa import registry as psa_registry
from .psa.base import Connector
from .shared_feed import SharedFeed
from .store import Store, current_revision, migrate
from .vendors.pulls import VendorPulls

log = logging.getLogger(__name__)


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
        self.schema_version = ""
        self._tasks: list[asyncio.Task[Any]] = []
        self._lock = InstanceLock(cfg.lock_path)
        self._runner: web.AppRunner | None = None
        # The parts, made by _build() once the database is migrated.
        self.store: Store | None = None
        self.bus: events.EventBus
        self.connector: Connector | None = None
        self.table: CostTable
        self.intake: Intake
        self.push: PushWorker | None = None
        self.mirror: SyncLoop
        self.approvals: Approvals
        self.vendors: VendorPulls
        self._built = False
        # Team install (issue 17): several daemons on one PostgreSQL database. The name is this
        # daemon's host part in the activity log; the identity tells processes apart.
        self.name = cfg.daemon.name or socket.gethostname().split(".")[0]
        self.identity = f"{self.name}:{self.pid}"
        self.shared = cfg.database_url.startswith("postgresql")
        self.leadership = Leadership(cfg.database_url, identity=self.identity)
        self.feed: SharedFeed | None = None
        self._leader_tasks: list[asyncio.Task[Any]] = []

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

    def _build(self, store: Store, connector: Connector | None) -> None:
        """The composition root: every part is made here and given what it needs."""
        cfg = self.cfg
        self.store = store
        self.connector = connector
        self.table = CostTable(margin_floor=Decimal(str(cfg.push.margin_floor)))
        self.intake = Intake(cfg, store, self.table)
        # The push worker's journal writes are fenced by the leadership epoch (leadership.py).
        self.push = (
            PushWorker(
                FencedStore(store, self.leadership),  # type: ignore[arg-type]
                connector,
                self.table,
                self.stopping,
            )
            if connector is not None
            else None
        )
        self.vendors = VendorPulls(
            cfg.vendors,
            store,
            self.intake,
            self.table,
            self.stopping,
            wait_for_catalogue=connector is not None,
        )
        self.mirror = SyncLoop(
            store,
            connector,
            cfg.sync,
            self.stopping,
            # After a sync the cost table reloads, then unmatched vendor rows are matched again
            # against the fresh catalogue (and the first vendor pulls may start).
            after_sync=[
                self._reload_table,
                self.intake.matching.after_sync,
                self.vendors.catalogue_synced,
            ],
        )
        self.approvals = Approvals(
            store,
            self.table,
            self.push,
            connector,
            cfg.push.line_policy,
        )
        if self.shared:
            self.feed = SharedFeed(
                store,
                self.table,
                self.intake.matching,
                self.identity,
                wake_push=self.approvals.wake,
                on_sync_request=self._sync_requested_elsewhere,
            )
        self._built = True

    async def _reload_table(self) -> None:
        assert self.store is not None
        await self.store.write(self.table.reload)

    async def _start(self) -> None:
        cfg = self.cfg
        cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        backup = await asyncio.to_thread(migrate, cfg.database_url)
        if self.shared:
            # Before the first write: every event and activity entry says which daemon made it.
            events.set_origin(self.identity)
            activity.name_host(self.name)
        self.bus = events.EventBus(loop)
        store = Store(cfg.database_url, self.bus)
        self.store = store
        revision = await asyncio.to_thread(current_revision, store.writer_engine)
        self.schema_version = revision or ""
        # Events are a feed for live clients, the activity log is the record: keep a week of them.
        await store.write(events.prune)
        if cfg.daemon.activity_key_file:
            next_entry = await store.read(activity.next_id)
            key_path = Path(cfg.daemon.activity_key_file).expanduser()
            activity.use_key(
                await asyncio.to_thread(activity.load_key, key_path, next_entry=next_entry)
            )
        self._build(store, self._connector_factory(cfg))
        # The cost table is loaded before the socket answers: a client that asked at once (a
        # script right after `costrecond start`, a restart on PostgreSQL) was served the empty
        # table of a daemon still loading, with no sign that it was not the real one.
        await self._reload_table()

        prepare_runtime_dir(cfg.runtime_dir, cfg.daemon.socket_group)
        sock = bind_socket(cfg.socket_path, cfg.daemon.socket_group)
        app = make_app(
            Services(
                store=store,
                bus=self.bus,
                gate=self.gate,
                stopping=self.stopping,
                table=self.table,
                intake=self.intake,
                approvals=self.approvals,
                mirror=TeamSync(self) if self.shared else self.mirror,  # type: ignore[arg-type]
                status=self.status,
                pid=self.pid,
                schema_version=self.schema_version,
                vendors=self.vendors,
            )
        )
        self._runner = ApiRunner(app, handle_signals=False, access_log=None, shutdown_timeout=3.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock, shutdown_timeout=3.0).start()

        await store.write(
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
        # The PSA workers (sync loop, push worker) run only on the leader: always this daemon on
        # SQLite, one of the daemons sharing a PostgreSQL database (leadership.py).
        self._spawn(self.leadership.run(self._gain, self._lose, self.stopping), "leadership")
        if self.feed is not None:
            self._spawn(self.feed.run(self.stopping), "shared-feed")
        self._spawn(self.intake.inbox.start(), "intake")
        self._spawn(self.vendors.run(), "vendors")

    # ------------------------------------------------------------------ leadership

    async def _gain(self) -> None:
        if self.stopping.is_set():
            return
        if self.connector is not None:
            self._lead(self.mirror.run(), "sync")
        if self.shared and self.connector is not None:
            self._lead(self._publish_psa_state(), "psa-state")
        if self.push is not None:
            # Open change sets (this daemon's, another's, or one a dead leader left mid-push)
            # are resumed step by step under the usual re-read guard.
            self._lead(self.push.run(), "push")
        if self.shared:
            log.info("leading the PSA workers (epoch %s)", self.leadership.epoch)
            # Never raises: a leader whose gain callback failed would hold the lock with no
            # workers running, and nobody else could take over.
            try:
                await self._record_leadership("leader.gain")
            except Exception:  # noqa: BLE001
                log.warning("could not record leader.gain in the activity log", exc_info=True)

    async def _lose(self) -> None:
        """Stop the PSA workers at once: open steps stay journaled for the next leader."""
        tasks, self._leader_tasks = self._leader_tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if tasks and self.shared and not self.stopping.is_set():
            log.warning("no longer leading the PSA workers; another daemon takes over")
            with contextlib.suppress(Exception):
                await self._record_leadership("leader.loss")

    async def _sync_requested_elsewhere(self, actor: str, full: bool) -> None:
        if self.leadership.is_leader and self.connector is not None:
            await self.mirror.request_sync(actor, full=full)

    async def _publish_psa_state(self) -> None:
        """The leader alone talks to the PSA; it shares what it sees (connected, errors, missing
        permissions, next sync) so every daemon's status and Sync view show the same."""
        assert self.store is not None
        last = None
        while True:
            state = json.dumps(_psa_state_json(self.mirror.psa_state), sort_keys=True)
            if state != last:
                await self.store.write(lambda c, v=state: set_state(c, PSA_STATE_KEY, v))
                last = state
            await asyncio.sleep(1.0)

    def _lead(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        task.add_done_callback(self._task_done)
        self._leader_tasks.append(task)

    async def _record_leadership(self, action: str) -> None:
        assert self.store is not None
        epoch = self.leadership.epoch
        await self.store.write(
            lambda c: activity.append(
                c,
                actor=SYSTEM,
                action=action,
                subject=self.identity,
                details={"epoch": epoch, "pid": self.pid},
            )
        )

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
        if self._built:
            await self.approvals.finish_recordings()
        if self._built:
            try:
                await self.intake.inbox.stop()
            except Exception:
                log.warning("stopping the inbox watcher failed", exc_info=True)
        if self._built:
            await self.vendors.aclose()
        # PSA workers first, then leadership: nobody else may start pushing while ours still sends.
        await self._lose()
        with contextlib.suppress(Exception):
            await self.leadership.release()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # noqa: BLE001 - _task_done has logged it already
                pass
        if self.connector is not None:
            try:
                await self.connector.aclose()
            except Exception:
                log.warning("closing the PSA connection failed", exc_info=True)
        if self.store is not None:
            try:
                await self.store.write(
                    lambda c: activity.append(
                        c, actor=SYSTEM, action="daemon.stop", subject=f"pid {self.pid}"
                    )
                )
            except Exception:
                log.warning("could not record daemon.stop in the activity log", exc_info=True)
            await asyncio.to_thread(self.store.close)
        with contextlib.suppress(FileNotFoundError):
            if self._runner is not None:
                self.cfg.socket_path.unlink()
        log.info("costrecond stopped")

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

        assert self.store is not None  # the API (the only caller) starts after the store
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
                "connected": self.mirror.psa_state.connected,
                "error": self.mirror.psa_state.error,
                "permission_problems": self.mirror.psa_state.permission_problems,
                "permissions": self.mirror.psa_state.permissions,
                "last_sync": info["last_sync"],
                "last_full_sync": info["last_full_sync"],
                "next_sync": self.mirror.psa_state.next_sync if c else None,
                "syncing": self.mirror.psa_state.syncing,
                "last_result": info["last_result"],
                "limits": _limits(c),
            },
            "counts": info["counts"],
            "last_event": info["last_event"],
            "events": {"last_id": info["last_event"]},
            "inbox": {"path": str(self.cfg.inbox_dir), "pending": 0},
            "push": {"running": []},
        }
        # Each part adds its own figures (in this order, so the JSON keys stay where they were).
        push = self.push
        status["push"] = {"running": [push.current] if push and push.current else []}
        status["counts"]["table_rows"] = self.table.total()
        status["inbox"] = self.intake.inbox.status_json()
        status["counts"].update(await self.intake.matching.counts())
        status["vendors"] = self.vendors.status_json()
        status["leader"] = await self._leader_status()
        if self.shared and not self.leadership.is_leader and c is not None:
            shared = await self.store.read(lambda conn: get_state(conn, PSA_STATE_KEY))
            if shared:
                status["psa"].update(json.loads(shared))
        return status

    async def _leader_status(self) -> dict[str, Any]:
        """Who runs the PSA workers (sync, push) for this database, and whether it is us."""
        lead = self.leadership
        out: dict[str, Any] = {
            "shared": self.shared,
            "this_daemon": self.identity,
            "leading": lead.is_leader,
            "holder": self.identity if lead.is_leader else None,
            "epoch": lead.epoch if lead.is_leader else None,
        }
        if self.shared and self.store is not None:
            try:
                out["holder"] = await lead.holder()
                out["epoch"] = int(
                    await self.store.read(lambda c: get_state(c, lead.epoch_key)) or 0
                )
            except Exception as exc:  # noqa: BLE001 - status must answer even then
                log.warning("could not read the leader from the database: %s", exc)
        return out


PSA_STATE_KEY = "leader_psa_state"


def _psa_state_json(state: Any) -> dict[str, Any]:
    return {
        "connected": state.connected,
        "error": state.error,
        "permission_problems": state.permission_problems,
        "next_sync": state.next_sync,
        "syncing": state.syncing,
    }


class TeamSync:
    """The sync loop as the API sees it when several daemons share the database: only the leader
    runs it, so a follower passes a request on (an event the leader's shared feed acts on)."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    def __getattr__(self, name: str) -> Any:
        return getattr(self._daemon.mirror, name)

    async def request_sync(self, actor: str, *, full: bool = False) -> dict[str, Any]:
        d = self._daemon
        out = await d.mirror.request_sync(actor, full=full)  # refuses when no PSA is configured
        if d.leadership.is_leader:
            return out
        assert d.store is not None
        await d.store.write(
            lambda c: events.emit(c, "sync", {"state": "requested", "full": full, "by": actor})
        )
        return {**out, "passed_to_leader": True}


def _limits(c: Connector | None) -> dict[str, Any] | None:
    if c is None:
        return None
    lim = c.limits
    return {"concurrency": lim.concurrency, "per_hour": lim.per_hour, "per_minute": lim.per_minute}
