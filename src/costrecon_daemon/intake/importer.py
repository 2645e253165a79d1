"""The import transaction: read a price file, match its rows, commit the outcome in one go."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import pwd
import re
import sqlite3
from array import array
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from .. import activity, events
from ..costs.table import CostTable
from ..db import PriceImport, VendorCost, new_id, utcnow
from ..runtime import no_gc
from ..vendors.convert import repeated_rows
from ..vendors.matching import Matcher, MatchResult, split_chunk
from ..vendors.profiles import Profile
from ..vendors.reader_process import loose_json, stored
from ..vendors.readers import (
    FileUnreadable,
    ReadResult,
    RowError,
    VendorRow,
    read_price_file,
    stream_price_file,
)
from . import reading
from .rematch import CHUNK, REFRESH_LIMIT

log = logging.getLogger(__name__)

# Temporary names: uploads in progress and editors' lock files (notes §5).
IGNORED_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", ".swp")
ZIP_SUFFIXES = (".xlsx", ".xlsm", ".zip")
ERRORS_IN_ACTIVITY = 20


def ignored_name(name: str) -> bool:
    lower = name.lower()
    return (
        name.startswith((".", "~$"))
        or lower.endswith(IGNORED_SUFFIXES)
        or lower.endswith(".errors.txt")
    )


# ---------------------------------------------------------------------------- the import itself


@dataclass(slots=True)
class Options:
    profiles: Mapping[str, Profile] = field(default_factory=dict)
    default_profile: str | None = None
    default_currency: str = "USD"


@dataclass(slots=True)
class Prepared:
    """Everything about one file that is decided before the database is touched."""

    path: Path
    name: str
    size: int
    mtime_ns: int
    sha256: str
    actor: str
    result: ReadResult | None = None
    failure: str | None = None  # the file as a whole could not be read
    matches: list[MatchResult] | None = None
    staged: int = 0  # rows already written under a staged import (stream_import), not in result

    @property
    def row_count(self) -> int:
        return (len(self.result.rows) if self.result is not None else 0) + self.staged

    @property
    def ok(self) -> bool:
        return self.result is not None and self.failure is None and not self.result.errors

    def errors(self) -> list[dict[str, Any]]:
        if self.failure is not None:
            return [{"row": None, "column": None, "message": self.failure}]
        assert self.result is not None
        return [
            {"row": e.row, "column": e.column, "message": e.message} for e in self.result.errors
        ]

    def message(self) -> str:
        if self.failure is not None:
            return self.failure
        assert self.result is not None
        errors = self.result.errors
        if errors:
            rows = len({e.row for e in errors})
            return (
                f"{rows} row{'s' if rows != 1 else ''} of {self.result.total_rows} have problems, "
                f"so nothing from this file was imported; first: {errors[0].message}"
            )
        matched = sum(1 for m in self.matches or () if m.item_id is not None)
        return f"{self.row_count} costs imported, {matched} matched to catalogue items"


def _prepared_for(path: Path, st: os.stat_result | None, sha: str | None) -> Prepared:
    """What the importer knows of a file before reading it: size, mtime, hash, owner."""
    st = st or path.stat()
    return Prepared(
        path=path,
        name=path.name,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        sha256=sha or sha256_of(path),
        actor=file_owner(st),
    )


def file_owner(st: os.stat_result) -> str:
    """The activity log's actor for a dropped file: the OS user who owns it (st_uid), the closest
    thing to "who dropped it" the file system records. The daemon itself never writes there."""
    try:
        return pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        return f"uid {st.st_uid}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


_NAME_NOISE = frozenset({
    "price", "prices", "pricelist", "pricing", "list", "export", "full", "latest", "new", "current",
    "file", "final", "copy", "daily", "weekly", "monthly", "update", "costs", "cost", "catalog",
    "catalogue", "feed",
})  # fmt: skip


def vendor_from_filename(name: str) -> str:
    """A vendor name for files whose profile and columns name none: the file name without dates,
    numbers and words like "prices" ("acme-distribution-prices-2026-11.csv" → "Acme Distribution"),
    so next month's file from the same source gets the same vendor (saved mappings key on it)."""
    stem = name.split(".", 1)[0]
    words = [w for w in re.split(r"[-_.\s()\[\]]+", stem) if w]
    kept = [
        w
        for w in words
        if not re.fullmatch(r"[vV]?\d+[a-zA-Z]?", w) and w.casefold() not in _NAME_NOISE
    ]
    text = " ".join(kept) or stem
    return text if any(c.isupper() for c in text) else text.title()


def prepare(
    path: Path,
    options: Options,
    matcher: Matcher | None,
    *,
    vendor: str | None = None,
    sha: str | None = None,
    st: os.stat_result | None = None,
) -> Prepared:
    """Hash, read, validate and match one file (blocking: run it in a thread)."""
    prep = _prepared_for(path, st, sha)
    try:
        result = read_price_file(
            path,
            profile=options.default_profile or None,
            profiles=options.profiles,
            default_currency=options.default_currency,
            vendor=vendor,
        )
    except FileUnreadable as exc:
        prep.failure = str(exc)
        return prep
    except Exception as exc:  # noqa: BLE001 - a reader bug must fail the file, not lose it
        log.exception("reading %s failed unexpectedly", path)
        prep.failure = (
            f"{path.name} could not be read ({type(exc).__name__}: {exc}); see the daemon log."
        )
        return prep
    prep.result = result
    if not result.vendor:
        fallback = vendor_from_filename(path.name)
        result.vendor = fallback
        for row in result.rows:
            if not row.vendor:
                row.vendor = fallback
    if not result.errors and matcher is not None:
        prep.matches = matcher.match_all(result.rows)
    return prep


def _placeholders(conn: Connection, n: int) -> str:
    style = conn.dialect.paramstyle
    if style == "qmark":
        return ", ".join("?" * n)
    if style in ("format", "pyformat"):
        return ", ".join(["%s"] * n)
    if style == "numeric":
        return ", ".join(f":{i + 1}" for i in range(n))
    raise NotImplementedError(style)  # pragma: no cover


_VC_COLUMNS = (
    "import_id",
    "row_number",
    "vendor",
    "sku",
    "mpn",
    "manufacturer",
    "description",
    "term",
    "cost",
    "currency",
    "item_id",
    "match_method",
    "imported_at",
)
_UNITS = 10_000


def _insert_costs(
    conn: Connection,
    import_id: int,
    rows: Sequence[VendorRow],
    matches: Sequence[MatchResult] | None,
    at: dt.datetime,
) -> None:
    """All rows of one file, by executemany in chunks straight to the driver: the ORM/Core bind
    processing of 200,000 rows × 13 columns costs more than SQLite's own work. Values are the
    stored forms (MoneyType's integer ten-thousandths, UTCDateTime's text); the reader has already
    quantized every cost to 4 places, so ``scaleb`` is exact."""
    loose = matches is None or all(m[0] is None for m in matches)
    for start in range(0, len(rows), CHUNK):
        part = rows[start : start + CHUNK]
        if matches is None:
            params: list[tuple[Any, ...]] = [stored(r) for r in part]
        elif loose:
            methods = [m[1] for m in matches[start : start + CHUNK]]
            params = [(*stored(r), method) for r, method in zip(part, methods, strict=True)]
        else:
            assert matches is not None
            params = [
                (*stored(r), m[0], m[1])
                for r, m in zip(part, matches[start : start + CHUNK], strict=True)
            ]
        insert_stored(conn, import_id, params, items=not loose, methods=matches is not None, at=at)


def insert_stored(
    conn: Connection,
    import_id: int,
    params: Sequence[tuple[Any, ...]],
    *,
    items: bool,
    methods: bool,
    at: dt.datetime,
) -> None:
    """Rows already in their stored forms (:func:`~..vendors.reader_process.stored`, then the
    item id when ``items``, then the match method when ``methods``) by one executemany."""
    if conn.dialect.name == "sqlite":
        # 16 MB of page cache on the writer: the (vendor, sku, term) and import_id indexes of a
        # table growing by millions of rows stay mostly in memory (the default is 2 MB). The
        # import puts the writer's own size back when it ends (_cache_size).
        conn.exec_driver_sql("PRAGMA cache_size=-16384")
    stamp = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # The import's id and time are the same on every row: written into the statement (our own
    # integer and timestamp text, never file content), they cost no binding per row, and rows
    # no item matched bind no item id (a 2,000,000-row file: ~0.4 µs a row less).
    columns = [c for c in _VC_COLUMNS if c not in ("import_id", "imported_at")]
    if not items:
        columns.remove("item_id")
    if not methods:
        columns.remove("match_method")
    values = ", ".join([str(int(import_id)), _placeholders(conn, len(columns)), f"'{stamp}'"])
    sql = (
        f"INSERT INTO vendor_costs (import_id, {', '.join(columns)}, imported_at) VALUES ({values})"
    )
    if params:
        conn.exec_driver_sql(sql, params if isinstance(params, list) else list(params))


def commit_import(
    conn: Connection,
    prep: Prepared,
    *,
    final_path: str,
    status: str | None = None,
    message: str | None = None,
    table: CostTable | None = None,
    duplicate_of: dict[str, Any] | None = None,
    import_id: int | None = None,
) -> dict[str, Any]:
    """Record one file's outcome in the caller's (write) transaction: the ``PriceImport``, every
    ``VendorCost`` row with its match, the activity entry and the events. All or nothing.

    This is the stable entry point for "import these rows as one all-or-nothing import" (API
    pulls feed it a :class:`Prepared` built from :func:`~..vendors.readers.rows_from_records`).
    ``import_id`` is the staged record of :func:`stream_import` (its ``prep.staged`` unmatched
    rows are already written); it is completed instead of a new record being inserted."""
    previous_cache = _cache_size(conn)
    if previous_cache is not None:
        # 64 MB of page cache for this transaction: the (vendor, sku, term) index of a big file
        # stays in memory. Put back below: the writer connection lives as long as the daemon.
        conn.exec_driver_sql("PRAGMA cache_size=-65536")
    try:
        return _commit_import(
            conn,
            prep,
            final_path=final_path,
            status=status,
            message=message,
            table=table,
            duplicate_of=duplicate_of,
            import_id=import_id,
        )
    finally:
        if previous_cache is not None:
            try:
                _cache_size(conn, previous_cache)
            except Exception:  # noqa: BLE001 - never hide the outcome behind a memory setting
                log.warning("could not reset the writer's page cache", exc_info=True)


def _cache_size(conn: Connection, value: int | None = None) -> int | None:
    """SQLite: the connection's page cache size (PRAGMA units), set to ``value`` when given;
    lowering it frees the pages above the new size. None elsewhere."""
    if conn.dialect.name != "sqlite":
        return None
    if value is not None:
        conn.exec_driver_sql(f"PRAGMA cache_size={int(value)}")
        return value
    return int(conn.exec_driver_sql("PRAGMA cache_size").scalar() or 0)


# WAL pages between automatic checkpoints while a file is staged (SQLite's default is 1,000):
# each chunk's commit otherwise set off a checkpoint, which writes and fsyncs the pages that chunk
# touched, the same index pages again and again. Measured on 2,000,000 rows: 19.0 s -> 15.0 s of
# inserts (CPU the same; the difference was waiting on the disk). The WAL grows to ~64 MB at most
# meanwhile; the writer's own setting is put back when the import ends.
IMPORT_CHECKPOINT_PAGES = 16_384


def _autocheckpoint(conn: Connection, value: int | None = None) -> int | None:
    """SQLite: the connection's ``wal_autocheckpoint`` (pages), set to ``value`` when given.
    None elsewhere."""
    if conn.dialect.name != "sqlite":
        return None
    if value is not None:
        conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={int(value)}")
        return value
    return int(conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() or 0)


def _staging_settings(conn: Connection) -> tuple[int | None, int | None]:
    """The writer's page cache and checkpoint interval as they were; the interval raised for the
    import (see IMPORT_CHECKPOINT_PAGES)."""
    cache, checkpoint = _cache_size(conn), _autocheckpoint(conn)
    if checkpoint is not None:
        _autocheckpoint(conn, max(checkpoint, IMPORT_CHECKPOINT_PAGES))
    return cache, checkpoint


def _restore_settings(conn: Connection, cache: int | None, checkpoint: int | None) -> None:
    if cache is not None:
        _cache_size(conn, cache)
    if checkpoint is not None:
        _autocheckpoint(conn, checkpoint)


def _commit_import(
    conn: Connection,
    prep: Prepared,
    *,
    final_path: str,
    status: str | None,
    message: str | None,
    table: CostTable | None,
    duplicate_of: dict[str, Any] | None,
    import_id: int | None,
) -> dict[str, Any]:
    now = utcnow()
    result = prep.result
    status = status or ("imported" if prep.ok else "failed")
    imported = status == "imported"
    matched_ids: set[int] = set()
    rows_matched = 0
    if imported and prep.matches:
        for m in prep.matches:
            if m.item_id is not None:
                matched_ids.add(m.item_id)
                rows_matched += 1
    errors = None if status in ("imported", "duplicate") else prep.errors()
    message = message or prep.message()
    record: dict[str, Any] = {
        "file_name": prep.name,
        "sha256": prep.sha256,
        "size": prep.size,
        "status": status,
        "profile": result.profile if result else (duplicate_of or {}).get("profile"),
        "vendor": result.vendor if result else (duplicate_of or {}).get("vendor"),
        "rows_total": result.total_rows if result else 0,
        "rows_imported": prep.row_count if (result and imported) else 0,
        "rows_matched": rows_matched,
        "errors": errors,
        "message": message,
        "final_path": final_path,
        "actor": prep.actor,
        "received_at": now,
    }
    if import_id is None:
        import_id = new_id(conn.execute(insert(PriceImport).values(**record)))
    else:
        conn.execute(update(PriceImport).where(PriceImport.id == import_id).values(**record))
    if imported:
        assert result is not None
        _insert_costs(conn, import_id, result.rows, prep.matches, now)
    details: dict[str, Any] = {
        "import_id": import_id,
        "file": prep.name,
        "status": status,
        "vendor": record["vendor"],
        "profile": record["profile"],
        "sha256": prep.sha256,
        "final_path": final_path,
    }
    if imported:
        details.update(
            rows=record["rows_imported"],
            matched=rows_matched,
            unmatched=record["rows_imported"] - rows_matched,
        )
        action = "import.processed"
    elif status == "duplicate":
        details["duplicate_of"] = duplicate_of
        action = "import.duplicate"
    else:
        details.update(
            reason=message, problems=len(errors or []), errors=(errors or [])[:ERRORS_IN_ACTIVITY]
        )
        action = "import.failed"
    activity.append(conn, actor=prep.actor, action=action, subject=prep.name, details=details)
    if matched_ids and table is not None:
        if len(matched_ids) > REFRESH_LIMIT:
            table.reload(conn)
        else:
            table.refresh(conn, matched_ids)
            events.emit(conn, "rows", {"ids": sorted(matched_ids)})
    if imported:
        events.emit(conn, "view", {"reason": "vendor costs imported"})
    events.emit(conn, "imports", {"id": import_id, "status": status, "file_name": prep.name})
    record["id"] = import_id
    return record


def import_file(
    store: Any,
    path: Path,
    options: Options,
    matcher: Matcher | None,
    *,
    final_path: str = "",
    vendor: str | None = None,
    table: CostTable | None = None,
) -> dict[str, Any]:
    """Synchronous: the streaming import the daemon runs, through ``store`` (for tools and
    benchmarks/intake.py). The signature is unchanged from the whole-file import it replaced."""
    record = stream_import(
        store, path, options, matcher, final_for=lambda ok: final_path, vendor=vendor, table=table
    )
    assert record is not None  # no before_commit veto here
    return record


# ---------------------------------------------------------------------------- the streaming import

STAGED = "importing"  # the status of a PriceImport whose rows are still being written
DELETE_CHUNK = 20_000


def _begin_staged(conn: Connection, prep: Prepared, at: dt.datetime) -> int:
    result = conn.execute(
        insert(PriceImport).values(
            file_name=prep.name,
            sha256=prep.sha256,
            size=prep.size,
            status=STAGED,
            rows_total=0,
            rows_imported=0,
            rows_matched=0,
            message=f"{prep.name} is being imported.",
            final_path="",
            actor=prep.actor,
            received_at=at,
        )
    )
    return new_id(result)


def _delete_some(conn: Connection, import_id: int) -> int:
    ids = select(VendorCost.id).where(VendorCost.import_id == import_id).limit(DELETE_CHUNK)
    return conn.execute(delete(VendorCost).where(VendorCost.id.in_(ids))).rowcount or 0


def drop_staged(store: Any, import_id: int, *, record_too: bool) -> None:
    """Take back a staged import's rows, a chunk per transaction (the writer is never held for
    long), then its record when ``record_too``."""
    while store.write_sync(_delete_some, import_id):
        pass
    if record_too:
        store.write_sync(
            lambda c: c.execute(delete(PriceImport).where(PriceImport.id == import_id))
        )


def drop_unfinished(store: Any) -> int:
    """At start: imports left staged by a daemon that died mid-import never happened. Their rows
    go (a chunk at a time) and their records too; the inbox watcher sets their file aside."""
    ids = store.read_sync(
        lambda c: [
            r.id for r in c.execute(select(PriceImport.id).where(PriceImport.status == STAGED))
        ]
    )
    for import_id in ids:
        drop_staged(store, import_id, record_too=True)
    return len(ids)


def _repeats(
    store: Any,
    import_id: int,
    suspects: Sequence[int],
    matched: list[tuple[VendorRow, MatchResult]],
) -> tuple[list[dict[str, Any]], set[int], set[int]]:
    """Rows that repeat a (vendor, SKU, term, currency), found without holding the file: the
    reader kept one hash per row and names the rows whose hash repeats (``suspects``, row
    numbers); only those are compared, by their full keys. Returns the errors (repeats with
    another cost, naming both rows), the staged ids and the row numbers of matched rows that are
    identical repeats (dropped)."""
    if not suspects:
        return [], set(), set()
    wanted = set(suspects)
    found: dict[tuple, list[tuple[int, Any, str, int | None, int | None]]] = {}
    for row, _m in matched:
        if row.row in wanted:
            key = (row.vendor, row.sku, row.term, row.currency)
            found.setdefault(key, []).append((row.row, row.cost, row.currency, None, row.row))

    def scan(conn: Connection) -> None:
        numbers = sorted(wanted)
        for start in range(0, len(numbers), 500):
            stmt = select(
                VendorCost.id,
                VendorCost.row_number,
                VendorCost.vendor,
                VendorCost.sku,
                VendorCost.term,
                VendorCost.currency,
                VendorCost.cost,
            ).where(
                VendorCost.import_id == import_id,
                VendorCost.row_number.in_(numbers[start : start + 500]),
            )
            for r in conn.execute(stmt):
                key = (r.vendor, r.sku, r.term, r.currency)
                found.setdefault(key, []).append((r.row_number, r.cost, r.currency, r.id, None))

    store.read_sync(scan)
    errors: list[dict[str, Any]] = []
    drop_ids: set[int] = set()
    drop_rows: set[int] = set()
    for key, rows in found.items():
        if len(rows) < 2:
            continue  # a hash collision, not a repeat
        rows.sort(key=lambda x: x[0])
        first = rows[0]
        for number, cost, currency, staged_id, matched_row in rows[1:]:
            if cost == first[1]:
                if staged_id is not None:
                    drop_ids.add(staged_id)
                else:
                    drop_rows.add(matched_row)  # type: ignore[arg-type]
                continue
            label = f"{key[1]!r}" + (f" ({key[2]})" if key[2] else "")
            errors.append(
                {
                    "row": number,
                    "column": None,
                    "message": (
                        f"row {number}: SKU {label} appears twice with different costs: row "
                        f"{first[0]} says {first[1].normalize():f} {first[2]}, row {number} says "
                        f"{cost.normalize():f} {currency}"
                    ),
                }
            )
    errors.sort(key=lambda e: e["row"])
    return errors, drop_ids, drop_rows


@dataclass(slots=True)
class _Read:
    """One file's read: what it reads with, and what it leaves for the import's end: the
    matched rows (a catalogue's worth at most, written in the final transaction), how many rows
    are staged, and the rows to compare."""

    store: Any
    path: Path
    options: Options
    matcher: Matcher | None
    vendor: str | None
    fallback: str  # the vendor the file's name gives, for rows that name none
    import_id: int  # the staged import the rows are written under
    started: dt.datetime
    matched: list[tuple[VendorRow, MatchResult]] = field(default_factory=list)
    staged: int = 0
    suspects: list[int] = field(default_factory=list)


class _InFlight:
    """Writes handed to the writer one at a time while this thread reads on: ``send`` waits for
    the previous write (its error is raised there) before it hands over the next."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intake-insert")
        self._pending: Future[Any] | None = None

    def send(self, fn: Any, *args: Any) -> None:
        self.wait()
        self._pending = self._pool.submit(fn, *args)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        # Whatever happened, no insert may land after this returns: the caller may be about
        # to take the staged rows back.
        if self._pending is not None:
            with contextlib.suppress(Exception):
                self._pending.result()
        self._pool.shutdown(wait=True)


def _read_here(job: _Read) -> ReadResult:
    """A smaller file, read in this thread: the rows are matched and staged chunk by chunk. On
    SQLite a chunk goes to the writer as JSON text (:func:`insert_json`), which SQLite takes in one
    statement without the GIL, so the next chunk is parsed while it goes in (one in flight)."""
    numbers = array("q")  # row numbers beside the reader's key hashes, same order
    hand = _InFlight() if job.store.url.startswith("sqlite") else None

    def sink(rows: list[VendorRow]) -> None:
        loose, loose_matches, matched = split_chunk(rows, job.matcher, job.fallback, numbers)
        job.matched.extend(matched)
        if not loose:
            return
        if hand is None:
            # Written before the next chunk is read, not beside it: executemany gives up the GIL
            # around each row's step only, and a thread parsing meanwhile then takes it for up
            # to a switch interval each time (measured: 100,000 rows inserted beside a busy
            # Python thread took 9x as long).
            job.store.write_sync(_insert_costs, job.import_id, loose, loose_matches, job.started)
        else:
            text = loose_json(job.path.name, loose, loose_matches)
            hand.send(
                job.store.write_sync,
                insert_json,
                job.import_id,
                text,
                loose_matches is not None,
                job.started,
            )
        job.staged += len(loose)

    try:
        result = stream_price_file(
            job.path,
            sink,
            profile=job.options.default_profile or None,
            profiles=job.options.profiles,
            default_currency=job.options.default_currency,
            vendor=job.vendor,
            list_prices=False,  # vendor_costs has no column for them
        )
        if hand is not None:
            hand.wait()
    finally:
        if hand is not None:
            hand.close()
    if result.key_hashes is not None:
        job.suspects = repeated_rows(result.key_hashes, numbers)
    return result


def _read_apart(job: _Read) -> ReadResult:
    """A big file, read in a child process (:mod:`.reading`): this thread only receives rows
    ready to store and hands them to the writer, one chunk in flight while the next is received,
    so the writer inserts while the child parses (three stages over two cores, memory bounded
    by a chunk in each)."""
    hand = _InFlight()

    def on_chunk(loose: str, count: int, with_method: bool, matched: list[Any]) -> None:
        keep = job.matched.append
        with no_gc():  # thousands of new rows at once would set off the cyclic GC
            for values, item_id, method, candidates in matched:
                row = VendorRow(
                    values[0],
                    values[1],
                    values[2],
                    values[3],
                    values[4],
                    values[5],
                    values[6],
                    None,
                    values[8],
                    Decimal(values[7]).scaleb(-4),
                    None,
                )
                keep((row, MatchResult(item_id, method, tuple(candidates))))
        if count:
            hand.send(
                job.store.write_sync, insert_json, job.import_id, loose, with_method, job.started
            )
            job.staged += count

    try:
        got = reading.read_in_child(
            job.path,
            profile=job.options.default_profile or None,
            profiles=job.options.profiles,
            default_currency=job.options.default_currency,
            vendor=job.vendor,
            fallback_vendor=job.fallback,
            matcher=job.matcher,
            on_chunk=on_chunk,
        )
        hand.wait()
    finally:
        hand.close()
    job.suspects = got.suspects
    return got.result


# The hint is SQLite 3.35 or later; an older SQLite inserts the same rows, more slowly.
_MATERIALIZED = "MATERIALIZED " if sqlite3.sqlite_version_info >= (3, 35) else ""


def insert_json(
    conn: Connection, import_id: int, rows_json: str, methods: bool, at: dt.datetime
) -> None:
    """Rows in their stored forms as the reader process's JSON text (an array of arrays, see
    :mod:`~..vendors.reader_process`). SQLite reads them straight from the text in one
    statement: no Python object per row, and the GIL is free while the rows go in (the API
    answers meanwhile). Other databases get them through executemany."""
    if conn.dialect.name != "sqlite":
        rows = [tuple(r) for r in json.loads(rows_json)]
        insert_stored(conn, import_id, rows, items=False, methods=methods, at=at)
        return
    conn.exec_driver_sql("PRAGMA cache_size=-16384")  # as insert_stored, for the same reason
    stamp = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    columns = [c for c in _VC_COLUMNS if c not in ("import_id", "imported_at", "item_id")]
    if not methods:
        columns.remove("match_method")
    # json_extract (not ->>): SQLite before 3.38 has it too. Integers come back as integers
    # (the reader sent costs as integer ten-thousandths below 2**63), JSON null as NULL.
    picks = ", ".join(f"json_extract(v, '$[{i}]')" for i in range(len(columns)))
    # Each row's array is taken out of json_each once, into a materialised table: read straight
    # from json_each, every json_extract asked json_each for the row again, which rendered it
    # again, and that was most of the writer's time (2.5 against 4.0 µs per row of a
    # distributor file, measured; the writer bounds a big import).
    conn.exec_driver_sql(
        f"INSERT INTO vendor_costs (import_id, {', '.join(columns)}, imported_at) "
        f"WITH r AS {_MATERIALIZED}(SELECT value AS v FROM json_each(?)) "
        f"SELECT {int(import_id)}, {picks}, '{stamp}' FROM r",
        (rows_json,),
    )


def stream_import(
    store: Any,
    path: Path,
    options: Options,
    matcher: Matcher | None,
    *,
    final_for: Any,
    vendor: str | None = None,
    table: CostTable | None = None,
    sha: str | None = None,
    st: os.stat_result | None = None,
    before_commit: Any = None,
) -> dict[str, Any] | None:
    """Import one file with memory bounded whatever its size (issue 15), all or nothing.

    Blocking: run it in a thread. Rows are validated and matched as they stream (in a child
    process for big files, :mod:`.reading`); each chunk of unmatched rows is written in its own
    short transaction under a ``PriceImport`` staged as "importing" (every reader of vendor rows
    leaves such imports out), so the writer is free between chunks and the API stays responsive.
    Matched rows (a catalogue's worth at most) are kept and written in the final transaction,
    which turns the import visible at once: the cost table never sees part of a file. A file with
    any bad row has its staged rows taken back and is recorded as failed with every problem.
    ``final_for(ok)`` names where the file will go; ``before_commit(prep)`` may veto the outcome
    (the file changed while read): then nothing is kept and None is returned.
    """
    prep = _prepared_for(path, st, sha)
    started = utcnow()
    import_id, writer_settings = store.write_sync(
        lambda c: (_begin_staged(c, prep, started), _staging_settings(c))
    )
    fallback = vendor_from_filename(path.name)
    job = _Read(store, path, options, matcher, vendor, fallback, import_id, started)
    read = _read_apart if reading.in_child(prep.size) else _read_here

    try:
        try:
            result: ReadResult | None = read(job)
        except FileUnreadable as exc:
            prep.failure = str(exc)
            result = None
        except Exception as exc:  # noqa: BLE001 - a reader bug must fail the file, not lose it
            log.exception("reading %s failed unexpectedly", path)
            prep.failure = (
                f"{path.name} could not be read ({type(exc).__name__}: {exc}); see the daemon log."
            )
            result = None
        matched = job.matched
        drop_ids: set[int] = set()
        if result is not None:
            if not result.vendor:
                result.vendor = fallback
            repeat_errors, drop_ids, drop_rows = _repeats(store, import_id, job.suspects, matched)
            if repeat_errors:
                result.errors = sorted(
                    [*result.errors, *(_as_row_error(e) for e in repeat_errors)],
                    key=lambda e: (e.row == 0, e.row),
                )
            if drop_rows:
                matched = [(r, m) for r, m in matched if r.row not in drop_rows]
            result.duplicates += len(drop_ids) + len(drop_rows)
            if not result.streamed and not result.errors:
                prep.failure = (
                    f"{path.name} has no usable price rows: all {result.total_rows} rows were "
                    "skipped (deleted items, or prices not in effect today)."
                )
            result.rows = [r for r, _ in matched]
            prep.matches = [m for _, m in matched]
            prep.result = result
        if before_commit is not None and not before_commit(prep):
            drop_staged(store, import_id, record_too=True)
            return None
        if prep.ok:
            for start in range(0, len(ids := sorted(drop_ids)), DELETE_CHUNK):
                part = ids[start : start + DELETE_CHUNK]
                store.write_sync(
                    lambda c, part=part: c.execute(
                        delete(VendorCost).where(VendorCost.id.in_(part))
                    )
                )
            prep.staged = job.staged - len(drop_ids)
        else:
            drop_staged(store, import_id, record_too=False)
            prep.staged = 0
        final_path = str(final_for(prep.ok))
        return store.write_sync(
            lambda c: commit_import(
                c, prep, final_path=final_path, table=table, import_id=import_id
            )
        )
    except BaseException:
        # Never leave a staged import behind from a daemon that lives on.
        try:
            drop_staged(store, import_id, record_too=True)
        except Exception:  # noqa: BLE001 - the next start drops it (drop_unfinished)
            log.warning("could not take back the staged rows of import #%d", import_id)
        raise
    finally:
        # The chunks raised the writer's page cache (the daemon's RSS gets it back) and its
        # checkpoint interval (the WAL is checkpointed as usual again).
        try:
            store.write_sync(_restore_settings, *writer_settings)
        except Exception:  # noqa: BLE001 - memory only: the next import sets it again
            log.warning("could not reset the writer's page cache", exc_info=True)


def _as_row_error(e: dict[str, Any]) -> RowError:
    return RowError(e["row"], e["column"], e["message"])
