"""The journal: change sets and steps written before anything is sent, and their outcomes."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection

from .. import activity, events
from ..db import CatalogItem, ChangeSet, ChangeStep, ContractLine, utcnow
from ..money import json_amount
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


# ------------------------------------------------------------------ journal


def open_steps_for(conn: Connection, item_ids: Iterable[int]) -> dict[int, int]:
    rows = conn.execute(
        select(ChangeStep.item_id, func.min(ChangeStep.change_set_id))
        .where(ChangeStep.item_id.in_(list(item_ids)), ChangeStep.status.in_(OPEN))
        .group_by(ChangeStep.item_id)
    )
    return dict(rows.all())


def journal(
    conn: Connection,
    *,
    actor: str,
    kind: str,
    policy: str,
    preview: dict[str, Any],
    steps: list[PlannedStep],
    undo_of: int | None = None,
) -> int:
    busy = open_steps_for(
        conn, {s.item_id for s in steps} | {p["item_id"] for p in preview["per_item"]}
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
    cs_id = conn.execute(
        ChangeSet.__table__.insert().values(
            created_at=now,
            actor=actor,
            kind=kind,
            undo_of=undo_of,
            policy=policy,
            status=ChangeSetState.PENDING if steps else ChangeSetState.DONE,
            preview=preview,
            finished_at=None if steps else now,
        )
    ).inserted_primary_key[0]
    if steps:
        conn.execute(
            ChangeStep.__table__.insert(),
            [
                {
                    "change_set_id": cs_id,
                    "item_id": s.item_id,
                    "target": s.target,
                    "target_psa_id": s.target_psa_id,
                    "contract_psa_id": s.contract_psa_id,
                    "line_kind": s.line_kind,
                    "before": s.before,
                    "after": s.after,
                    "currency": s.currency,
                    "status": StepState.PENDING,
                    "attempts": 0,
                    "updated_at": now,
                }
                for s in steps
            ],
        )
    activity.append(
        conn,
        actor=actor,
        action="approve" if kind == "apply" else "undo",
        subject=f"change set {cs_id}",
        details={
            "change_set_id": cs_id,
            "undo_of": undo_of,
            "policy": policy,
            "items": [
                {k: p[k] for k in ("identifier", "before", "after", "lines", "lines_skipped")}
                for p in preview["per_item"]
            ],
            "lines": preview["lines"],
            "lines_skipped": preview["lines_skipped"],
            "api_calls": preview["api_calls"],
            "monthly_impact": preview["monthly_impact"],
            "currency": preview["currency"],
        },
    )
    events.emit(
        conn,
        "push",
        {
            "change_set_id": cs_id,
            "done": 0,
            "total": len(steps),
            "status": ChangeSetState.PENDING if steps else ChangeSetState.DONE,
        },
    )
    return cs_id


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
    steps: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
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
        counts={
            k: counts.get(k, 0)
            for k in (
                StepState.PENDING,
                StepState.SENDING,
                StepState.DONE,
                StepState.CONFLICT,
                StepState.FAILED,
                StepState.DENIED,
                StepState.CANCELLED,
            )
        },
        total=sum(counts.values()),
    )
    if with_steps:
        rows = conn.execute(
            select(ChangeStep, CatalogItem.identifier)
            .join(CatalogItem, CatalogItem.id == ChangeStep.item_id)
            .where(ChangeStep.change_set_id == cs_id)
            .order_by(ChangeStep.id)
        )
        out.steps = [
            {
                "id": s.id,
                "item_id": s.item_id,
                "identifier": s.identifier,
                "target": s.target,
                "target_psa_id": s.target_psa_id,
                "contract_psa_id": s.contract_psa_id,
                "before": json_amount(s.before),
                "after": json_amount(s.after),
                "currency": s.currency,
                "status": s.status,
                "attempts": s.attempts,
                "message": s.message,
            }
            for s in rows
        ]
    return out


def change_set_json(conn: Connection, cs_id: int, *, with_steps: bool = False) -> dict[str, Any]:
    return load_change_set(conn, cs_id, with_steps=with_steps).to_json()


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


def next_open_change_set(conn: Connection) -> int | None:
    return conn.execute(
        select(ChangeSet.id)
        .where(ChangeSet.status.in_((ChangeSetState.PENDING, ChangeSetState.PUSHING)))
        .order_by(ChangeSet.id)
        .limit(1)
    ).scalar()


def start_change_set(conn: Connection, cs_id: int) -> str:
    cs = conn.execute(select(ChangeSet).where(ChangeSet.id == cs_id)).one()
    if cs.status == "pending":
        conn.execute(
            update(ChangeSet).where(ChangeSet.id == cs_id).values(status=ChangeSetState.PUSHING)
        )
    return cs.actor


def open_steps(conn: Connection, cs_id: int) -> list[StepRow]:
    rows = conn.execute(
        select(ChangeStep)
        .where(ChangeStep.change_set_id == cs_id, ChangeStep.status.in_(OPEN))
        .order_by(ChangeStep.id)
    ).all()
    return [
        StepRow(
            s.id,
            s.item_id,
            s.target,
            s.target_psa_id,
            s.contract_psa_id,
            s.line_kind,
            s.before,
            s.after,
            s.status,
        )
        for s in rows
    ]


def mark_sending(
    conn: Connection, ids: list[int], outcomes: list[Any], cs_id: int, actor: str, table: CostTable
) -> None:
    if ids:
        now = utcnow()
        for start in range(0, len(ids), 500):
            conn.execute(
                update(ChangeStep)
                .where(ChangeStep.id.in_(ids[start : start + 500]))
                .values(status=StepState.SENDING, attempts=ChangeStep.attempts + 1, updated_at=now)
            )
    if outcomes:
        record_outcomes(conn, cs_id, actor, outcomes, table)


def record_outcomes(
    conn: Connection,
    cs_id: int,
    actor: str,
    outcomes: list[tuple[StepRow, str, Decimal | None, str | None]],
    table: CostTable,
) -> None:
    now = utcnow()
    items: set[int] = {s.item_id for s, *_ in outcomes}
    # One executemany per table: a push records thousands of outcomes.
    conn.execute(
        update(ChangeStep)
        .where(ChangeStep.id == bindparam("sid"))
        .values(status=bindparam("st"), message=bindparam("msg"), updated_at=now),
        [{"sid": s.id, "st": status, "msg": message} for s, status, _, message in outcomes],
    )
    # The mirror follows what the PSA verifiably holds, so the table is right before the next sync.
    verified = [
        (s, value)
        for s, status, value, _ in outcomes
        if value is not None and status in (StepState.DONE, StepState.CONFLICT)
    ]
    item_vals = [
        {"pid": s.target_psa_id, "v": value} for s, value in verified if s.target == "item"
    ]
    line_vals = [
        {"pid": s.target_psa_id, "v": value} for s, value in verified if s.target == "line"
    ]
    if item_vals:
        conn.execute(
            update(CatalogItem)
            .where(CatalogItem.psa_id == bindparam("pid"))
            .values(cost=bindparam("v")),
            item_vals,
        )
    if line_vals:
        conn.execute(
            update(ContractLine)
            .where(ContractLine.psa_id == bindparam("pid"))
            .values(unit_cost=bindparam("v")),
            line_vals,
        )
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
    table.dirty.update(items)


def record_progress(conn: Connection, cs_id: int, table: CostTable) -> None:
    """Publish push progress: refresh the rows touched since last time, count the steps.

    Runs at most a few times a second (PushWorker), not per recorded group: on a big push the
    refresh would otherwise cost more than the PSA calls it reports on."""
    items, table.dirty = table.dirty, set()
    if items:
        table.refresh(conn, items)
        events.emit(conn, "rows", {"ids": sorted(items)})
    counts = dict(
        conn.execute(
            select(ChangeStep.status, func.count())
            .where(ChangeStep.change_set_id == cs_id)
            .group_by(ChangeStep.status)
        ).all()
    )
    total = sum(counts.values())
    finished = total - counts.get(StepState.PENDING, 0) - counts.get(StepState.SENDING, 0)
    events.emit(
        conn,
        "push",
        {
            "change_set_id": cs_id,
            "done": finished,
            "total": total,
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
    # One activity entry per item with its counts, then the summary.
    per_item = conn.execute(
        select(ChangeStep.item_id, CatalogItem.identifier, ChangeStep.status, func.count())
        .join(CatalogItem, CatalogItem.id == ChangeStep.item_id)
        .where(ChangeStep.change_set_id == cs_id)
        .group_by(ChangeStep.item_id, CatalogItem.identifier, ChangeStep.status)
    ).all()
    by_item: dict[tuple[int, str], dict[str, int]] = defaultdict(dict)
    for item_id, ident, st, n in per_item:
        by_item[(item_id, ident)][st] = n
    targets = {
        (s.item_id, s.target): s
        for s in conn.execute(
            select(ChangeStep).where(ChangeStep.change_set_id == cs_id, ChangeStep.target == "item")
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
    activity.append(
        conn,
        actor=cs.actor,
        action="push.done",
        subject=f"change set {cs_id}",
        details={"change_set_id": cs_id, "status": status, **counts, "message": message},
    )
    table.dirty.clear()
    table.refresh(conn, [i for i, _ in by_item])
    events.emit(
        conn, "push", {"change_set_id": cs_id, "done": total, "total": total, "status": status}
    )
    events.emit(conn, "rows", {"ids": sorted(i for i, _ in by_item)})
