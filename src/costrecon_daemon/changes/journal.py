"""The journal: change sets and steps written before anything is sent, and their outcomes."""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, and_, func, or_, select, type_coerce, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from .. import activity, events
from ..db import (
    CatalogItem,
    ChangeSet,
    ChangeStep,
    UTCDateTime,
    new_id,
    utcnow,
)
from ..money import from_units, json_amount, to_units
from ..psa.base import (
    PSAPermissionError,
)

if TYPE_CHECKING:
    from ..costs.table import CostTable


from ..errors import Conflict, NotFound
from ..jsonable import iso
from .plan import PlannedStep
from .states import OPEN, ChangeSetState, StepState

log = logging.getLogger(__name__)

JOURNAL_CHUNK = 5000  # steps per INSERT batch
ACTIVITY_ITEMS = 50  # items named in an approval's activity entry
# A change set with more steps than this is "big": its activity is the approval and one summary,
# and per-line conflicts and failures stay in the journal (served paged), not one entry each.
DETAIL_LIMIT = 200


# ------------------------------------------------------------------ journal


def open_steps_for(conn: Connection, item_ids: Iterable[int]) -> dict[int, int]:
    # In slices: an approval of every item would pass SQLite's limit of bound variables.
    ids = sorted(item_ids)
    out: dict[int, int] = {}
    for start in range(0, len(ids), 900):
        rows = conn.execute(
            select(ChangeStep.item_id, func.min(ChangeStep.change_set_id))
            .where(ChangeStep.item_id.in_(ids[start : start + 900]), ChangeStep.status.in_(OPEN))
            .group_by(ChangeStep.item_id)
        )
        out.update(rows.all())
    return out


def journal(
    conn: Connection,
    *,
    actor: str,
    kind: str,
    policy: str,
    preview: dict[str, Any],
    steps: list[PlannedStep],
    undo_of: int | None = None,
    request_id: str | None = None,
    effective_date: dt.date | None = None,
    item_ids: Iterable[int] = (),
) -> int:
    """Journal a change set. ``effective_date``: a future day makes it SCHEDULED (the caller
    decides what "future" is, by its own clock). ``item_ids``: the approved items, those with
    no step too (the preview lists only its first items), for the busy check."""
    busy = open_steps_for(
        conn,
        {s.item_id for s in steps} | set(item_ids) | {p["item_id"] for p in preview["per_item"]},
    )
    if busy:
        item_id, cs = next(iter(busy.items()))
        raise Conflict(
            "busy",
            f"Item {item_id} is already being pushed by change set {cs}; "
            "wait for it to finish (or undo it) before approving again.",
            {"change_set_id": cs},
        )
    now = utcnow()
    opened = ChangeSetState.SCHEDULED if effective_date is not None else ChangeSetState.PENDING
    result = conn.execute(
        ChangeSet.__table__.insert().values(
            created_at=now,
            actor=actor,
            kind=kind,
            undo_of=undo_of,
            policy=policy,
            status=opened if steps else ChangeSetState.DONE,
            preview=preview,
            finished_at=None if steps else now,
            started_at=None if steps else now,
            request_id=request_id,
            effective_date=effective_date,
        )
    )
    cs_id = new_id(result)
    _insert_steps(conn, cs_id, steps, now)
    per_item = preview["per_item"]
    activity.append(
        conn,
        actor=actor,
        action="approve" if kind == "apply" else "undo",
        subject=f"change set {cs_id}",
        details={
            "change_set_id": cs_id,
            "undo_of": undo_of,
            "policy": policy,
            # One entry for the whole approval: a vendor-wide rise names its first items and
            # counts the rest (the journal has every step: GET /v1/change-sets/{id}/steps).
            "items": [
                {k: p[k] for k in ("identifier", "before", "after", "lines", "lines_skipped")}
                for p in per_item[:ACTIVITY_ITEMS]
            ],
            "items_total": preview["items"],
            "steps": len(steps),
            "lines": preview["lines"],
            "lines_skipped": preview["lines_skipped"],
            "api_calls": preview["api_calls"],
            "monthly_impact": preview["monthly_impact"],
            "currency": preview["currency"],
            "effective_date": effective_date.isoformat() if effective_date else None,
        },
    )
    events.emit(
        conn,
        "push",
        {
            "change_set_id": cs_id,
            "done": 0,
            "total": len(steps),
            "status": opened if steps else ChangeSetState.DONE,
        },
    )
    return cs_id


_STEP_COLUMNS = (
    "change_set_id",
    "item_id",
    "target",
    "target_psa_id",
    "contract_psa_id",
    "line_kind",
    "before",
    "after",
    "currency",
    "status",
    "attempts",
    "updated_at",
)


def _insert_steps(conn: Connection, cs_id: int, steps: list[PlannedStep], now: Any) -> None:
    """The steps in one executemany per batch on the DBAPI cursor of this transaction.

    A vendor-wide rise journals 120,000 steps: through the ORM's insert each row is a dict and
    every value goes through its type's bind processor (most of approval creation's time). Here
    a row is a tuple, money becomes integer units once per distinct value, the time is encoded
    once, and it is the same connection and transaction as the rest of the approval."""
    if not steps:
        return
    dialect = conn.dialect
    table = ChangeStep.__table__
    stamp = UTCDateTime().process_bind_param(now, dialect)
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    cols = ", ".join(dialect.identifier_preparer.quote(c) for c in _STEP_COLUMNS)
    sql = (
        f"INSERT INTO {dialect.identifier_preparer.quote(table.name)} ({cols}) "
        f"VALUES ({', '.join([mark] * len(_STEP_COLUMNS))})"
    )
    u = _cached_units()
    pending = StepState.PENDING.value
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        for start in range(0, len(steps), JOURNAL_CHUNK):
            cursor.executemany(
                sql,
                [
                    (
                        cs_id,
                        s.item_id,
                        s.target,
                        s.target_psa_id,
                        s.contract_psa_id,
                        s.line_kind,
                        u(s.before),
                        u(s.after),
                        s.currency,
                        pending,
                        0,
                        stamp,
                    )
                    for s in steps[start : start + JOURNAL_CHUNK]
                ],
            )
    finally:
        cursor.close()


COUNTED = (
    StepState.PENDING,
    StepState.SENDING,
    StepState.DONE,
    StepState.CONFLICT,
    StepState.FAILED,
    StepState.DENIED,
    StepState.CANCELLED,
)


@dataclass(slots=True)
class ChangeSetView:
    """A change set as the API shows it (``steps`` only when asked for: it can be thousands)."""

    id: int
    created_at: str | None
    actor: str
    kind: str
    undo_of: int | None
    policy: str
    status: str
    preview: dict[str, Any]
    finished_at: str | None
    message: str | None
    counts: dict[str, int]
    total: int
    request_id: str | None = None
    started_at: str | None = None
    actual_seconds: float | None = None
    steps: list[dict[str, Any]] | None = None
    effective_date: str | None = None

    def summary(self) -> dict[str, Any]:
        """What the journal recorded beside what the preview promised (issue 20 item 4)."""
        p = self.preview or {}
        c = self.counts
        promised_changes = int(p.get("item_writes", 0)) + int(p.get("lines", 0))
        out: dict[str, Any] = {
            "changed": c[StepState.DONE],
            "skipped": int(p.get("lines_skipped", 0)),  # by policy or currency, at approval
            "already": int(p.get("lines_already", 0)),
            "conflicts": c[StepState.CONFLICT],
            "failed": c[StepState.FAILED] + c[StepState.DENIED],
            "not_sent": c[StepState.CANCELLED],
            "open": c[StepState.PENDING] + c[StepState.SENDING],
            "promised": {
                "changed": promised_changes,
                "skipped": int(p.get("lines_skipped", 0)),
                "already": int(p.get("lines_already", 0)),
            },
            "differences": [],
        }
        diffs: list[str] = out["differences"]
        if self.total != promised_changes:
            diffs.append(
                f"the preview promised {promised_changes} change(s) but {self.total} step(s) "
                "were journaled (the PSA mirror changed between preview and approval)"
            )
        if out["open"] == 0 and c[StepState.DONE] != self.total:
            why = ", ".join(
                f"{n} {label}"
                for n, label in (
                    (out["conflicts"], "conflict(s): the PSA held another value, left unchanged"),
                    (c[StepState.FAILED], "failed"),
                    (c[StepState.DENIED], "refused for lack of permission"),
                    (out["not_sent"], "not sent"),
                )
                if n
            )
            diffs.append(f"{self.total - c[StepState.DONE]} of {self.total} not changed: {why}")
        return out

    def to_json(self) -> dict[str, Any]:
        p = self.preview or {}
        out: dict[str, Any] = {
            "id": self.id,
            "created_at": self.created_at,
            "actor": self.actor,
            "kind": self.kind,
            "undo_of": self.undo_of,
            "policy": self.policy,
            "status": self.status,
            "preview": self.preview,
            "finished_at": self.finished_at,
            "message": self.message,
            "counts": self.counts,
            "total": self.total,
            "request_id": self.request_id,
            "started_at": self.started_at,
            "estimated_seconds": p.get("estimated_seconds"),
            "actual_seconds": self.actual_seconds,
            "summary": self.summary(),
            "effective_date": self.effective_date,
        }
        if self.steps is not None:
            out["steps"] = self.steps
        return out


def load_change_set(conn: Connection, cs_id: int, *, with_steps: bool = False) -> ChangeSetView:
    cs = conn.execute(select(ChangeSet).where(ChangeSet.id == cs_id)).first()
    if cs is None:
        raise NotFound("not_found", f"There is no change set {cs_id}.")
    counts = dict(
        conn.execute(
            select(ChangeStep.status, func.count())
            .where(ChangeStep.change_set_id == cs_id)
            .group_by(ChangeStep.status)
        ).all()
    )
    actual = None
    if cs.started_at is not None and cs.finished_at is not None:
        actual = round((cs.finished_at - cs.started_at).total_seconds(), 1)
    out = ChangeSetView(
        id=cs.id,
        created_at=iso(cs.created_at),
        actor=cs.actor,
        kind=cs.kind,
        undo_of=cs.undo_of,
        policy=cs.policy,
        status=cs.status,
        preview=cs.preview,
        finished_at=iso(cs.finished_at),
        message=cs.message,
        counts={k: counts.get(k, 0) for k in COUNTED},
        total=sum(counts.values()),
        request_id=cs.request_id,
        started_at=iso(cs.started_at),
        actual_seconds=actual,
        effective_date=cs.effective_date.isoformat() if cs.effective_date else None,
    )
    if with_steps:
        out.steps = _steps_json(
            conn.execute(_steps_query(cs_id).order_by(ChangeStep.id)), full=True
        )
    return out


def _steps_query(cs_id: int) -> Any:
    return (
        select(ChangeStep, CatalogItem.identifier)
        .join(CatalogItem, CatalogItem.id == ChangeStep.item_id)
        .where(ChangeStep.change_set_id == cs_id)
    )


def _steps_json(rows: Iterable[Any], *, full: bool = False) -> list[dict[str, Any]]:
    out = []
    for s in rows:
        d = {
            "id": s.id,
            "item_id": s.item_id,
            "identifier": s.identifier,
            "target": s.target,
            "target_psa_id": s.target_psa_id,
            "contract": s.contract_psa_id,
            "contract_psa_id": s.contract_psa_id,
            "before": json_amount(s.before),
            "after": json_amount(s.after),
            "value": json_amount(s.value),
            "currency": s.currency,
            "status": s.status,
            "attempts": s.attempts,
            "message": s.message,
        }
        out.append(d)
    return out


def change_set_json(conn: Connection, cs_id: int, *, with_steps: bool = False) -> dict[str, Any]:
    return load_change_set(conn, cs_id, with_steps=with_steps).to_json()


def change_set_by_request(conn: Connection, actor: str, request_id: str) -> int | None:
    return conn.execute(
        select(ChangeSet.id).where(ChangeSet.actor == actor, ChangeSet.request_id == request_id)
    ).scalar()


def list_steps(
    conn: Connection,
    cs_id: int,
    *,
    statuses: list[str] | None = None,
    offset: int = 0,
    limit: int = 100,
) -> dict[str, Any]:
    """One page of a change set's steps (GET /v1/change-sets/{id}/steps): per-line conflicts
    and failures live here, not in the activity log."""
    if conn.execute(select(ChangeSet.id).where(ChangeSet.id == cs_id)).first() is None:
        raise NotFound("not_found", f"There is no change set {cs_id}.")
    where = [ChangeStep.change_set_id == cs_id]
    if statuses:
        where.append(ChangeStep.status.in_(statuses))
    total = conn.execute(select(func.count()).select_from(ChangeStep).where(*where)).scalar()
    rows = conn.execute(
        select(ChangeStep, CatalogItem.identifier)
        .join(CatalogItem, CatalogItem.id == ChangeStep.item_id)
        .where(*where)
        .order_by(ChangeStep.id)
        .offset(offset)
        .limit(limit)
    )
    return {"total": total or 0, "offset": offset, "limit": limit, "steps": _steps_json(rows)}


def list_change_sets(conn: Connection, limit: int = 50) -> list[dict[str, Any]]:
    ids = (
        conn.execute(select(ChangeSet.id).order_by(ChangeSet.id.desc()).limit(limit))
        .scalars()
        .all()
    )
    return [change_set_json(conn, i) for i in ids]


@dataclass(slots=True)
class StepRow:
    id: int
    item_id: int
    target: str
    target_psa_id: str
    contract_psa_id: str | None
    line_kind: str | None
    before: Decimal | None
    after: Decimal
    status: str


Outcome = tuple[StepRow, str, Decimal | None, str | None]


def next_open_change_set(conn: Connection, today: dt.date | None = None) -> int | None:
    """The oldest set to push: pending or pushing, or scheduled with its day come (``today``:
    the caller's clock; None leaves every scheduled set waiting)."""
    due: ColumnElement[bool] = ChangeSet.status.in_(
        (ChangeSetState.PENDING, ChangeSetState.PUSHING)
    )
    if today is not None:
        due = or_(
            due,
            and_(ChangeSet.status == ChangeSetState.SCHEDULED, ChangeSet.effective_date <= today),
        )
    return conn.execute(select(ChangeSet.id).where(due).order_by(ChangeSet.id).limit(1)).scalar()


def next_effective_date(conn: Connection) -> dt.date | None:
    """The earliest day a scheduled set waits for (the push worker's timer)."""
    return conn.execute(
        select(func.min(ChangeSet.effective_date)).where(
            ChangeSet.status == ChangeSetState.SCHEDULED
        )
    ).scalar()


def cancel_change_set(conn: Connection, cs_id: int, actor: str) -> list[int]:
    """Cancel a scheduled set before its day: its steps are never sent. Returns its item ids.
    Runs in one write transaction, as does the worker's start of a set, so a set is either
    cancelled or started, never both."""
    cs = conn.execute(select(ChangeSet).where(ChangeSet.id == cs_id)).first()
    if cs is None:
        raise NotFound("not_found", f"There is no change set {cs_id}.")
    if cs.status != ChangeSetState.SCHEDULED:
        raise Conflict(
            "not_scheduled",
            f"Change set {cs_id} is {cs.status}, not scheduled, so it cannot be cancelled; "
            "undo it instead once it has finished.",
            {"change_set_id": cs_id, "status": cs.status},
        )
    now = utcnow()
    conn.execute(
        update(ChangeStep)
        .where(ChangeStep.change_set_id == cs_id, ChangeStep.status.in_(OPEN))
        .values(
            status=StepState.CANCELLED,
            message="not sent: the scheduled change set was cancelled",
            updated_at=now,
        )
    )
    conn.execute(
        update(ChangeSet)
        .where(ChangeSet.id == cs_id)
        .values(status=ChangeSetState.CANCELLED, finished_at=now)
    )
    ids = sorted(
        conn.execute(select(ChangeStep.item_id).where(ChangeStep.change_set_id == cs_id).distinct())
        .scalars()
        .all()
    )
    activity.append(
        conn,
        actor=actor,
        action="cancel",
        subject=f"change set {cs_id}",
        details={
            "change_set_id": cs_id,
            "effective_date": cs.effective_date.isoformat() if cs.effective_date else None,
            "approved_by": cs.actor,
            "items": len(ids),
        },
    )
    events.emit(conn, "push", {"change_set_id": cs_id, "status": ChangeSetState.CANCELLED})
    return ids


def start_change_set(conn: Connection, cs_id: int) -> tuple[str, dict[str, int]]:
    """Mark the set pushing; return its actor and its step counts (the worker keeps them)."""
    cs = conn.execute(select(ChangeSet).where(ChangeSet.id == cs_id)).one()
    if cs.status == ChangeSetState.CANCELLED:
        return cs.actor, {}  # cancelled after the worker picked it: nothing to push
    if cs.status in (ChangeSetState.PENDING, ChangeSetState.SCHEDULED):
        conn.execute(
            update(ChangeSet)
            .where(ChangeSet.id == cs_id)
            .values(status=ChangeSetState.PUSHING, started_at=cs.started_at or utcnow())
        )
    counts = dict(
        conn.execute(
            select(ChangeStep.status, func.count())
            .where(ChangeStep.change_set_id == cs_id)
            .group_by(ChangeStep.status)
        ).all()
    )
    return cs.actor, counts


def open_step_keys(conn: Connection, cs_id: int) -> list[tuple[int, str, str | None]]:
    """``(id, target, contract_psa_id)`` of the set's steps still to push, in journal order:
    what the push worker groups by, without holding every step in full (a vendor-wide set has
    120,000; the worker loads them a few groups at a time with :func:`steps_by_id`)."""
    strings: dict[str, str] = {}
    return [
        (
            sid,
            strings.setdefault(target, target),
            contract and strings.setdefault(contract, contract),
        )
        for sid, target, contract in conn.execute(
            select(ChangeStep.id, ChangeStep.target, ChangeStep.contract_psa_id)
            .where(ChangeStep.change_set_id == cs_id, ChangeStep.status.in_(OPEN))
            .order_by(ChangeStep.id)
        )
    ]


def steps_by_id(conn: Connection, ids: list[int]) -> dict[int, StepRow]:
    """The open steps among ``ids``, in full."""
    out: dict[int, StepRow] = {}
    for start in range(0, len(ids), 900):  # under SQLite's default 999 parameters
        out.update(
            (s.id, s)
            for s in _step_rows(
                conn,
                ChangeStep.id.in_(ids[start : start + 900]),
                ChangeStep.status.in_(OPEN),
            )
        )
    return out


def open_steps(conn: Connection, cs_id: int) -> list[StepRow]:
    """The set's steps still to push, in journal order."""
    return _step_rows(conn, ChangeStep.change_set_id == cs_id, ChangeStep.status.in_(OPEN))


def _step_rows(conn: Connection, *where: ColumnElement[bool]) -> list[StepRow]:
    """Steps as the push worker holds them, each kept small: the few distinct strings (target,
    kind, status, contract ids) and amounts are shared between steps rather than one object per
    row, and rows are streamed, not fetched as one list first."""
    money: dict[int | None, Decimal | None] = {None: None}
    strings: dict[str, str] = {}

    def amount(units: int | None) -> Decimal | None:
        got = money.get(units)
        if got is None and units is not None:
            got = money[units] = from_units(units)
        return got

    def shared(text: str | None) -> str | None:
        return None if text is None else strings.setdefault(text, text)

    result = conn.execute(
        select(
            ChangeStep.id,
            ChangeStep.item_id,
            ChangeStep.target,
            ChangeStep.target_psa_id,
            ChangeStep.contract_psa_id,
            ChangeStep.line_kind,
            type_coerce(ChangeStep.before, BigInteger),
            type_coerce(ChangeStep.after, BigInteger),
            ChangeStep.status,
        )
        .where(*where)
        .order_by(ChangeStep.id)
    )
    out = []
    for sid, item_id, target, psa_id, contract, kind, before, after, status in result:
        out.append(
            StepRow(
                sid,
                item_id,
                shared(target),  # type: ignore[arg-type]
                psa_id,
                shared(contract),
                shared(kind),
                amount(before),
                amount(after),  # type: ignore[arg-type]
                shared(status),  # type: ignore[arg-type]
            )
        )
    return out


def mark_sending(
    conn: Connection, ids: list[int], outcomes: list[Outcome], cs_id: int, actor: str, detail: bool
) -> None:
    """Journal steps as ``sending`` (before they are sent) and record finished ones, in the
    caller's transaction."""
    if ids:
        stamp = UTCDateTime().process_bind_param(utcnow(), conn.dialect)
        sending = StepState.SENDING.value
        _executemany(
            conn,
            "UPDATE {change_steps} SET {status} = {p}, {attempts} = {attempts} + 1, "
            "{updated_at} = {p} WHERE {id} = {p}",
            [(sending, stamp, i) for i in ids],
        )
    if outcomes:
        record_outcomes(conn, cs_id, actor, outcomes, detail)


def _executemany(conn: Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """One statement for many rows on the DBAPI cursor of this transaction.

    A push journals each of 120,000 steps twice: through SQLAlchemy's update() every row paid
    for statement compilation lookups and a bind processor per value, which was most of the
    journal's CPU. ``sql`` names tables and columns in braces (quoted for the dialect here) and
    ``{p}`` for each parameter."""
    if not rows:
        return
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    names = {
        n: quote(n)
        for n in (
            "change_steps",
            "catalog_items",
            "contract_lines",
            "status",
            "attempts",
            "updated_at",
            "id",
            "message",
            "value",
            "cost",
            "unit_cost",
            "psa_id",
        )
    }
    text = sql.format(p="?" if dialect.paramstyle == "qmark" else "%s", **names)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(text, rows)
    finally:
        cursor.close()


def _cached_units() -> Callable[[Decimal | None], int | None]:
    """Decimal → stored integer units, each distinct amount converted once: a vendor-wide set
    repeats a few hundred amounts over a hundred thousand steps."""
    units: dict[Decimal, int] = {}

    def u(value: Decimal | None) -> int | None:
        if value is None:
            return None
        got = units.get(value)
        if got is None:
            got = units[value] = to_units(value)
        return got

    return u


def record_outcomes(
    conn: Connection, cs_id: int, actor: str, outcomes: list[Outcome], detail: bool
) -> None:
    """Record finished steps and what the PSA held. ``detail``: also one activity entry per
    conflict or failure (small change sets only; a big one is summarised when it finishes)."""
    stamp = UTCDateTime().process_bind_param(utcnow(), conn.dialect)
    u = _cached_units()
    # One executemany per table: a push records thousands of outcomes.
    _executemany(
        conn,
        "UPDATE {change_steps} SET {status} = {p}, {message} = {p}, {value} = {p}, "
        "{updated_at} = {p} WHERE {id} = {p}",
        [(str(status), message, u(value), stamp, s.id) for s, status, value, message in outcomes],
    )
    # The mirror follows what the PSA verifiably holds, so the table is right before the next sync.
    verified = [
        (s, value)
        for s, status, value, _ in outcomes
        if value is not None and status in (StepState.DONE, StepState.CONFLICT)
    ]
    _executemany(
        conn,
        "UPDATE {catalog_items} SET {cost} = {p} WHERE {psa_id} = {p}",
        [(u(value), s.target_psa_id) for s, value in verified if s.target == "item"],
    )
    _executemany(
        conn,
        "UPDATE {contract_lines} SET {unit_cost} = {p} WHERE {psa_id} = {p}",
        [(u(value), s.target_psa_id) for s, value in verified if s.target == "line"],
    )
    if not detail:
        return
    for s, status, value, message in outcomes:
        if status in (StepState.CONFLICT, StepState.FAILED, StepState.DENIED):
            ident = conn.execute(
                select(CatalogItem.identifier).where(CatalogItem.id == s.item_id)
            ).scalar()
            activity.append(
                conn,
                actor=actor,
                action=f"push.{s.target}.{status}",
                subject=f"{ident} {s.target} {s.target_psa_id}",
                before=json_amount(s.before),
                after=json_amount(s.after),
                details={
                    "change_set_id": cs_id,
                    "step_id": s.id,
                    "message": message,
                    "found": json_amount(value),
                    "contract": s.contract_psa_id,
                },
            )


def record_progress(conn: Connection, cs_id: int, counts: dict[str, int], rows: list[int]) -> None:
    """Publish push progress from the worker's running counts (no query over the steps: the
    cost per tick does not grow with the change set)."""
    if rows:
        events.emit(conn, "rows", {"ids": rows})
    total = sum(counts.values())
    finished = total - counts.get(StepState.PENDING, 0) - counts.get(StepState.SENDING, 0)
    events.emit(
        conn,
        "push",
        {
            "change_set_id": cs_id,
            "done": finished,
            "total": total,
            "counts": dict(counts),
            "status": ChangeSetState.PUSHING,
        },
    )


def finish_change_set(
    conn: Connection, cs_id: int, denied: PSAPermissionError | None, table: CostTable
) -> None:
    cs = conn.execute(select(ChangeSet).where(ChangeSet.id == cs_id)).one()
    message = None
    if denied is not None:
        message = denied.message
        conn.execute(
            update(ChangeStep)
            .where(ChangeStep.change_set_id == cs_id, ChangeStep.status.in_(OPEN))
            .values(
                status=StepState.CANCELLED,
                message="not sent: the PSA refused permission",
                updated_at=utcnow(),
            )
        )
    counts = dict(
        conn.execute(
            select(ChangeStep.status, func.count())
            .where(ChangeStep.change_set_id == cs_id)
            .group_by(ChangeStep.status)
        ).all()
    )
    total = sum(counts.values())
    if denied is not None:
        status = ChangeSetState.DENIED
    elif counts.get(StepState.DONE, 0) == total:
        status = ChangeSetState.DONE
    elif counts.get(StepState.DONE, 0):
        status = ChangeSetState.PARTIAL
    else:
        status = ChangeSetState.FAILED
    conn.execute(
        update(ChangeSet)
        .where(ChangeSet.id == cs_id)
        .values(status=status, finished_at=utcnow(), message=message)
    )
    per_item = conn.execute(
        select(ChangeStep.item_id, CatalogItem.identifier, ChangeStep.status, func.count())
        .join(CatalogItem, CatalogItem.id == ChangeStep.item_id)
        .where(ChangeStep.change_set_id == cs_id)
        .group_by(ChangeStep.item_id, CatalogItem.identifier, ChangeStep.status)
    ).all()
    by_item: dict[tuple[int, str], dict[str, int]] = defaultdict(dict)
    for item_id, ident, st, n in per_item:
        by_item[(item_id, ident)][st] = n
    if len(by_item) <= ACTIVITY_ITEMS:
        # A few items: one activity entry per item with its counts, then the summary (a
        # vendor-wide change set gets the summary only; its detail is in the journal).
        targets = {
            (s.item_id, s.target): s
            for s in conn.execute(
                select(ChangeStep).where(
                    ChangeStep.change_set_id == cs_id, ChangeStep.target == "item"
                )
            ).all()
        }
        for (item_id, ident), c in sorted(by_item.items(), key=lambda kv: kv[0][1]):
            item_step = targets.get((item_id, "item"))
            activity.append(
                conn,
                actor=cs.actor,
                action="push.item",
                subject=ident,
                before=json_amount(item_step.before) if item_step else None,
                after=json_amount(item_step.after) if item_step else None,
                details={"change_set_id": cs_id, "item_id": item_id, **c},
            )
    view = load_change_set(conn, cs_id)
    summary = view.summary()
    activity.append(
        conn,
        actor=cs.actor,
        action="push.done",
        subject=f"change set {cs_id}",
        details={
            "change_set_id": cs_id,
            "status": status,
            **counts,
            "items": len(by_item),
            "changed": summary["changed"],
            "skipped": summary["skipped"],
            "conflicts": summary["conflicts"],
            "failed": summary["failed"],
            "differences": summary["differences"],
            "estimated_seconds": view.to_json()["estimated_seconds"],
            "actual_seconds": view.actual_seconds,
            "message": message,
        },
    )
    # The safety net: rows re-derived from the journal once, so the table the finished set
    # reports is exactly what was recorded (a client that waited for "done" reads it).
    table.take_dirty()
    table.refresh(conn, [i for i, _ in by_item])
    events.emit(
        conn,
        "push",
        {
            "change_set_id": cs_id,
            "done": total,
            "total": total,
            "counts": counts,
            "status": status,
        },
    )
    events.emit(conn, "rows", {"ids": sorted(i for i, _ in by_item)})
