"""One inbox, several daemons: each file is imported by exactly one of them (issue 17 item 5).

Daemons on different hosts may watch the same shared folder. Before a daemon starts on a file it
claims the file's SHA-256 in the database: a session advisory lock on a connection of its own,
held through the import transaction *and* the move out of the inbox, and freed by closing that
connection (or by the server when the daemon dies: a crash never leaves a stale claim). A daemon
that finds the claim taken leaves the file alone and looks again a little later, by which time
the holder has moved it out of the inbox and there is nothing left to do.

Claiming by content rather than by path: the share may be mounted at different paths on each
host, and two copies of one file under two names must meet the same claim (the second then
becomes the usual "duplicate" record, as with one daemon).

On SQLite one daemon owns the database, so there is nothing to claim.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..db import lock_key
from ..leadership import _libpq_conninfo
from .importer import sha256_of

log = logging.getLogger(__name__)

LOOK_AGAIN_SECONDS = 2.0  # the holder is importing; by then it has usually moved the file


def claim_key(sha256: str) -> int:
    return lock_key(f"inbox:{sha256}")


def _claim(url: str, sha256: str) -> Any:  # -> psycopg.Connection | None
    import psycopg

    conn = psycopg.connect(
        _libpq_conninfo(url),
        autocommit=True,
        connect_timeout=10,
        application_name="costrecond inbox claim",
    )
    try:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (claim_key(sha256),)).fetchone()
    except Exception:
        conn.close()
        raise
    if row and row[0]:
        return conn
    conn.close()
    return None


async def exclusive(
    store: Any,
    path: str,
    take: Callable[[str], Awaitable[None]],
    later: Callable[[str, float], None],
) -> None:
    """Run ``take(path)`` holding the database claim on the file's content; if another daemon
    holds it, call ``later(path, seconds)`` instead (the watcher looks at the file again)."""
    if not str(store.url).startswith("postgresql"):
        await take(path)
        return
    try:
        sha = await asyncio.to_thread(sha256_of, Path(path))
    except FileNotFoundError:
        later(path, 0.0)  # moved away (by the daemon that took it): the watcher forgets it
        return
    conn = await asyncio.to_thread(_claim, store.url, sha)
    if conn is None:
        log.info("%s is being imported by another daemon; looking again later", Path(path).name)
        later(path, LOOK_AGAIN_SECONDS)
        return
    try:
        await take(path)
    finally:
        await asyncio.to_thread(conn.close)  # ends the session: the claim is free again
