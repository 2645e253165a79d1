"""What the other daemons on a shared database did, brought into this one (issue 17 item 4).

Each daemon keeps its own in-memory cost table and wakes its own long-polling clients when *it*
commits. When several daemons share one PostgreSQL database, the others' approvals, pushes,
imports and syncs reach the event table without this daemon noticing. :class:`SharedFeed` polls
the event table by id (the same numbered rows ``GET /v1/events?since=N`` serves, so a client that
reconnects with its last id still misses nothing) and, for each event another daemon wrote:

- ``rows``: refreshes those items in the cost table; ``view``: reloads the whole table and drops
  the matcher cache (a sync moved the catalogue, an import or a mapping re-matched rows);
- ``imports``: marks the match counts stale;
- ``push`` of a newly journaled change set: wakes the local push worker, so the leader starts a
  follower's approval within about a poll interval instead of at its 30 s idle check;
- ``sync`` asked of a follower (``state: requested``): passed to the sync loop, which runs only
  on the leader;
- and wakes the local event bus, so long polls and streams on this daemon's socket answer.

Polling (every half second, one indexed query) rather than LISTEN/NOTIFY: it needs no extra
session, survives a database restart with nothing to re-subscribe, and works through any pooler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from . import events
from .db import Event

log = logging.getLogger(__name__)

_T = Event.__table__


def _after(conn: Connection, since: int, limit: int = 2000) -> list[tuple[int, str, Any]]:
    return [
        (r.id, r.kind, r.data)
        for r in conn.execute(
            select(_T.c.id, _T.c.kind, _T.c.data)
            .where(_T.c.id > since)
            .order_by(_T.c.id)
            .limit(limit)
        )
    ]


class SharedFeed:
    def __init__(
        self,
        store: Any,
        table: Any,
        matching: Any,
        origin: str,
        *,
        wake_push: Callable[[], None],
        on_sync_request: Callable[[str, bool], Awaitable[None]] | None = None,
        poll_seconds: float = 0.5,
    ) -> None:
        self.store = store
        self.table = table
        self.matching = matching
        self.origin = origin
        self.wake_push = wake_push
        self.on_sync_request = on_sync_request
        self.poll_seconds = poll_seconds
        self.cursor = 0
        self.seen_foreign = 0  # events from other daemons taken in (status, tests)

    async def run(self, stopping: asyncio.Event) -> None:
        self.cursor = await self.store.read(events.last_id)
        while not stopping.is_set():
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a database hiccup: try again next tick
                log.warning("reading the other daemons' events failed: %s", exc)
            try:
                await asyncio.wait_for(stopping.wait(), self.poll_seconds)
            except TimeoutError:
                pass

    async def poll_once(self) -> int:
        """Take in everything after the cursor; returns how many foreign events were found."""
        found = 0
        while True:
            batch = await self.store.read(_after, self.cursor)
            if not batch:
                return found
            self.cursor = batch[-1][0]
            foreign = [(k, d or {}) for _, k, d in batch if (d or {}).get("origin") != self.origin]
            if foreign:
                found += len(foreign)
                self.seen_foreign += len(foreign)
                await self._apply(foreign)
            if len(batch) < 2000:
                return found

    async def _apply(self, foreign: list[tuple[str, dict[str, Any]]]) -> None:
        ids: set[int] = set()
        reload = catalogue = wake = False
        sync_asked: tuple[str, bool] | None = None
        for kind, data in foreign:
            if kind == "rows":
                ids.update(int(i) for i in data.get("ids", ()))
            elif kind == "view":
                reload = True
                catalogue = catalogue or data.get("reason") == "sync"
            elif kind == "imports":
                self.matching.changed()
            elif kind == "push" and data.get("status") == "pending":
                wake = True
            elif kind == "sync" and data.get("state") == "requested":
                full = bool(data.get("full")) or (sync_asked is not None and sync_asked[1])
                sync_asked = (str(data.get("by") or "costrecond"), full)
        if reload:
            self.matching.invalidate(catalogue=catalogue)
            await self.store.read(self.table.reload)
        elif ids:
            await self.store.read(self.table.refresh, ids)
        if wake:
            self.wake_push()
        if sync_asked is not None and self.on_sync_request is not None:
            await self.on_sync_request(*sync_asked)
        if self.store.bus is not None:
            self.store.bus.notify()
