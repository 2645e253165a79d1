"""Push/sync leadership: when several daemons share one database, exactly one of them talks to
the PSA (mirror sync, push of approved change sets). The others serve their sockets, reads,
approvals and imports; the leader pushes their approvals.

On SQLite there is one host and one daemon per database file, so the daemon always leads.

On PostgreSQL leadership is a **session-level advisory lock held on a dedicated connection**,
chosen over a lease row with a heartbeat because:

- when the leader's process dies (kill -9, OOM, crash) its kernel closes the TCP connection, the
  server sees end-of-file at once, ends the session and frees the lock: a follower polling every
  second takes over in about a second, with no expiry to wait out;
- when the leader's *host* dies or is cut off (no FIN ever arrives), the server-side TCP
  keepalives this connection sets for its session (2 s idle, then 3 probes 1 s apart) end the
  session in about 5 s, still inside the 10 s takeover promise; the old leader's side has
  ``tcp_user_timeout`` and keepalives too, so its own :meth:`Leadership.check` fails within about
  5 s and it stops its workers;
- no clocks are compared and nothing is written: a lease needs a heartbeat UPDATE every couple
  of seconds (WAL, replication traffic) and a TTL short enough for 10 s, which a leader stalled
  by a slow disk or a long pause would lose spuriously.

The price: the connection must reach PostgreSQL directly or through session pooling. A
transaction-pooling proxy (pgbouncer ``pool_mode = transaction``) hands the session to others
and silently breaks session locks; the README's team install says so.

Leadership only decides who *runs* the PSA workers. It is not a fence on its own: a leader that
was cut off may still be finishing one PSA request when the other takes over. Each gain therefore
bumps an **epoch** (a counter row in ``sync_state``, under the writers' lock); every journal
write of the push worker goes through :class:`FencedStore` and is refused once a newer leader
exists, and each step stays guarded by its before/after check against the PSA (changes/). What
no fence can stop is a PSA request already in flight when the session was cut: the next leader's
re-read may see the old cost and write it once more (same value; UNCERTAIN how often a real
partition lands exactly there, so the window is kept to one request).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Connection, make_url

from .db import WRITER_LOCK, SyncState, lock_key
from .errors import Conflict

if TYPE_CHECKING:
    import psycopg  # only on PostgreSQL; imported where a connection is made

T = TypeVar("T")

log = logging.getLogger(__name__)

PSA_WORKERS = "leader:psa-workers"

# Server-side keepalive for the leader's session (seconds): idle, interval, probes -> ~5 s.
_SERVER_KEEPALIVE = (2, 1, 3)
# Client-side: an unanswered write or keepalive fails the connection after this long (ms).
_CLIENT_USER_TIMEOUT_MS = 5000


def default_identity() -> str:
    """Who holds leadership, as shown to people: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _libpq_conninfo(url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL as a libpq connection string."""
    u = make_url(url)
    parts = {
        "host": u.host,
        "port": u.port,
        "user": u.username,
        "password": u.password,
        "dbname": u.database,
    }
    parts.update({k: v for k, v in u.query.items() if isinstance(v, str)})
    from psycopg.conninfo import make_conninfo

    return make_conninfo("", **{k: v for k, v in parts.items() if v is not None})


class Leadership:
    """One daemon's claim on the PSA workers. Async methods never block the event loop.

    ``try_acquire()`` takes leadership if nobody holds it; ``check()`` confirms a held one is
    still held (and notices a dropped connection); ``release()`` gives it up; ``run()`` keeps
    doing the right one and calls ``on_gain``/``on_loss`` as the state changes.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = PSA_WORKERS,
        identity: str | None = None,
        check_seconds: float = 1.0,
    ) -> None:
        self.url = url
        self.name = name
        self.identity = identity or default_identity()
        self.check_seconds = check_seconds
        self.shared = url.startswith("postgresql")
        self._key = lock_key(name)
        self._conn: psycopg.Connection[Any] | None = None  # only on PostgreSQL
        self._mutex = threading.Lock()
        self._leader = False
        self._lost: asyncio.Event | None = None
        self.epoch: int | None = None  # fencing token of the last gain; None on SQLite

    @property
    def is_leader(self) -> bool:
        return self._leader

    # ------------------------------------------------------------------ async API

    async def try_acquire(self) -> bool:
        """Become leader if nobody is; True when this daemon leads afterwards."""
        if not self.shared:
            self._leader = True
            return True
        if self._leader:
            return await self.check()
        try:
            got = await asyncio.to_thread(self._acquire_blocking)
        except Exception as exc:  # noqa: BLE001 - a database outage means "not leader", not a crash
            log.warning("could not reach the database to claim leadership: %s", exc)
            self._drop()
            return False
        if got:
            self._leader = True
            self._lost_event().clear()
            log.info("this daemon (%s) now leads %s", self.identity, self.name)
        return got

    async def check(self) -> bool:
        """Still leader? A failed round trip means the session (and the lock) is gone."""
        if not self.shared or not self._leader:
            return self._leader
        try:
            await asyncio.to_thread(self._ping_blocking)
            return True
        except Exception as exc:  # noqa: BLE001 - any failure means the session may be gone
            log.warning("leadership of %s lost: %s", self.name, exc)
            self._lose()
            return False

    async def release(self) -> None:
        """Give leadership up (at shutdown, or before stopping the workers on purpose)."""
        if not self.shared:
            self._leader = False
            return
        await asyncio.to_thread(self._release_blocking)
        if self._leader:
            log.info("this daemon (%s) released %s", self.identity, self.name)
        self._leader = False

    async def wait_lost(self) -> None:
        """Return once leadership held by this daemon has been lost (never on SQLite)."""
        await self._lost_event().wait()

    async def holder(self) -> str | None:
        """The identity of the daemon that leads now (None when nobody does)."""
        if not self.shared:
            return self.identity if self._leader else None
        return await asyncio.to_thread(self._holder_blocking)

    async def run(
        self,
        on_gain: Callable[[], Awaitable[None]],
        on_loss: Callable[[], Awaitable[None]],
        stop: asyncio.Event,
    ) -> None:
        """Follow leadership until ``stop`` is set: claim it when free, watch it while held,
        and hand the workers over through the callbacks. Releases it on the way out."""
        try:
            while not stop.is_set():
                if self._leader:
                    if not await self.check():
                        await on_loss()
                elif await self.try_acquire():
                    await on_gain()
                try:
                    await asyncio.wait_for(stop.wait(), self.check_seconds)
                except TimeoutError:
                    pass
        finally:
            was_leader = self._leader
            await self.release()
            if was_leader:
                await on_loss()

    # ------------------------------------------------------------------ blocking parts

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        idle, interval, count = _SERVER_KEEPALIVE
        conn = psycopg.connect(
            _libpq_conninfo(self.url),
            autocommit=True,
            connect_timeout=5,
            application_name=f"costrecond {self.identity}"[:63],
            keepalives=1,
            keepalives_idle=idle,
            keepalives_interval=interval,
            keepalives_count=count,
            tcp_user_timeout=_CLIENT_USER_TIMEOUT_MS,
        )
        # The server's side of the same promise (ignored on a Unix socket, where the peer is on
        # the same host and its death closes the socket at once).
        conn.execute(f"SET tcp_keepalives_idle = {idle}")
        conn.execute(f"SET tcp_keepalives_interval = {interval}")
        conn.execute(f"SET tcp_keepalives_count = {count}")
        return conn

    def _acquire_blocking(self) -> bool:
        with self._mutex:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
            if not (row and row[0]):
                return False
            try:
                self.epoch = self._bump_epoch(self._conn)
            except Exception:
                # A leader without a fencing token must not run: give the lock back.
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
                raise
            return True

    @property
    def epoch_key(self) -> str:
        return f"leader_epoch:{self.name}"[:64]

    def _bump_epoch(self, conn: psycopg.Connection[Any]) -> int:
        # Under the writers' lock: once the bump commits, no fenced write of the previous leader
        # can commit after it (each reads the epoch inside its own locked transaction).
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
            return self._bump_epoch_locked(conn)

    def _bump_epoch_locked(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            "INSERT INTO sync_state (key, value, updated_at) VALUES (%s, '1', now())"
            " ON CONFLICT (key) DO UPDATE"
            " SET value = (CAST(sync_state.value AS BIGINT) + 1)::text, updated_at = now()"
            " RETURNING value",
            (self.epoch_key,),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def _ping_blocking(self) -> None:
        with self._mutex:
            if self._conn is None or self._conn.closed:
                raise ConnectionError("the leadership connection is closed")
            # Session advisory locks end only with the session or an explicit unlock, so a live
            # session proves the lock is still ours.
            self._conn.execute("SELECT 1")

    def _release_blocking(self) -> None:
        with self._mutex:
            conn, self._conn = self._conn, None
            if conn is None or conn.closed:
                return
            try:
                if self._leader:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
            except Exception:  # noqa: BLE001 - closing the session frees the lock anyway
                log.debug("unlock before close failed", exc_info=True)
            finally:
                conn.close()

    def _holder_blocking(self) -> str | None:
        import psycopg

        # pg_locks shows a bigint advisory key as classid (high 32 bits) and objid (low 32 bits).
        unsigned = self._key & 0xFFFFFFFFFFFFFFFF
        high, low = unsigned >> 32, unsigned & 0xFFFFFFFF
        with psycopg.connect(_libpq_conninfo(self.url), autocommit=True, connect_timeout=5) as c:
            row = c.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
                " AND l.classid = %s::oid AND l.objid = %s::oid AND l.database = ("
                "  SELECT oid FROM pg_database WHERE datname = current_database())",
                (high, low),
            ).fetchone()
        if row is None:
            return None
        return row[0].removeprefix("costrecond ")

    # ------------------------------------------------------------------ state

    def _lost_event(self) -> asyncio.Event:
        if self._lost is None:
            self._lost = asyncio.Event()
        return self._lost

    def _lose(self) -> None:
        self._leader = False
        self._drop()
        self._lost_event().set()

    def _drop(self) -> None:
        with self._mutex:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already broken
                pass


class StaleLeader(Conflict):
    """A write of a daemon that no longer leads, refused because a newer leader exists."""


class FencedStore:
    """The store as the PSA workers see it: every write first checks that this daemon's epoch is
    still the newest, so a leader that lost its session without noticing yet (up to one check
    interval) cannot journal a step as ``sending`` after the next leader has started. Reads pass
    through. On SQLite there is one daemon and nothing to fence."""

    def __init__(self, store: Any, leadership: Leadership) -> None:
        self._store = store
        self._leadership = leadership
        self.url = store.url
        self.bus = store.bus

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        lead = self._leadership
        if not lead.shared:
            return await self._store.write(fn, *args)

        def fenced(conn: Connection, *inner: Any) -> T:
            current = conn.execute(
                select(SyncState.value).where(SyncState.key == lead.epoch_key)
            ).scalar()
            if lead.epoch is None or current is None or int(current) != lead.epoch:
                raise StaleLeader(
                    "stale_leader",
                    f"This daemon no longer leads (epoch {lead.epoch}, newest {current}); "
                    "the current leader finishes the push.",
                )
            return fn(conn, *inner)

        return await self._store.write(fenced, *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._store.read(fn, *args)
