"""The activity log: append-only and hash-chained, so tampering is detectable.

Each entry's hash covers its id, time, actor, action, subject, before, after, details and the
previous entry's hash. Editing or deleting any entry breaks the chain at that point, and
``verify`` reports the first broken entry. (Removing entries from the *end* cannot be detected
from inside the database; an exported copy or a backup is the anchor for that.)

There is deliberately no update or delete function in this module.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from .db import ActivityEntry, serialize_writers, utcnow
from .events import emit

GENESIS = "0" * 64
_T = ActivityEntry.__table__


def _canonical(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _digest(
    entry_id: int,
    at: str,
    actor: str,
    action: str,
    subject: str,
    before: str | None,
    after: str | None,
    details: str | None,
    prev_hash: str,
) -> str:
    payload = json.dumps(
        [entry_id, at, actor, action, subject, before, after, details, prev_hash],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _at_text(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def append(
    conn: Connection,
    *,
    actor: str,
    action: str,
    subject: str = "",
    before: Any = None,
    after: Any = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Append one entry inside the caller's (write) transaction and emit an ``activity`` event."""
    # The chain reads the last hash then inserts the next id: two writers interleaving here would
    # fork it. A no-op on SQLite (BEGIN IMMEDIATE); on PostgreSQL it holds even for a caller whose
    # connection did not come from the Store's writer engine.
    serialize_writers(conn)
    last = conn.execute(select(_T.c.id, _T.c.hash).order_by(_T.c.id.desc()).limit(1)).first()
    entry_id = (last.id + 1) if last else 1
    prev_hash = last.hash if last else GENESIS
    at = utcnow()
    b, a, d = _canonical(before), _canonical(after), _canonical(details)
    digest = _digest(entry_id, _at_text(at), actor, action, subject, b, a, d, prev_hash)
    conn.execute(
        insert(_T).values(
            id=entry_id,
            at=at,
            actor=actor,
            action=action,
            subject=subject,
            before=b,
            after=a,
            details=d,
            prev_hash=prev_hash,
            hash=digest,
        )
    )
    entry = {
        "id": entry_id,
        "at": _at_text(at),
        "actor": actor,
        "action": action,
        "subject": subject,
        "before": b,
        "after": a,
        "details": details or {},
    }
    emit(conn, "activity", entry)
    return entry


def to_json(row: Any) -> dict[str, Any]:
    details = row.details
    try:
        details = json.loads(details) if details else {}
    except ValueError:
        details = {"raw": details}
    return {
        "id": row.id,
        "at": _at_text(row.at),
        "actor": row.actor,
        "action": row.action,
        "subject": row.subject,
        "before": row.before,
        "after": row.after,
        "details": details,
    }


def query(
    conn: Connection,
    *,
    limit: int = 200,
    before_id: int | None = None,
    after_id: int | None = None,
    actor: str | None = None,
    action: str | None = None,
    subject: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Newest first, or oldest first when ``after_id`` is given (to catch up on a tail)."""
    stmt = select(_T)
    if before_id is not None:
        stmt = stmt.where(_T.c.id < before_id)
    if after_id is not None:
        stmt = stmt.where(_T.c.id > after_id)
    if actor:
        stmt = stmt.where(_T.c.actor == actor)
    # ilike: SQLite's LIKE ignores ASCII case and PostgreSQL's does not; filters must match alike.
    if action:
        stmt = stmt.where(_T.c.action.ilike(f"{action}%"))
    if subject:
        stmt = stmt.where(_T.c.subject.ilike(f"%{subject}%"))
    if since is not None:
        stmt = stmt.where(_T.c.at >= since)
    if until is not None:
        stmt = stmt.where(_T.c.at < until)
    order = _T.c.id.asc() if after_id is not None else _T.c.id.desc()
    rows = conn.execute(stmt.order_by(order).limit(max(1, min(limit, 5000)))).all()
    return [to_json(r) for r in rows]


@dataclass(slots=True)
class VerifyResult:
    ok: bool
    checked: int
    first_broken: int | None
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "first_broken": self.first_broken,
            "reason": self.reason,
        }


def verify(conn: Connection) -> VerifyResult:
    prev_hash, expected_id, checked = GENESIS, 1, 0
    for row in conn.execute(select(_T).order_by(_T.c.id)):
        if row.id != expected_id:
            return VerifyResult(False, checked, row.id, f"entry {expected_id} is missing")
        if row.prev_hash != prev_hash:
            return VerifyResult(False, checked, row.id, "its link to the previous entry is broken")
        digest = _digest(
            row.id,
            _at_text(row.at),
            row.actor,
            row.action,
            row.subject,
            row.before,
            row.after,
            row.details,
            row.prev_hash,
        )
        if digest != row.hash:
            return VerifyResult(False, checked, row.id, "its content does not match its hash")
        prev_hash, expected_id, checked = row.hash, expected_id + 1, checked + 1
    return VerifyResult(True, checked, None, None)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """Spreadsheet-safe cell: a leading quote stops =, +, -, @ from being read as a formula."""
    text = (
        ""
        if value is None
        else (value if isinstance(value, str) else json.dumps(value, sort_keys=True))
    )
    return "'" + text if text.startswith(_FORMULA_START) else text


EXPORT_COLUMNS = ("id", "at", "actor", "action", "subject", "before", "after", "details")


def write_csv(entries: Iterable[dict[str, Any]], out: TextIO) -> int:
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    n = 0
    for e in entries:
        writer.writerow([_cell(e.get(c)) for c in EXPORT_COLUMNS])
        n += 1
    return n
