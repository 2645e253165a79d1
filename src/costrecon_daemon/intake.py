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
import errno
import hashlib
import logging
import os
import pwd
import re
import shutil
import stat as stat_mod
import time
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from . import activity, events
from .api import ApiError, actor_of, body_of, daemon_of, field_int, field_str, ok
from .db import CatalogItem, ItemMapping, PriceImport, VendorCost, utcnow
from .money import json_amount
from .vendors.matching import CatalogKey, Matcher, MatchResult
from .vendors.matching import Mapping as SavedMapping
from .vendors.normalise import normalise_sku, normalise_term
from .vendors.profiles import Profile, profile_from_config
from .vendors.readers import FileUnreadable, ReadResult, VendorRow, read_price_file

if TYPE_CHECKING:
    from .recon import CostTable
    from .service import Daemon

log = logging.getLogger(__name__)

# Temporary names: uploads in progress and editors' lock files (notes §5).
IGNORED_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", ".swp")
ZIP_SUFFIXES = (".xlsx", ".xlsm", ".zip")
CHUNK = 5000  # rows per executemany (notes §6.2)
REFRESH_LIMIT = 2000  # more matched items than this: reload the whole cost table instead
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
                f"{rows} row{'s' if rows != 1 else ''} of {self.result.total_rows} have problems, so nothing "
                f"from this file was imported; first: {errors[0].message}"
            )
        matched = sum(1 for m in self.matches or () if m.item_id is not None)
        return f"{len(self.result.rows)} costs imported, {matched} matched to catalogue items"


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
    st = st or path.stat()
    prep = Prepared(
        path=path,
        name=path.name,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        sha256=sha or sha256_of(path),
        actor=file_owner(st),
    )
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
    sql = (
        f"INSERT INTO vendor_costs ({', '.join(_VC_COLUMNS)}) "
        f"VALUES ({_placeholders(conn, len(_VC_COLUMNS))})"
    )
    stamp = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    no_match = (None, None)
    for start in range(0, len(rows), CHUNK):
        part = rows[start : start + CHUNK]
        found = matches[start : start + CHUNK] if matches is not None else [no_match] * len(part)
        conn.exec_driver_sql(
            sql,
            [
                (
                    import_id,
                    r.row,
                    r.vendor,
                    r.sku,
                    r.mpn,
                    r.manufacturer,
                    r.description[:512],
                    r.term,
                    int(r.cost.scaleb(4)),
                    r.currency,
                    m[0],
                    m[1],
                    stamp,
                )
                for r, m in zip(part, found, strict=True)
            ],
        )


def commit_import(
    conn: Connection,
    prep: Prepared,
    *,
    final_path: str,
    status: str | None = None,
    message: str | None = None,
    table: CostTable | None = None,
    duplicate_of: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record one file's outcome in the caller's (write) transaction: the ``PriceImport``, every
    ``VendorCost`` row with its match, the activity entry and the events. All or nothing."""
    if conn.dialect.name == "sqlite":
        # 64 MB of page cache: the (vendor, sku, term) index of a big file stays in memory.
        conn.exec_driver_sql("PRAGMA cache_size=-65536")
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
    record = {
        "file_name": prep.name,
        "sha256": prep.sha256,
        "size": prep.size,
        "status": status,
        "profile": result.profile if result else (duplicate_of or {}).get("profile"),
        "vendor": result.vendor if result else (duplicate_of or {}).get("vendor"),
        "rows_total": result.total_rows if result else 0,
        "rows_imported": len(result.rows) if (result and imported) else 0,
        "rows_matched": rows_matched,
        "errors": errors,
        "message": message,
        "final_path": final_path,
        "actor": prep.actor,
        "received_at": now,
    }
    import_id = conn.execute(insert(PriceImport).values(**record)).inserted_primary_key[0]
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
    """Synchronous: prepare + commit through ``store`` (for tools and benchmarks/intake.py; the
    daemon runs the same two steps, prepare in a thread and commit on the writer)."""
    prep = prepare(path, options, matcher, vendor=vendor)
    return store.write_sync(lambda c: commit_import(c, prep, final_path=final_path, table=table))


# ---------------------------------------------------------------------------- catalogue + matcher


def load_catalog_keys(conn: Connection) -> list[CatalogKey]:
    stmt = select(
        CatalogItem.id,
        CatalogItem.identifier,
        CatalogItem.name,
        CatalogItem.vendor_sku,
        CatalogItem.mpn,
        CatalogItem.manufacturer,
    ).where(CatalogItem.gone.is_(False))
    return [
        CatalogKey(r.id, r.identifier, r.name, r.vendor_sku, r.mpn, r.manufacturer)
        for r in conn.execute(stmt)
    ]


def load_mappings(conn: Connection) -> list[SavedMapping]:
    return [
        SavedMapping(r.vendor, r.sku, r.term or None, r.item_id)
        for r in conn.execute(
            select(ItemMapping.vendor, ItemMapping.sku, ItemMapping.term, ItemMapping.item_id)
        )
    ]


_REMATCH_COLS = (
    VendorCost.id,
    VendorCost.vendor,
    VendorCost.sku,
    VendorCost.mpn,
    VendorCost.manufacturer,
    VendorCost.description,
    VendorCost.term,
    VendorCost.item_id,
    VendorCost.match_method,
)


def apply_rematch(
    conn: Connection, matcher: Matcher, rows: Iterable[Any], *, only_unmatched: bool = False
) -> set[int]:
    """Match ``rows`` again; write the ones whose match changed. Returns the item ids affected
    (old and new), for the cost table."""
    changes, affected = [], set()
    for r in rows:
        m = matcher.match(r)
        if (m.item_id, m.method) != (r.item_id, r.match_method):
            changes.append({"vid": r.id, "item": m.item_id, "method": m.method})
            affected.update(i for i in (r.item_id, m.item_id) if i is not None)
    if changes:
        t = VendorCost.__table__
        stmt = update(t).where(t.c.id == bindparam("vid"))
        if only_unmatched:  # after a sync: never overwrite what a mapping change did meanwhile
            stmt = stmt.where(t.c.item_id.is_(None))
        stmt = stmt.values(item_id=bindparam("item"), match_method=bindparam("method"))
        for start in range(0, len(changes), CHUNK):
            conn.execute(stmt, changes[start : start + CHUNK])
    return affected


def _refresh(conn: Connection, table: CostTable | None, ids: set[int], reason: str) -> None:
    if not ids:
        return
    if table is not None:
        if len(ids) > REFRESH_LIMIT:
            table.reload(conn)
        else:
            table.refresh(conn, ids)
    if len(ids) <= REFRESH_LIMIT:
        events.emit(conn, "rows", {"ids": sorted(ids)})
    events.emit(conn, "view", {"reason": reason})


# ---------------------------------------------------------------------------- queries for the API


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def import_json(r: Any, *, detail: bool = False) -> dict[str, Any]:
    out = {
        "id": r.id,
        "file_name": r.file_name,
        "status": r.status,
        "profile": r.profile,
        "vendor": r.vendor,
        "rows_total": r.rows_total,
        "rows_imported": r.rows_imported,
        "rows_matched": r.rows_matched,
        "received_at": _iso(r.received_at),
        "final_path": r.final_path,
        "message": r.message,
    }
    if detail:
        out.update(errors=list(r.errors or []), sha256=r.sha256, size=r.size, actor=r.actor)
    return out


def _newest_per_key() -> Any:
    """Vendor-cost rows not superseded by a later import of the same vendor + SKU + term."""
    newer = VendorCost.__table__.alias("newer")
    return (
        ~select(newer.c.id)
        .where(
            newer.c.vendor == VendorCost.vendor,
            newer.c.sku == VendorCost.sku,
            newer.c.term.is_not_distinct_from(VendorCost.term),
            newer.c.import_id > VendorCost.import_id,
        )
        .exists()
    )


def unmatched_rows(conn: Connection, limit: int) -> list[Any]:
    stmt = (
        select(
            *_REMATCH_COLS,
            VendorCost.cost,
            VendorCost.currency,
            VendorCost.row_number,
            PriceImport.file_name,
        )
        .join(PriceImport, PriceImport.id == VendorCost.import_id)
        .where(VendorCost.item_id.is_(None), _newest_per_key())
        .order_by(VendorCost.import_id.desc(), VendorCost.row_number, VendorCost.id)
        .limit(limit)
    )
    return list(conn.execute(stmt))


def counts(conn: Connection) -> dict[str, int]:
    total = conn.execute(select(func.count()).select_from(VendorCost)).scalar() or 0
    unmatched = (
        conn.execute(
            select(func.count())
            .select_from(VendorCost)
            .where(VendorCost.item_id.is_(None), _newest_per_key())
        ).scalar()
        or 0
    )
    return {"vendor_costs": total, "unmatched": unmatched}


def mapping_json(conn: Connection, mapping_id: int) -> dict[str, Any] | None:
    rows = mappings_json(conn, mapping_id)
    return rows[0] if rows else None


def mappings_json(conn: Connection, mapping_id: int | None = None) -> list[dict[str, Any]]:
    stmt = (
        select(ItemMapping, CatalogItem.identifier, CatalogItem.name)
        .join(CatalogItem, CatalogItem.id == ItemMapping.item_id, isouter=True)
        .order_by(ItemMapping.vendor, ItemMapping.sku, ItemMapping.term, ItemMapping.id)
    )
    if mapping_id is not None:
        stmt = stmt.where(ItemMapping.id == mapping_id)
    return [
        {
            "id": r.id,
            "vendor": r.vendor,
            "sku": r.sku,
            "term": r.term or None,
            "item_id": r.item_id,
            "identifier": r.identifier,
            "name": r.name,
            "created_by": r.created_by,
            "created_at": _iso(r.created_at),
        }
        for r in conn.execute(stmt)
    ]


def _vendor_key(vendor: str | None) -> str:
    return " ".join((vendor or "").casefold().split())


def rows_for_key(conn: Connection, vendor: str, sku: str, term: str | None) -> list[Any]:
    """Vendor-cost rows a mapping (vendor, SKU, term; None = any) applies to, compared as the
    Matcher compares them. The index on (vendor, sku, term) finds the usual spellings; rows that
    differ only in odd case or spacing are picked up by the next import or sync."""
    variants_v = {vendor, vendor.strip(), vendor.upper(), vendor.lower(), vendor.title()}
    variants_s = {sku, sku.strip(), sku.upper(), sku.lower()}
    stmt = select(*_REMATCH_COLS).where(
        VendorCost.vendor.in_(variants_v), VendorCost.sku.in_(variants_s)
    )
    if term is not None:
        stmt = stmt.where(VendorCost.term == term)
    vkey, skey = _vendor_key(vendor), normalise_sku(sku)
    return [
        r
        for r in conn.execute(stmt)
        if _vendor_key(r.vendor) == vkey and normalise_sku(r.sku) == skey
    ]


# ---------------------------------------------------------------------------- file placement


def _unique(directory: Path, name: str, *, with_report: bool) -> Path:
    """``directory/name``, or ``name (2)``, ``(3)``… when taken (never overwrite)."""
    stem, dot, ext = name.partition(".") if not name.startswith(".") else (name, "", "")
    n = 1
    while True:
        candidate = directory / (name if n == 1 else f"{stem} ({n}){dot}{ext}")
        report = candidate.with_name(candidate.name + ".errors.txt")
        if not candidate.exists() and not (with_report and report.exists()):
            return candidate
        n += 1


def _move_no_clobber(src: Path, dst: Path) -> Path:
    """Move ``src`` to ``dst`` without ever replacing an existing file (a clash gets a suffix)."""
    dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    while True:
        try:
            os.link(src, dst)  # fails if dst exists: no overwrite, unlike rename
        except FileExistsError:
            dst = _unique(dst.parent, dst.name, with_report=False)
            continue
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                raise
            # Another file system (or one without hard links): copy beside, then rename into place.
            tmp = dst.with_name(f".{dst.name}.costrecon-tmp")
            shutil.copy2(src, tmp)
            if dst.exists():
                dst = _unique(dst.parent, dst.name, with_report=False)
            os.replace(tmp, dst)
        os.unlink(src)
        return dst


def errors_report(record: Mapping[str, Any], errors: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        f"costrecon could not import {record['file_name']}.",
        "Nothing from this file was imported. Fix the problems below and drop the file in the inbox again.",
        "",
        f"received: {_iso(record.get('received_at')) or ''}",
        f"sha256:   {record.get('sha256', '')}",
    ]
    if record.get("profile"):
        lines.append(
            f"profile:  {record['profile']}   vendor: {record.get('vendor') or '-'}   "
            f"data rows: {record.get('rows_total', 0)}"
        )
    lines += ["", f"{len(errors)} problem{'s' if len(errors) != 1 else ''}:"]
    for e in errors:  # each message already names its row and column ("row 14, column Cost: …")
        lines.append(f"  {e['message']}")
    return "\n".join(lines) + "\n"


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


# ---------------------------------------------------------------------------- the part


class Intake:
    """The inbox watcher + import worker + imports/mappings API (a daemon part, see parts.py)."""

    def __init__(self, daemon: Daemon):
        self.daemon = daemon
        cfg = daemon.cfg
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
        self._import_lock = asyncio.Lock()
        self._matcher_lock = asyncio.Lock()
        self._keys: list[CatalogKey] | None = None
        self._names: dict[int, tuple[str, str]] = {}
        self._matcher: Matcher | None = None
        self._counts: dict[str, int] | None = None
        self._suggest_cache: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self.routes = _routes()

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
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._busy), 20)
        for t in self._tasks:
            t.cancel()

    async def status(self, status: dict[str, Any]) -> None:
        status["inbox"] = {
            "path": str(self.inbox),
            "pending": len(self._tracked),
            "processed": str(self.processed),
            "failed": str(self.failed),
        }
        if self._counts is None:
            self._counts = await self.daemon.store.read(counts)
        status["counts"].update(self._counts)

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
            self._busy = asyncio.ensure_future(self._take(path))
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
        store = self.daemon.store
        path = Path(path_text)
        c = self._tracked.get(path_text)
        async with self._import_lock:
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
                    prepare, path, self.options, await self.matcher(), sha=sha, st=st
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
            table = self.daemon.parts["recon"].table if "recon" in self.daemon.parts else None
            if earlier is not None:
                final = _unique(self._processed_today(), path.name, with_report=False)
                where = f"{earlier.file_name} (import #{earlier.id}, {_iso(earlier.received_at)})"
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
                    _unique(self._processed_today(), path.name, with_report=False)
                    if prep.ok
                    else _unique(self.failed, path.name, with_report=True)
                )
                record = await store.write(
                    lambda conn: commit_import(conn, prep, final_path=str(final), table=table)
                )
            self._counts = None
            self._suggest_cache.clear()
            # Only now, with the outcome committed, does the file leave the inbox.
            await self._place(path, Path(record["final_path"]), record)
            self._done(path_text)
            log.info("%s: %s (%s)", path.name, record["status"], record["message"])

    def _processed_today(self) -> Path:
        return self.processed / dt.date.today().isoformat()

    async def _place(self, path: Path, final: Path, record: Mapping[str, Any]) -> Path:
        moved = await asyncio.to_thread(_place_file, path, final, record)
        if moved != final:
            log.warning("%s was taken meanwhile; the file is at %s", final, moved)
            await self.daemon.store.write(_set_final_path, record["id"], str(moved))
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
        await self.daemon.store.write(
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

    # ------------------------------------------------------------------ matching

    async def catalog_keys(self) -> list[CatalogKey]:
        if self._keys is None:
            keys = await self.daemon.store.read(load_catalog_keys)
            self._keys = keys
            self._names = {k.item_id: (k.identifier, k.name) for k in keys}
        return self._keys

    async def matcher(self, mappings: list[SavedMapping] | None = None) -> Matcher:
        """The cached Matcher (catalogue + saved mappings), or a new one with ``mappings``."""
        async with self._matcher_lock:
            if mappings is None and self._matcher is not None:
                return self._matcher
            keys = await self.catalog_keys()
            if mappings is None:
                mappings = await self.daemon.store.read(load_mappings)
            built = await asyncio.to_thread(Matcher, keys, mappings)
            if self._keys is keys:
                self._matcher = built
            return built

    def invalidate(self, *, catalogue: bool = False) -> None:
        if catalogue:
            self._keys = None
        self._matcher = None
        self._counts = None
        self._suggest_cache.clear()

    async def after_sync(self) -> None:
        """The catalogue changed: rebuild the Matcher and match the unmatched rows again. Never
        raises (it runs inside the sync loop)."""
        try:
            async with self._import_lock:
                self.invalidate(catalogue=True)
                matcher = await self.matcher()
                store = self.daemon.store
                rows = await store.read(
                    lambda c: list(
                        c.execute(select(*_REMATCH_COLS).where(VendorCost.item_id.is_(None)))
                    )
                )
                if not rows:
                    return
                changes = await asyncio.to_thread(
                    lambda: [r for r in rows if matcher.match(r).item_id is not None]
                )
                if not changes:
                    return
                table = self.daemon.parts["recon"].table if "recon" in self.daemon.parts else None

                def _write(conn: Connection) -> int:
                    ids = apply_rematch(conn, matcher, changes, only_unmatched=True)
                    _refresh(conn, table, ids, "vendor rows matched after sync")
                    return len(ids)

                n = await store.write(_write)
                self._counts = None
                log.info(
                    "after sync: %d unmatched vendor rows now match (%d items)", len(changes), n
                )
        except Exception:  # noqa: BLE001
            log.exception("re-matching vendor rows after the sync failed")

    # ------------------------------------------------------------------ mappings

    async def create_mapping(
        self, *, vendor: str, sku: str, term: str | None, item_id: int, actor: str
    ) -> dict[str, Any]:
        store = self.daemon.store
        async with self._import_lock:
            current = await store.read(load_mappings)
            key = (_vendor_key(vendor), normalise_sku(sku), term)
            for m in current:
                if (_vendor_key(m.vendor), normalise_sku(m.sku), m.term or None) == key:
                    raise ApiError(
                        409,
                        "duplicate",
                        f"A mapping for {vendor} {sku}"
                        f"{' (' + term + ')' if term else ''} already exists; delete it first.",
                    )
            matcher = await self.matcher([*current, SavedMapping(vendor, sku, term, item_id)])
            table = self.daemon.parts["recon"].table if "recon" in self.daemon.parts else None

            def _write(conn: Connection) -> dict[str, Any]:
                item = conn.execute(
                    select(CatalogItem.identifier, CatalogItem.gone).where(
                        CatalogItem.id == item_id
                    )
                ).first()
                if item is None or item.gone:
                    raise ApiError(
                        404, "not_found", f"Item {item_id} is not in the catalogue mirror."
                    )
                mid = conn.execute(
                    insert(ItemMapping).values(
                        vendor=vendor,
                        sku=sku,
                        term=term or "",
                        item_id=item_id,
                        created_by=actor,
                        created_at=utcnow(),
                    )
                ).inserted_primary_key[0]
                affected = apply_rematch(conn, matcher, rows_for_key(conn, vendor, sku, term))
                mapping = mapping_json(conn, mid)
                activity.append(
                    conn,
                    actor=actor,
                    action="mapping.create",
                    subject=f"{vendor} {sku}",
                    after=item.identifier,
                    details={**(mapping or {}), "rows_rematched": len(affected)},
                )
                _refresh(conn, table, affected | {item_id}, "mapping created")
                return mapping or {}

            try:
                mapping = await store.write(_write)
            except IntegrityError:  # the same key saved by someone else a moment ago
                raise ApiError(
                    409, "duplicate", f"A mapping for {vendor} {sku} already exists."
                ) from None
            self._matcher = matcher if self._keys is not None else None
            self._counts = None
            self._suggest_cache.clear()
            return mapping

    async def delete_mapping(self, mapping_id: int, *, actor: str) -> None:
        store = self.daemon.store
        async with self._import_lock:
            existing = await store.read(
                lambda c: c.execute(select(ItemMapping).where(ItemMapping.id == mapping_id)).first()
            )
            if existing is None:
                raise ApiError(404, "not_found", f"Mapping {mapping_id} does not exist.")
            current = await store.read(load_mappings)
            term = existing.term or None
            rest = [
                m
                for m in current
                if (m.vendor, m.sku, m.term or None, m.item_id)
                != (existing.vendor, existing.sku, term, existing.item_id)
            ]
            matcher = await self.matcher(rest)
            table = self.daemon.parts["recon"].table if "recon" in self.daemon.parts else None

            def _write(conn: Connection) -> None:
                before = mapping_json(conn, mapping_id)
                if before is None:
                    raise ApiError(404, "not_found", f"Mapping {mapping_id} does not exist.")
                conn.execute(delete(ItemMapping).where(ItemMapping.id == mapping_id))
                affected = apply_rematch(
                    conn, matcher, rows_for_key(conn, existing.vendor, existing.sku, term)
                )
                activity.append(
                    conn,
                    actor=actor,
                    action="mapping.delete",
                    subject=f"{existing.vendor} {existing.sku}",
                    before=before["identifier"],
                    details={**before, "rows_rematched": len(affected)},
                )
                _refresh(conn, table, affected | {existing.item_id}, "mapping deleted")

            await store.write(_write)
            self._matcher = matcher if self._keys is not None else None
            self._counts = None
            self._suggest_cache.clear()

    async def unmatched(self, limit: int) -> list[dict[str, Any]]:
        rows = await self.daemon.store.read(unmatched_rows, limit)
        matcher = await self.matcher()
        names = self._names

        def _build() -> list[dict[str, Any]]:
            out = []
            for r in rows:
                key = (r.vendor, r.sku, r.mpn, r.manufacturer, r.description, r.term)
                suggestions = self._suggest_cache.get(key)
                if suggestions is None:
                    suggestions = [
                        {
                            "item_id": s.item_id,
                            "identifier": names.get(s.item_id, ("", ""))[0],
                            "name": names.get(s.item_id, ("", ""))[1],
                            "score": s.score,
                            "reason": s.reason,
                        }
                        for s in matcher.suggest(r, limit=5)
                    ]
                    self._suggest_cache[key] = suggestions
                out.append(
                    {
                        "vendor_cost_id": r.id,
                        "vendor": r.vendor,
                        "sku": r.sku,
                        "mpn": r.mpn,
                        "description": r.description,
                        "term": r.term,
                        "cost": json_amount(r.cost),
                        "currency": r.currency,
                        "file": r.file_name,
                        "row": r.row_number,
                        "suggestions": suggestions,
                    }
                )
            return out

        return await asyncio.to_thread(_build)


def _imported_with(conn: Connection, sha: str) -> Any:
    return conn.execute(
        select(PriceImport)
        .where(PriceImport.sha256 == sha, PriceImport.status == "imported")
        .order_by(PriceImport.id)
        .limit(1)
    ).first()


def _place_file(path: Path, final: Path, record: Mapping[str, Any]) -> Path:
    moved = _move_no_clobber(path, final)
    if record["status"] == "failed":
        report = moved.with_name(moved.name + ".errors.txt")
        tmp = report.with_name("." + report.name + ".tmp")
        tmp.write_text(errors_report(record, record.get("errors") or []), encoding="utf-8")
        os.replace(tmp, report)
    return moved


def _set_final_path(conn: Connection, import_id: int, final_path: str) -> None:
    conn.execute(
        update(PriceImport).where(PriceImport.id == import_id).values(final_path=final_path)
    )


# ---------------------------------------------------------------------------- API routes


def _intake(request: web.Request) -> Intake:
    return daemon_of(request).parts["intake"]


def _routes() -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/v1/imports")
    async def list_imports(request: web.Request) -> web.Response:
        limit = field_int(
            request.query, "limit", required=False, default=200, minimum=1, maximum=5000
        )
        rows = await daemon_of(request).store.read(
            lambda c: list(
                c.execute(select(PriceImport).order_by(PriceImport.id.desc()).limit(limit))
            )
        )
        return ok({"imports": [import_json(r) for r in rows]})

    @routes.get("/v1/imports/{import_id}")
    async def get_import(request: web.Request) -> web.Response:
        raw = request.match_info["import_id"]
        if not raw.isdigit():
            raise ApiError(400, "bad_field", f"The import id must be a whole number, got {raw!r}.")
        r = await daemon_of(request).store.read(
            lambda c: c.execute(select(PriceImport).where(PriceImport.id == int(raw))).first()
        )
        if r is None:
            raise ApiError(404, "not_found", f"Import {raw} does not exist.")
        return ok({"import": import_json(r, detail=True)})

    @routes.get("/v1/unmatched")
    async def unmatched(request: web.Request) -> web.Response:
        limit = field_int(
            request.query, "limit", required=False, default=200, minimum=1, maximum=2000
        )
        return ok({"rows": await _intake(request).unmatched(limit)})

    @routes.get("/v1/mappings")
    async def list_mappings(request: web.Request) -> web.Response:
        return ok({"mappings": await daemon_of(request).store.read(mappings_json)})

    @routes.post("/v1/mappings")
    async def create_mapping(request: web.Request) -> web.Response:
        body = await body_of(request)
        vendor = (field_str(body, "vendor") or "").strip()
        if not vendor:
            raise ApiError(400, "bad_field", "The field 'vendor' must not be empty.")
        sku = (field_str(body, "sku") or "").strip()
        if not sku:
            raise ApiError(400, "bad_field", "The field 'sku' must not be empty.")
        raw_term = body.get("term")
        if raw_term is not None and not isinstance(raw_term, str):
            raise ApiError(
                400,
                "bad_field",
                "The field 'term' must be a string such as \"P1M\", or empty for any term.",
            )
        term = None
        if raw_term and raw_term.strip():
            try:
                term = normalise_term(raw_term)
            except ValueError as exc:
                raise ApiError(
                    400, "bad_field", f"The field 'term' is not a term: {exc}."
                ) from None
        item_id = field_int(body, "item_id", minimum=1)
        assert item_id is not None
        mapping = await _intake(request).create_mapping(
            vendor=vendor, sku=sku, term=term, item_id=item_id, actor=actor_of(request)
        )
        return ok({"mapping": mapping}, status=201)

    @routes.delete("/v1/mappings/{mapping_id}")
    async def delete_mapping(request: web.Request) -> web.Response:
        raw = request.match_info["mapping_id"]
        if not raw.isdigit():
            raise ApiError(400, "bad_field", f"The mapping id must be a whole number, got {raw!r}.")
        await _intake(request).delete_mapping(int(raw), actor=actor_of(request))
        return web.Response(status=204)

    return routes


__all__ = ["Intake", "Options", "Prepared", "commit_import", "import_file", "prepare"]
