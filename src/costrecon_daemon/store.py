"""Database access for the daemon: one writer thread, pooled readers, migrations at start.

All writes go through :meth:`Store.write`, which runs a function on the single writer thread
inside one write transaction and wakes event listeners after commit. Reads run on worker threads
with their own connections. On SQLite the write transaction is ``BEGIN IMMEDIATE`` and WAL lets
readers read while the writer commits; on PostgreSQL it starts with a transaction-scoped advisory
lock, so the single-writer rule holds across every daemon sharing the database
(:func:`costrecon_daemon.db.serialize_writers`), and readers get a REPEATABLE READ snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import create_engine, event, func, inspect, select, text
from sqlalchemy.engine import Connection, Engine

from .db import lock_key, make_engine
from .events import EventBus

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

log = logging.getLogger(__name__)
T = TypeVar("T")
MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = lock_key("migrate")


# Alembic (and the Mako and Pygments it brings) is imported only when the schema is not at head:
# a daemon, a `costrecond status` or a `costrecon demo` starting on a current database reads the
# version row and the migration files' own revision lines instead (a fifth of a start's imports).


def alembic_config(url: str) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


_REVISION = re.compile(r"^revision\s*(?::[^=]*)?=\s*[\"']([^\"']+)[\"']\s*$", re.M)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(None|[\"']([^\"']+)[\"'])\s*$", re.M)


@cache
def head_revision() -> str:
    """The one revision no migration builds on, read from the files' ``revision`` and
    ``down_revision`` lines; Alembic's own answer when a file says it some other way (a tuple
    of parents, a branch) or the files do not make exactly one chain."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text()
        rev, down = _REVISION.findall(source), _DOWN.findall(source)
        if len(rev) != 1 or len(down) != 1 or "branch_labels = (" in source:
            return _alembic_head()
        revisions.add(rev[0])
        if down[0][0] != "None":
            parents.add(down[0][1])
    heads = revisions - parents
    if len(heads) != 1 or not parents <= revisions or len(parents) != len(revisions) - 1:
        return _alembic_head()
    return heads.pop()


def _alembic_head() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return _current_revision(conn)


def _current_revision(conn: Connection) -> str | None:
    """The database's revision, as Alembic's ``get_current_revision`` reads it (its version
    table, one row; ``None`` on an empty database), without importing Alembic."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    rows: list[str] = list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    if len(rows) > 1:  # several heads: Alembic's own error says what to do
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(conn).get_current_revision()
    return rows[0] if rows else None


def sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url[len("sqlite:///") :])
    return None


def migrate(url: str) -> str | None:
    """Bring the schema to head. An existing SQLite file is copied first (``.bak-<rev>``).

    Returns the backup path when one was made. Runs with the plain driver transaction mode so
    Alembic's DDL and version table behave as documented. The backup copy is SQLite-only: a
    PostgreSQL database is backed up by its owner with ``pg_dump`` (README, "Team install"), and
    its migration is transactional, so a failed upgrade leaves the previous schema untouched.
    """
    if url.startswith("postgresql"):
        _migrate_postgresql(url)
        return None
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    if path is not None:

        @event.listens_for(engine, "connect")
        def _fk(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")

    backup = None
    try:
        current = current_revision(engine)
        head = head_revision()
        if current == head:
            return None
        if path is not None and path.exists() and current is not None:
            backup = path.with_name(f"{path.name}.bak-{current}")
            _backup_sqlite(path, backup)
            log.info("database backed up to %s before migrating %s -> %s", backup, current, head)
        log.info("migrating database %s -> %s", current or "empty", head)
        from alembic import command

        cfg = alembic_config(url)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()
    return str(backup) if backup else None


def _migrate_postgresql(url: str) -> None:
    """One transaction: lock, read the revision, upgrade. Two daemons starting together on one
    database would otherwise both see "empty" and both try to create the schema; the advisory lock
    makes the second wait, then find the schema at head."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
            current = _current_revision(conn)
            head = head_revision()
            if current == head:
                return
            log.info("migrating database %s -> %s", current or "empty", head)
            from alembic import command

            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()


def _backup_sqlite(src: Path, dst: Path) -> None:
    """Consistent copy through SQLite's backup API (safe with WAL, unlike a file copy)."""
    tmp = dst.with_name(dst.name + ".tmp")
    with sqlite3.connect(src) as s, sqlite3.connect(tmp) as d:
        s.backup(d)
    shutil.move(tmp, dst)


class Store:
    def __init__(self, url: str, bus: EventBus | None = None):
        self.url = url
        self.writer_engine: Engine = make_engine(url)
        self.reader_engine: Engine = make_engine(url, writer=False)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-writer")
        self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="db-reader")
        self.bus = bus

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._writer, self._run_write, fn, args)
        if self.bus is not None:
            self.bus.notify()
        return result

    def _run_write(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self.writer_engine.begin() as conn:
            return fn(conn, *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, fn, args)

    def _run_read(self, fn: Callable[[Connection], T], args: tuple[Any, ...]) -> T:
        with self.reader_engine.connect() as conn:
            return fn(conn, *args)

    def write_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """For CLI tools and tests running without the daemon loop."""
        return self._writer.submit(self._run_write, fn, args).result()

    def read_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return self._run_read(fn, args)

    def close(self) -> None:
        """Finish queued writes, checkpoint the WAL, release files (shutdown order §4.3)."""
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self.reader_engine.dispose()
        if self.url.startswith("sqlite"):
            # Outside any transaction (a raw autocommit connection): a checkpoint cannot run in one.
            raw = self.writer_engine.raw_connection()
            try:
                assert raw.driver_connection is not None  # a checked-out connection has one
                raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except Exception:  # noqa: BLE001 - best effort at shutdown
                log.warning("WAL checkpoint at shutdown failed", exc_info=True)
            finally:
                raw.close()
        self.writer_engine.dispose()
