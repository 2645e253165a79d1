"""The sync loop: connect, sync on start and every ``interval_minutes`` (full every
``full_every_hours``), or at once when someone asks; tell the other parts when the mirror moved."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from .. import activity, events
from ..config import SyncSection
from ..errors import Conflict
from ..psa.base import Connector, PermissionCheck, PSAError, failing
from ..runtime import release_memory
from ..store import Store
from .sync import get_state, run_sync

log = logging.getLogger(__name__)
SYSTEM = "costrecond"  # the actor for what the daemon does by itself


@dataclass(slots=True)
class PsaState:
    """The connection as the sync loop last saw it (part of GET /v1/status)."""

    connected: bool = False
    error: str | None = None
    permission_problems: list[dict[str, str]] = field(default_factory=list)
    # every permission checked, granted or not: {capability, ok, message, fix}
    permissions: list[dict[str, Any]] = field(default_factory=list)
    syncing: bool = False
    next_sync: str | None = None  # ISO time of the next scheduled sync


class SyncLoop:
    def __init__(
        self,
        store: Store,
        connector: Connector | None,
        cfg: SyncSection,
        stopping: asyncio.Event,
        after_sync: Sequence[Callable[[], Awaitable[None]]] = (),
    ):
        self.store = store
        self.connector = connector
        self.cfg = cfg
        self.stopping = stopping
        # Run in order after each successful sync (the cost table reload, then re-matching).
        self.after_sync = list(after_sync)
        self.psa_state = PsaState()
        self._sync_wakeup = asyncio.Event()
        self._sync_full_requested = False
        self._sync_requested_by: str | None = None

    async def request_sync(self, actor: str, *, full: bool = False) -> dict[str, Any]:
        if self.connector is None:
            raise Conflict(
                "no_psa",
                "No PSA is configured; set [psa] kind and its settings in the config file.",
            )
        self._sync_full_requested = self._sync_full_requested or full
        self._sync_requested_by = actor
        self._sync_wakeup.set()
        return {"started": True, "full": full, "already_running": self.psa_state.syncing}

    async def _connect(self) -> bool:
        assert self.connector is not None
        try:
            await self.connector.connect()
            checks: list[PermissionCheck] = await self.connector.check_permissions()
        except PSAError as exc:
            message = exc.message
            self.psa_state.connected, self.psa_state.error = False, message
            await self.store.write(
                lambda c: events.emit(c, "sync", {"state": "failed", "message": message})
            )
            return False
        self.psa_state.connected, self.psa_state.error = True, None
        self.psa_state.permission_problems = [
            {"capability": p.capability, "message": p.message} for p in failing(checks)
        ]
        self.psa_state.permissions = [c.to_json() for c in checks]
        return True

    async def run(self) -> None:
        cfg = self.cfg
        first = True
        while not self.stopping.is_set():
            actor = self._sync_requested_by or SYSTEM
            if not first or cfg.on_start or self._sync_wakeup.is_set():
                await self.sync_once(actor)
            first = False
            self._sync_requested_by = None
            wait = cfg.interval_minutes * 60
            self.psa_state.next_sync = (
                dt.datetime.now(dt.UTC) + dt.timedelta(seconds=wait)
            ).isoformat()
            self._sync_wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sync_wakeup.wait(), wait)

    async def sync_once(self, actor: str) -> None:
        assert self.connector is not None
        if not self.psa_state.connected and not await self._connect():
            return
        full = self._sync_full_requested or await self._full_due()
        self._sync_full_requested = False
        self.psa_state.syncing = True
        await self.store.write(lambda c: events.emit(c, "sync", {"state": "running", "full": full}))
        try:
            await run_sync(self.store, self.connector, actor=actor, full=full)
            self.psa_state.error = None
            for then in self.after_sync:
                await then()
        except PSAError as exc:
            message = exc.message
            self.psa_state.error = message
            log.warning("sync failed: %s", message)
            subject = self.connector.display_name

            def record_failure(c: Connection) -> None:
                events.emit(c, "sync", {"state": "failed", "message": message})
                activity.append(
                    c,
                    actor=actor,
                    action="sync.failed",
                    subject=subject,
                    details={"message": message},
                )

            await self.store.write(record_failure)
            if exc.status in (401, 403):
                self.psa_state.connected = False
        finally:
            self.psa_state.syncing = False
            # A full sync of a big catalogue leaves tens of MB freed; hand them back now rather
            # than carry the sync's peak into the next push (issue 14 item 5).
            release_memory()

    async def _full_due(self) -> bool:
        last = await self.store.read(lambda c: get_state(c, "last_full_sync"))
        if not last:
            return True
        age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(last)
        return age.total_seconds() > self.cfg.full_every_hours * 3600
