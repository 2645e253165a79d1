"""The watched folder: vendor price files in, vendor costs out (DESIGN.md §3, issue 4).

"The watched folder never loses a file":

- Events (watchfiles, non-recursive, temporary names filtered out) are only *hints*. A full scan
  at start-up and a periodic rescan find what events missed (files dropped while the daemon was
  down, inotify overflow, network mounts). A ``deleted`` event never causes anything.
- A file is taken only when its size and mtime have not changed for ``stable_seconds``, no process
  has it open for writing (Linux ``/proc``, where visible), an xlsx/zip passes
  ``zipfile.is_zipfile`` and a text file ends with a newline. A file that never passes these
  checks is taken after a grace period anyway, so it fails visibly instead of waiting forever.
  After parsing, the file is stat-ed again: if it changed meanwhile, the result is thrown away.
- One worker takes files from a queue, one at a time: a burst of 500 files never starts 500
  parsers. Hashing, parsing and matching run in a thread; the database write goes through
  :meth:`Store.write` (the single writer).
- Order, for crash safety: decide the outcome; commit the ``PriceImport`` record (with the path the
  file will get), all ``VendorCost`` rows and the activity entry in one transaction; then move the
  file to ``processed/<YYYY-MM-DD>/`` or ``failed/`` (plus ``<name>.errors.txt``). A file still in
  the inbox whose SHA-256 is already recorded as imported is only moved, never imported twice.
  Names that clash get a `` (2)`` suffix; nothing is overwritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import stat as stat_mod
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from .. import activity
from ..config import Config
from ..costs.table import CostTable
from ..db import PriceImport
from ..jsonable import iso
from ..store import Store
from ..vendors.profiles import profile_from_config
from . import claims
from .importer import Options, Prepared, commit_import, file_owner, ignored_name, prepare, sha256_of
from .placement import place_file, set_final_path, unique_path
from .rematch import MatcherCache

log = logging.getLogger(__name__)
ZIP_SUFFIXES = (".xlsx", ".xlsm", ".zip")


# ---------------------------------------------------------------------------- readiness checks


def ends_complete(path: Path, size: int) -> bool:
    """Cheap "the copy is complete" signs: an xlsx/zip has its central directory (at the end); a
    text file ends with a newline (also in UTF-16). Empty files are never complete."""
    if size == 0:
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
            if path.suffix.lower() in ZIP_SUFFIXES or head == b"PK\x03\x04":
                return zipfile.is_zipfile(fh)
            fh.seek(max(0, size - 2))
            tail = fh.read(2)
    except OSError:
        return False
    # Not a bare "\r": a copy cut between the \r and \n of a CRLF line is not complete.
    return tail.endswith(b"\n") or tail in (b"\n\x00", b"\x00\n")


def open_for_writing(paths: set[str]) -> set[str]:
    """Which of ``paths`` some process has open for writing (Linux; only processes we may see).
    The copy in progress that the stability check alone cannot catch: a writer that pauses."""
    found: set[str] = set()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target not in paths:
                continue
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as fh:
                    for line in fh:
                        if line.startswith("flags:"):
                            if int(line.split()[1], 8) & (os.O_WRONLY | os.O_RDWR):
                                found.add(target)
                            break
            except (OSError, ValueError):
                continue
    return found


@dataclass(slots=True)
class _Candidate:
    size: int
    mtime_ns: int
    changed_at: float  # monotonic time the size/mtime last changed (or first seen)
    not_before: float = 0.0
    queued: bool = False
    parse_retries: int = 0


class Inbox:
    """The inbox watcher and its import worker."""

    def __init__(self, cfg: Config, store: Store, cache: MatcherCache, table: CostTable):
        self.store = store
        self.cache = cache
        self.table = table
        self.inbox = cfg.inbox_dir
        self.processed = cfg.processed_dir
        self.failed = cfg.failed_dir
        self.stable = max(0.0, cfg.inbox.stable_seconds)
        self.rescan = max(0.5, cfg.inbox.rescan_seconds)
        self.force_polling = cfg.inbox.force_polling
        # Files that never look complete are taken after this long anyway (and fail visibly).
        self.grace = max(2.0, 10 * self.stable)
        self.open_grace = max(60.0, 30 * self.stable)
        # Profiles were validated when the config was loaded; errors here cannot happen.
        self.options = Options(
            profiles={
                name: profile_from_config(name, table) for name, table in cfg.profiles.items()
            },
            default_profile=cfg.inbox.default_profile or None,
            default_currency=cfg.inbox.default_currency,
        )
        self._inbox_text = str(self.inbox)
        self._inbox_real = os.path.realpath(self.inbox)
        self._tracked: dict[str, _Candidate] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self._busy: asyncio.Task[Any] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        for d in (self.inbox, self.processed, self.failed):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._inbox_real = os.path.realpath(self.inbox)
        self.scan()
        self._tasks = [
            asyncio.create_task(coro, name=f"intake.{name}")
            for name, coro in (
                ("watch", self._watch()),
                ("rescan", self._rescan_loop()),
                ("settle", self._settle_loop()),
                ("worker", self._worker()),
            )
        ]
        try:
            await asyncio.gather(*self._tasks)
        finally:
            for t in self._tasks:
                t.cancel()

    async def stop(self) -> None:
        """Take no new file; let the one being imported finish (its move can also wait for the
        next start: the recorded SHA-256 makes that safe)."""
        self._stopping = True
        for t in self._tasks:
            if t.get_name() != "intake.worker":
                t.cancel()
        if self._busy is not None and not self._busy.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._busy), 20)
            except asyncio.CancelledError:
                pass
            except TimeoutError:
                log.warning(
                    "the import in progress did not finish within 20 s of shutdown; "
                    "the next start finishes it (its file is still in the inbox)"
                )
            except Exception:  # noqa: BLE001 - the worker logs import failures itself
                log.warning("the import in progress failed during shutdown", exc_info=True)
        for t in self._tasks:
            t.cancel()

    def status_json(self) -> dict[str, Any]:
        """The inbox part of GET /v1/status."""
        return {
            "path": str(self.inbox),
            "pending": len(self._tracked),
            "processed": str(self.processed),
            "failed": str(self.failed),
        }

    # ------------------------------------------------------------------ finding files

    def scan(self) -> int:
        """Track every file in the inbox that is not tracked yet (start-up and rescans)."""
        found = 0
        try:
            entries = list(os.scandir(self.inbox))
        except OSError as exc:
            log.warning("cannot list the inbox %s: %s", self.inbox, exc)
            with contextlib.suppress(OSError):
                self.inbox.mkdir(parents=True, exist_ok=True, mode=0o700)
            return 0
        for entry in entries:
            if entry.path not in self._tracked and self._track(entry.path):
                found += 1
        return found

    def _track(self, path: str) -> str | None:
        name = os.path.basename(path)
        if ignored_name(name):
            return None
        if os.path.realpath(os.path.dirname(path)) != self._inbox_real:
            return None  # only files directly in the inbox (processed/ may live inside it)
        path = os.path.join(self._inbox_text, name)
        if path in self._tracked:
            return path
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not stat_mod.S_ISREG(st.st_mode):
            return None  # directories, sockets, fifos: not price files
        self._tracked[path] = _Candidate(st.st_size, st.st_mtime_ns, time.monotonic())
        return path

    async def _watch(self) -> None:
        from watchfiles import Change, awatch
        from watchfiles.filters import BaseFilter

        class InboxFilter(BaseFilter):
            def __call__(self, change: Change, path: str) -> bool:
                return not ignored_name(os.path.basename(path))

        while not self._stopping:
            try:
                async for changes in awatch(
                    self.inbox,
                    watch_filter=InboxFilter(),
                    recursive=False,
                    force_polling=True if self.force_polling else None,
                    debounce=1600,
                    step=50,
                    poll_delay_ms=300,
                ):
                    for change, path in changes:
                        # A deleted event is only a hint and never acted on: a network mount that
                        # drops for a moment reports every file deleted (notes §5).
                        if change != Change.deleted and (key := self._track(path)) is not None:
                            c = self._tracked[key]
                            if not c.queued:
                                c.changed_at = (
                                    time.monotonic()
                                )  # it just changed: restart the clock
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - events are hints; the rescan keeps working
                log.warning(
                    "watching %s failed; relying on rescans until it works again",
                    self.inbox,
                    exc_info=True,
                )
                await asyncio.sleep(self.rescan)

    async def _rescan_loop(self) -> None:
        # One early rescan: files dropped between the start-up scan and the watcher's start.
        await asyncio.sleep(min(1.0, self.rescan))
        self.scan()
        while True:
            await asyncio.sleep(self.rescan)
            if self.scan():
                log.debug("rescan found new files in %s", self.inbox)

    async def _settle_loop(self) -> None:
        tick = max(0.05, min(0.25, self.stable / 3))
        while True:
            await asyncio.sleep(tick)
            if self._tracked:
                await self._settle()

    async def _settle(self) -> None:
        now = time.monotonic()
        ready: list[tuple[str, _Candidate]] = []
        for path, c in list(self._tracked.items()):
            if c.queued or now < c.not_before:
                continue
            try:
                st = os.stat(path)
            except FileNotFoundError:
                del self._tracked[path]  # gone (moved away by a person): nothing to do
                continue
            except OSError:
                continue
            if (st.st_size, st.st_mtime_ns) != (c.size, c.mtime_ns):
                c.size, c.mtime_ns, c.changed_at = st.st_size, st.st_mtime_ns, now
                continue
            if now - c.changed_at >= self.stable:
                ready.append((path, c))
        if not ready:
            return
        real = {os.path.realpath(p): p for p, _ in ready}
        writing = {real[r] for r in await asyncio.to_thread(open_for_writing, set(real))}
        recheck = now + min(1.0, max(0.1, self.stable))
        for path, c in ready:
            quiet = now - c.changed_at
            if path in writing and quiet < self.open_grace:
                c.not_before = recheck
                continue
            if (
                not await asyncio.to_thread(ends_complete, Path(path), c.size)
                and quiet < self.grace
            ):
                c.not_before = recheck
                continue
            c.queued = True
            self._queue.put_nowait(path)

    # ------------------------------------------------------------------ the worker

    async def _worker(self) -> None:
        while not self._stopping:
            path = await self._queue.get()
            if self._stopping:
                break
            self._busy = asyncio.ensure_future(
                claims.exclusive(self.store, path, self._take, self._retry)
            )
            try:
                await asyncio.shield(self._busy)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - never lose the file: it stays and is retried
                log.exception("importing %s failed; it stays in the inbox and is retried", path)
                self._retry(path, 30.0)

    def _retry(self, path: str, delay: float) -> None:
        c = self._tracked.get(path)
        if c is not None:
            c.queued = False
            c.not_before = time.monotonic() + delay

    def _done(self, path: str) -> None:
        self._tracked.pop(path, None)

    async def _take(self, path_text: str) -> None:
        store = self.store
        path = Path(path_text)
        c = self._tracked.get(path_text)
        async with self.cache.lock:
            try:
                st = path.stat()
            except FileNotFoundError:
                self._done(path_text)
                return
            if c is not None and (st.st_size, st.st_mtime_ns) != (c.size, c.mtime_ns):
                c.size, c.mtime_ns, c.changed_at, c.queued = (
                    st.st_size,
                    st.st_mtime_ns,
                    time.monotonic(),
                    False,
                )
                return
            sha = await asyncio.to_thread(sha256_of, path)
            earlier = await store.read(_imported_with, sha)
            if (
                earlier is not None
                and earlier.final_path
                and not os.path.exists(earlier.final_path)
                and earlier.file_name == path.name
            ):
                await self._finish_interrupted(path, earlier)
                self._done(path_text)
                return
            if earlier is not None:  # the same content was imported before: no need to read it
                prep = Prepared(
                    path=path,
                    name=path.name,
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    sha256=sha,
                    actor=file_owner(st),
                )
            else:
                prep = await asyncio.to_thread(
                    prepare, path, self.options, await self.cache.matcher(), sha=sha, st=st
                )
            after = path.stat()
            if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                log.info("%s changed while it was read; waiting for it to settle", path.name)
                if c is not None:
                    c.size, c.mtime_ns, c.changed_at, c.queued = (
                        after.st_size,
                        after.st_mtime_ns,
                        time.monotonic(),
                        False,
                    )
                return
            if (
                prep.failure is not None
                and c is not None
                and c.parse_retries == 0
                and time.time() - after.st_mtime < self.grace
            ):
                # Young and unreadable: maybe a copy that paused; look once more after the grace.
                c.parse_retries += 1
                self._retry(path_text, self.grace)
                return
            table = self.table
            if earlier is not None:
                final = unique_path(self._processed_today(), path.name, with_report=False)
                where = f"{earlier.file_name} (import #{earlier.id}, {iso(earlier.received_at)})"
                message = f"Same content as {where}; not imported again."
                dup = {
                    "import_id": earlier.id,
                    "file": earlier.file_name,
                    "profile": earlier.profile,
                    "vendor": earlier.vendor,
                }
                record = await store.write(
                    lambda conn: commit_import(
                        conn,
                        prep,
                        final_path=str(final),
                        status="duplicate",
                        message=message,
                        duplicate_of=dup,
                    )
                )
            else:
                final = (
                    unique_path(self._processed_today(), path.name, with_report=False)
                    if prep.ok
                    else unique_path(self.failed, path.name, with_report=True)
                )
                record = await store.write(
                    lambda conn: commit_import(conn, prep, final_path=str(final), table=table)
                )
            self.cache.changed()
            # Only now, with the outcome committed, does the file leave the inbox.
            await self._place(path, Path(record["final_path"]), record)
            self._done(path_text)
            log.info("%s: %s (%s)", path.name, record["status"], record["message"])

    def _processed_today(self) -> Path:
        return self.processed / dt.date.today().isoformat()

    async def _place(self, path: Path, final: Path, record: Mapping[str, Any]) -> Path:
        moved = await asyncio.to_thread(place_file, path, final, record)
        if moved != final:
            log.warning("%s was taken meanwhile; the file is at %s", final, moved)
            await self.store.write(set_final_path, record["id"], str(moved))
        return moved

    async def _finish_interrupted(self, path: Path, earlier: Any) -> None:
        """The daemon stopped between committing this file and moving it: only move it now."""
        final = Path(earlier.final_path)
        record = {
            "id": earlier.id,
            "status": earlier.status,
            "file_name": earlier.file_name,
            "errors": earlier.errors,
            "received_at": earlier.received_at,
            "sha256": earlier.sha256,
            "profile": earlier.profile,
            "vendor": earlier.vendor,
            "rows_total": earlier.rows_total,
        }
        moved = await self._place(path, final, record)
        await self.store.write(
            lambda c: activity.append(
                c,
                actor=earlier.actor or "costrecond",
                action="import.moved",
                subject=earlier.file_name,
                details={
                    "import_id": earlier.id,
                    "final_path": str(moved),
                    "reason": "already imported before the daemon stopped; moved, not imported again",
                },
            )
        )
        log.info("%s was already imported (#%d); moved to %s", path.name, earlier.id, moved)


def _imported_with(conn: Connection, sha: str) -> Any:
    return conn.execute(
        select(PriceImport)
        .where(PriceImport.sha256 == sha, PriceImport.status == "imported")
        .order_by(PriceImport.id)
        .limit(1)
    ).first()
