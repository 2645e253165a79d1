"""Numbered events for live clients (GET /v1/events?since=N, DESIGN.md §3 "Live updates").

Events are rows in the ``events`` table, written in the same transaction as the change they
announce, so a client that reconnects with its last id misses nothing. ``EventBus`` only wakes
waiting long-polls; the table is the truth.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection

from .db import Event, serialize_writers, utcnow

_T = Event.__table__

# Which daemon wrote an event, when several share one database (set once at start; None on
# SQLite). Lets each daemon tell the others' events from its own (shared_feed.py).
_origin: str | None = None


def set_origin(name: str | None) -> None:
    global _origin
    _origin = name


def emit(conn: Connection, kind: str, data: dict[str, Any] | None = None) -> None:
    # On PostgreSQL ids come from a sequence when the row is inserted, not when it is committed:
    # two concurrent writers could commit id 8 before id 7, and a client that already read 8
    # would never see 7. Holding the writer lock until commit makes ids visible in order.
    serialize_writers(conn)
    if _origin is not None:
        data = {**(data or {}), "origin": _origin}
    conn.execute(insert(_T).values(at=utcnow(), kind=kind, data=data or {}))


def after(conn: Connection, since: int, limit: int = 1000) -> list[dict[str, Any]]:
    rows = conn.execute(select(_T).where(_T.c.id > since).order_by(_T.c.id).limit(limit)).all()
    return [
        {
            "id": r.id,
            "at": r.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "kind": r.kind,
            "data": r.data or {},
        }
        for r in rows
    ]


def last_id(conn: Connection) -> int:
    return conn.execute(select(func.max(_T.c.id))).scalar() or 0


def prune(conn: Connection, keep_days: float = 7.0) -> int:
    """Events are a feed, not the record (the activity log is): old ones may go."""
    cutoff = utcnow() - dt.timedelta(days=keep_days)
    return conn.execute(delete(_T).where(_T.c.at < cutoff)).rowcount or 0


class EventBus:
    """Wakes long-polling clients when new events are committed. Thread-safe ``notify``."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._cond = asyncio.Condition()
        self.generation = 0

    def notify(self) -> None:
        self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self.generation += 1

        async def _go() -> None:
            async with self._cond:
                self._cond.notify_all()

        self._loop.create_task(_go())

    async def wait(self, generation: int, timeout: float) -> bool:
        """Wait until something newer than ``generation`` happened (or timeout)."""
        if self.generation != generation:
            return True
        try:
            async with self._cond:
                await asyncio.wait_for(
                    self._cond.wait_for(lambda: self.generation != generation), timeout
                )
            return True
        except TimeoutError:
            return False
