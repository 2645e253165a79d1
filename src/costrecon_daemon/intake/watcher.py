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
import hashlib
import json
import logging
import os
import stat as stat_mod
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from .. import activity, events
from ..config import Config
from ..costs.table import CostTable
from ..db import PriceImport
from ..jsonable import iso
from ..store import Store
from ..vendors.profiles import profile_from_config
from . import claims
from .importer import (
    Options,
    Prepared,
    commit_import,
    drop_unfinished,
    file_owner,
    ignored_name,
    stream_import,
)
from .placement import place_file, set_final_path, unique_path
from .queries import CHANGED_AFTER_IMPORT
from .rematch import MatcherCache
from .retention import prune
from .search import SearchIndexer

log = logging.getLogger(__name__)
ZIP_SUFFIXES = (".xlsx", ".xlsm", ".ods", ".zip")
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # an Excel 97-2003 (.xls) workbook
# How long after an import a file of the same name, or a change to the imported file, is reported
# as "changed after import" (issue 13 #12: a writer that closes and reopens between appends).
CHANGED_WINDOW = 15 * 60.0


# ---------------------------------------------------------------------------- what may be read


def link_refusal(name: str, st: os.stat_result) -> str | None:
    """Why a directory entry (``lstat``) is not read at all, or None. A symlink or a hard link can
    point at a file outside the inbox (another user's, or root's, 0600 file): reading it would
    import, and echo into failed/ and the activity log, what the dropper could not read themselves
    (issue 13 #3). The sentence never includes anything from the file."""
    if stat_mod.S_ISLNK(st.st_mode):
        return (
            f"{name} is a symbolic link; costrecon imports only regular files copied into the "
            "inbox and did not read it. Copy the price file itself into the inbox."
        )
    if stat_mod.S_ISREG(st.st_mode) and st.st_nlink > 1:
        return (
            f"{name} is a hard link to a file that also lives elsewhere; costrecon imports only "
            "files copied into the inbox and did not read it. Copy the price file itself."
        )
    return None


def open_regular(path: Path, expected: os.stat_result) -> int:
    """An fd for ``path`` that is the very file seen by ``lstat`` (no symlink followed, same inode,
    still one link): the checks and the read are about the same file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    st = os.fstat(fd)
    if (
        (st.st_dev, st.st_ino) != (expected.st_dev, expected.st_ino)
        or not stat_mod.S_ISREG(st.st_mode)
        or st.st_nlink > 1
    ):
        os.close(fd)
        raise PermissionError(f"{path.name} was replaced while it was checked")
    return fd


def sha256_of_fd(fd: int) -> str:
    digest = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------- readiness checks


def ends_complete(path: Path, size: int) -> bool:
    """Cheap "the copy is complete" signs: an xlsx/zip has its central directory (at the end); an
    .xls is whole sectors (the header names their size); a text file ends with a newline (also in
    UTF-16). Empty files are never complete."""
    if size == 0:
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
            if path.suffix.lower() in ZIP_SUFFIXES or head == b"PK\x03\x04":
                return zipfile.is_zipfile(fh)
            if head == OLE_MAGIC[:4]:
                header = head + fh.read(28)
                shift = int.from_bytes(header[30:32], "little") if len(header) == 32 else 0
                return header[:8] == OLE_MAGIC and shift in (9, 12) and size % (1 << shift) == 0
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

    def __init__(
        self,
        cfg: Config,
        store: Store,
        cache: MatcherCache,
        table: CostTable,
        *,
        search: SearchIndexer | None = None,
    ):
        self.store = store
        # The search tables of vendor rows (keys and names), filled after each import (issue 15).
        self.search = search or SearchIndexer(store)
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
        # Written before a file is read, removed when its outcome is placed: found at start, it
        # names the file that killed the daemon mid-import (issue 13 #1).
        self.in_progress_marker = cfg.state_dir / "intake-in-progress.json"
        # inbox name → (import id, where it went, its size, monotonic time) of recent imports
        self._recent: dict[str, tuple[int, str, int, float]] = {}
        self.keep_imports = max(1, cfg.inbox.keep_imports)
        self._pruning: asyncio.Task[Any] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        for d in (self.inbox, self.processed, self.failed):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._inbox_real = os.path.realpath(self.inbox)
        dropped = await asyncio.to_thread(drop_unfinished, self.store)
        if dropped:
            log.warning("took back the rows of %d import(s) cut short by a stop", dropped)
        await self._quarantine_interrupted()
        self.scan()
        self._tasks = [
            asyncio.create_task(coro, name=f"intake.{name}")
            for name, coro in (
                ("watch", self._watch()),
                ("rescan", self._rescan_loop()),
                ("settle", self._settle_loop()),
                ("worker", self._worker()),
                ("search", self.search.run()),
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
                # A clean stop is not the file's fault: the next start imports it again.
                self._clear_marker()
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
            st = os.lstat(path)  # never follow a link to decide what the file is
        except OSError:
            return None
        if not (stat_mod.S_ISREG(st.st_mode) or stat_mod.S_ISLNK(st.st_mode)):
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
            await self._check_recent()

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
                st = os.lstat(path)
            except FileNotFoundError:
                del self._tracked[path]  # gone (moved away by a person): nothing to do
                continue
            except OSError:
                continue
            if (st.st_size, st.st_mtime_ns) != (c.size, c.mtime_ns):
                c.size, c.mtime_ns, c.changed_at = st.st_size, st.st_mtime_ns, now
                continue
            if now - c.changed_at >= self.stable:
                if link_refusal(path, st) is not None:
                    # Refused without being opened: the readiness checks would read its target.
                    c.queued = True
                    self._queue.put_nowait(path)
                    continue
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
                self._clear_marker()  # the daemon lived: not a file that kills it
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
                st = os.lstat(path)
            except FileNotFoundError:
                self._done(path_text)
                return
            refusal = link_refusal(path.name, st)
            if refusal is not None:
                await self._refuse(path, st, refusal)
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
            try:
                fd = open_regular(path, st)
            except FileNotFoundError:
                self._done(path_text)
                return
            except OSError as exc:  # replaced by a link meanwhile (ELOOP), or unreadable
                log.info("%s cannot be opened safely (%s); looking again later", path.name, exc)
                self._retry(path_text, max(1.0, self.stable))
                return
            try:
                sha = await asyncio.to_thread(sha256_of_fd, fd)
                head = os.pread(fd, 4096, 0)
            finally:
                os.close(fd)
            await self._report_reappeared(path.name, head)
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
            if earlier is not None:  # the same content was imported before: not read again
                prep = Prepared(
                    path=path,
                    name=path.name,
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    sha256=sha,
                    actor=file_owner(st),
                )
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
                await self._finish(path, path_text, st, record)
                return
            matcher = await self.cache.matcher()
            await asyncio.to_thread(self._write_marker, path, st, sha)
            verdict: dict[str, Any] = {}

            def before_commit(prep: Prepared) -> bool:
                verdict["go"] = self._verdict(path, st, c, prep)
                return verdict["go"] is None

            def final_for(ok: bool) -> Path:
                return (
                    unique_path(self._processed_today(), path.name, with_report=False)
                    if ok
                    else unique_path(self.failed, path.name, with_report=True)
                )

            try:
                streamed = await asyncio.to_thread(
                    stream_import,
                    store,
                    path,
                    self.options,
                    matcher,
                    final_for=final_for,
                    table=self.table,
                    sha=sha,
                    st=st,
                    before_commit=before_commit,
                )
            except BaseException:
                self._clear_marker()
                raise
            if streamed is None:
                self._clear_marker()
                self._after_veto(path_text, c, verdict.get("go"))
                return
            await self._finish(path, path_text, st, streamed)

    async def _finish(
        self, path: Path, path_text: str, st: os.stat_result, record: dict[str, Any]
    ) -> None:
        self.cache.changed()
        self.search.kick()
        # Only now, with the outcome committed, does the file leave the inbox.
        moved = await self._place(path, Path(record["final_path"]), record)
        self._clear_marker()
        self._done(path_text)
        if record["status"] == "imported":
            self._recent[path.name] = (record["id"], str(moved), st.st_size, time.monotonic())
            self._schedule_prune()
        log.info("%s: %s (%s)", path.name, record["status"], record["message"])

    def _schedule_prune(self) -> None:
        if self._pruning is None or self._pruning.done():
            self._pruning = asyncio.create_task(self._prune(), name="intake.prune")

    async def _prune(self) -> None:
        try:
            if await prune(self.store, self.keep_imports):
                self.cache.changed()
        except Exception:  # noqa: BLE001 - retention is housekeeping; the next import retries
            log.warning("pruning old imports failed; the next import tries again", exc_info=True)

    def _verdict(
        self, path: Path, st: os.stat_result, c: _Candidate | None, prep: Prepared
    ) -> tuple[str, os.stat_result | None] | None:
        """Whether a read file may be recorded (None), or why not: it changed (or was swapped
        for a link) while it was read, or it is young and unreadable (a copy that paused)."""
        try:
            after = os.lstat(path)
        except OSError:
            return ("gone", None)
        if (after.st_size, after.st_mtime_ns, after.st_ino, after.st_mode) != (
            st.st_size,
            st.st_mtime_ns,
            st.st_ino,
            st.st_mode,
        ):
            return ("changed", after)
        if (
            prep.failure is not None
            and c is not None
            and c.parse_retries == 0
            and time.time() - after.st_mtime < self.grace
        ):
            return ("young", after)
        return None

    def _after_veto(self, path_text: str, c: _Candidate | None, why: Any) -> None:
        kind, after = why if why else ("gone", None)
        if kind == "gone" or after is None:
            self._done(path_text)
        elif kind == "changed":
            log.info("%s changed while it was read; waiting for it to settle", path_text)
            if c is not None:
                c.size, c.mtime_ns, c.changed_at, c.queued = (
                    after.st_size,
                    after.st_mtime_ns,
                    time.monotonic(),
                    False,
                )
        else:  # young and unreadable: maybe a copy that paused; look once more after the grace
            if c is not None:
                c.parse_retries += 1
            self._retry(path_text, self.grace)

    # ------------------------------------------------------------------ hostile files

    async def _refuse(self, path: Path, st: os.stat_result, reason: str) -> None:
        """Record a file that is not read at all and move the entry itself (the link, never its
        target) to failed/ with the reason. The actor is the entry's owner."""
        prep = Prepared(
            path=path,
            name=path.name,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            sha256=hashlib.sha256(b"").hexdigest(),  # nothing was read
            actor=file_owner(st),
            failure=reason,
        )
        final = unique_path(self.failed, path.name, with_report=True)
        record = await self.store.write(
            lambda conn: commit_import(conn, prep, final_path=str(final))
        )
        await self._place(path, Path(record["final_path"]), record)
        log.warning("%s", reason)

    def _write_marker(self, path: Path, st: os.stat_result, sha: str) -> None:
        tmp = self.in_progress_marker.with_suffix(".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "path": str(path),
            "name": path.name,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "ino": st.st_ino,
            "sha256": sha,
            "actor": file_owner(st),
            "started": dt.datetime.now(dt.UTC).isoformat(),
        }
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(body, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.in_progress_marker)

    def _clear_marker(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.in_progress_marker.unlink()

    async def _quarantine_interrupted(self) -> None:
        """A file that was being read when the daemon died (out of memory, killed) is set aside in
        failed/ with the reason, never retried blindly: under ``Restart=on-failure`` it would
        kill the daemon again, forever."""
        try:
            body = json.loads(self.in_progress_marker.read_text(encoding="utf-8"))
            path = Path(body["path"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("ignoring a damaged %s", self.in_progress_marker)
            self._clear_marker()
            return
        try:
            st = os.lstat(path)
        except OSError:
            st = None
        same = st is not None and (st.st_size, st.st_mtime_ns, st.st_ino) == (
            body.get("size"),
            body.get("mtime_ns"),
            body.get("ino"),
        )
        if not same or await self.store.read(_imported_with, body.get("sha256", "")) is not None:
            self._clear_marker()  # gone, replaced, or committed before the stop: nothing to fear
            return
        assert st is not None
        reason = (
            f"costrecond stopped while importing {path.name} (it may have run out of memory or "
            "been killed), so the file was set aside instead of being tried again; check the "
            "daemon log, and drop the file again once the cause is fixed."
        )
        prep = Prepared(
            path=path,
            name=path.name,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            sha256=str(body.get("sha256") or hashlib.sha256(b"").hexdigest()),
            actor=str(body.get("actor") or file_owner(st)),
            failure=reason,
        )
        final = unique_path(self.failed, path.name, with_report=True)
        record = await self.store.write(
            lambda conn: commit_import(conn, prep, final_path=str(final))
        )
        await self._place(path, Path(record["final_path"]), record)
        self._clear_marker()
        log.warning("%s", reason)

    # ------------------------------------------------------------------ changed after import

    async def _report_reappeared(self, name: str, head: bytes) -> None:
        """A file of the same name soon after an import that does not start like it (no header
        line: a continuation): the writer went on appending after the import took the first part
        (it reopened the name once the file was moved). A whole new copy starts the same way."""
        recent = self._recent.pop(name, None)
        if recent is None or time.monotonic() - recent[3] >= CHANGED_WINDOW:
            return
        try:
            with open(recent[1], "rb") as fh:
                before = fh.read(4096)
        except OSError:
            return
        if head.split(b"\n", 1)[0] != before.split(b"\n", 1)[0]:
            await self._changed_after_import(
                name, recent[0], "more data arrived under the same name after it was imported"
            )

    async def _check_recent(self) -> None:
        now = time.monotonic()
        for name, (import_id, where, size, at) in list(self._recent.items()):
            if now - at > CHANGED_WINDOW:
                del self._recent[name]
                continue
            try:
                grown = os.lstat(where).st_size
            except OSError:
                continue
            if grown != size:
                del self._recent[name]
                await self._changed_after_import(
                    name,
                    import_id,
                    f"the imported file grew from {size:,} to {grown:,} bytes after it was "
                    "imported",
                )

    async def _changed_after_import(self, name: str, import_id: int, why: str) -> None:
        text = (
            f"{CHANGED_AFTER_IMPORT}: {why}, so import #{import_id} may hold only part of it; "
            "check the costs and drop the complete file again."
        )
        await self.store.write(_mark_changed, import_id, name, text)
        log.warning("%s: %s", name, text)

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
                    "reason": "already imported before the daemon stopped; moved, not imported "
                    "again",
                },
            )
        )
        log.info("%s was already imported (#%d); moved to %s", path.name, earlier.id, moved)


def _mark_changed(conn: Connection, import_id: int, name: str, text: str) -> None:
    row = conn.execute(select(PriceImport).where(PriceImport.id == import_id)).first()
    if row is None:
        return
    conn.execute(
        update(PriceImport)
        .where(PriceImport.id == import_id)
        .values(message=f"{text} (was: {row.message})")
    )
    activity.append(
        conn,
        actor=row.actor or "costrecond",
        action="import.changed",
        subject=name,
        details={"import_id": import_id, "reason": text},
    )
    events.emit(conn, "imports", {"id": import_id, "status": row.status, "file_name": name})


def _imported_with(conn: Connection, sha: str) -> Any:
    return conn.execute(
        select(PriceImport)
        .where(PriceImport.sha256 == sha, PriceImport.status == "imported")
        .order_by(PriceImport.id)
        .limit(1)
    ).first()
