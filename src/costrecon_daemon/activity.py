"""The activity log: append-only and hash-chained, so tampering is detectable.

Each entry's hash covers its id, time, actor, action, subject, before, after, details and the
previous entry's hash. Editing or deleting any entry breaks the chain at that point, and
``verify`` reports the first broken entry.

A plain SHA-256 chain only proves consistency: whoever can write the database file can edit an
entry and recompute every hash after it. With a key (``daemon.activity_key_file``, kept outside the
database, 0600) each new entry's hash is an HMAC, stored as ``k`` + 63 hex digits so it fits the
same column and is told apart from a plain hash; without the key nobody can forge those. Removing
entries from the *end* leaves a consistent chain, so an export records a checkpoint (the head's
id and hash, signed when keyed) and ``verify`` against that checkpoint detects the loss.

There is deliberately no update or delete function in this module.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
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
    key: bytes | None = None,
) -> str:
    payload = json.dumps(
        [entry_id, at, actor, action, subject, before, after, details, prev_hash],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    if key is not None:
        return KEYED + hmac.new(key, payload, hashlib.sha256).hexdigest()[:63]
    return hashlib.sha256(payload).hexdigest()


KEYED = "k"  # prefix of a keyed (HMAC) hash; a plain SHA-256 hex digest never starts with "k"


@dataclass(frozen=True, slots=True)
class ChainKey:
    """The key, and the first entry id it signs: entries from ``since`` on must all be keyed, so
    re-hashing them as plain SHA-256 (possible without the key) is caught too."""

    secret: bytes
    since: int


_key: ChainKey | None = None

# The host part of actors ("alice@jump1") when several daemons write to one log (a shared
# PostgreSQL database); None when one daemon owns the database, where the bare user is unambiguous.
_host: str | None = None
ACTOR_WIDTH = 64  # ActivityEntry.actor, ChangeSet.actor: VARCHAR(64)


def name_host(host: str | None) -> None:
    """Set once at daemon start: from then on actors are qualified with ``host``."""
    global _host
    _host = host or None


def qualify(actor: str) -> str:
    """``user@host`` for a bare user when the log is shared; an already qualified actor (say, a
    change set's approver, pushed by another daemon) keeps the host it was given. The host is
    shortened rather than the user so the column's 64 characters always name the person."""
    if _host is None or "@" in actor:
        return actor
    room = ACTOR_WIDTH - len(actor) - 1
    if room <= 0:
        return actor[:ACTOR_WIDTH]
    return f"{actor}@{_host[:room]}"


def use_key(key: ChainKey | None) -> None:
    """Set once at daemon start from ``daemon.activity_key_file``: entries appended after are
    keyed. Module state because every writer appends through ``append`` on a bare connection."""
    global _key
    _key = key


def next_id(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(_T.c.id), 0))).scalar_one()) + 1


def load_key(path: Path, *, next_entry: int) -> ChainKey:
    """Read the chain key, creating a random one (0600) on first use and pinning the first entry
    it signs. A key others can read is no secret: refused, as a secret-holding config is."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{secrets.token_hex(32)}\nsince={next_entry}\n")
    st = os.stat(path)
    if st.st_mode & 0o077:
        raise PermissionError(
            f"{path} (the activity log key) can be read by others; run `chmod 600 {path}`."
        )
    lines = path.read_text().split()
    secret = lines[0] if lines else ""
    since = next((ln[6:] for ln in lines[1:] if ln.startswith("since=")), None)
    if len(secret) < 32 or (since is not None and not since.isdigit()):
        raise PermissionError(f"{path} does not hold an activity log key; move it aside.")
    if since is None:  # a key written by hand: it signs from the next entry on
        with open(path, "a") as fh:
            fh.write(f"since={next_entry}\n")
        since = str(next_entry)
    return ChainKey(secret.encode(), int(since))


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
    actor = qualify(actor)
    last = conn.execute(select(_T.c.id, _T.c.hash).order_by(_T.c.id.desc()).limit(1)).first()
    entry_id = (last.id + 1) if last else 1
    prev_hash = last.hash if last else GENESIS
    at = utcnow()
    b, a, d = _canonical(before), _canonical(after), _canonical(details)
    secret = _key.secret if _key is not None else None
    digest = _digest(entry_id, _at_text(at), actor, action, subject, b, a, d, prev_hash, secret)
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


def verify(
    conn: Connection, *, checkpoint: Checkpoint | None = None, key: ChainKey | None = None
) -> VerifyResult:
    """Walk the chain from the first entry. Keyed entries need the key (``key``, else the one in
    use); once an entry is keyed, an unkeyed one after it means someone appended without the key.
    ``checkpoint`` (from an earlier export) must still be in the chain, or entries were cut off."""
    key = key if key is not None else _key
    prev_hash, expected_id, checked = GENESIS, 1, 0
    for row in conn.execute(select(_T).order_by(_T.c.id)):
        if row.id != expected_id:
            return VerifyResult(False, checked, row.id, f"entry {expected_id} is missing")
        if row.prev_hash != prev_hash:
            return VerifyResult(False, checked, row.id, "its link to the previous entry is broken")
        keyed = row.hash.startswith(KEYED)
        if keyed and key is None:
            return VerifyResult(
                False,
                checked,
                row.id,
                "it is signed with the activity log key, which this daemon does not have "
                "(set daemon.activity_key_file)",
            )
        if not keyed and key is not None and row.id >= key.since:
            return VerifyResult(
                False,
                checked,
                row.id,
                f"it is not signed, though the log is signed from entry {key.since} on",
            )
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
            key.secret if (keyed and key is not None) else None,
        )
        if not hmac.compare_digest(digest, row.hash):
            return VerifyResult(False, checked, row.id, "its content does not match its hash")
        if checkpoint is not None and row.id == checkpoint.id and row.hash != checkpoint.hash:
            return VerifyResult(
                False, checked, row.id, "it differs from the entry recorded at the last export"
            )
        prev_hash, expected_id, checked = row.hash, expected_id + 1, checked + 1
    if checkpoint is not None and checkpoint.id >= expected_id:
        return VerifyResult(
            False,
            checked,
            expected_id,
            f"the log ends at entry {expected_id - 1} but the export recorded entry "
            f"{checkpoint.id}: entries were removed from the end",
        )
    return VerifyResult(True, checked, None, None)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The head of the chain at an export: kept outside the database, it anchors the end."""

    id: int
    hash: str
    signature: str | None = None  # HMAC of "id:hash" when the log is keyed

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "hash": self.hash, "signature": self.signature}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        return cls(int(data["id"]), str(data["hash"]), data.get("signature"))


def _sign(key: ChainKey, entry_id: int, entry_hash: str) -> str:
    message = f"{entry_id}:{entry_hash}".encode()
    return hmac.new(key.secret, message, hashlib.sha256).hexdigest()


def checkpoint(conn: Connection) -> Checkpoint:
    last = conn.execute(select(_T.c.id, _T.c.hash).order_by(_T.c.id.desc()).limit(1)).first()
    entry_id, entry_hash = (last.id, last.hash) if last else (0, GENESIS)
    signature = _sign(_key, entry_id, entry_hash) if _key is not None else None
    return Checkpoint(entry_id, entry_hash, signature)


def checkpoint_is_genuine(cp: Checkpoint, key: ChainKey | None = None) -> bool:
    """A signed checkpoint was made by a daemon holding the key (not typed in by someone)."""
    key = key if key is not None else _key
    if cp.signature is None or key is None:
        return cp.signature is None
    return hmac.compare_digest(cp.signature, _sign(key, cp.id, cp.hash))
