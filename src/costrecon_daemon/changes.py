"""Approval and push: journaled change sets applied exactly once (DESIGN.md §3 "Approval").

Approving writes a change set and one step per target — the catalogue item and each contract
line — with before/after values and the actor, *before* anything is sent. The push worker then
works through open steps group by group (all item steps; each contract's lines):

1. read the targets' current values from the PSA (one batched read per group where the
   connector can, so the guard costs a fraction of a request per line);
2. a target already at *after* is done without a write; one at *before* is marked ``sending``
   in the journal and written; anything else is a **conflict**, reported and never overwritten;
3. each write is verified by the value the PSA returns, and the outcome and the mirror are
   updated in one transaction.

A crash at any point leaves steps ``pending`` or ``sending``; the next start re-reads them
(step 1) and so finishes only what is not done: a write that landed before the crash is found
at *after* and not sent again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection

from . import activity, events
from .db import CatalogItem, ChangeSet, ChangeStep, Contract, ContractLine, utcnow
from .money import display, json_amount, quantize
from .psa.base import (
    Connector,
    LineKey,
    PSAError,
    PSAPermissionError,
    RateLimits,
)
from .psa.guarded import guarded_write

if TYPE_CHECKING:
    from .recon import CostTable
    from .store import Store

log = logging.getLogger(__name__)
OPEN = ("pending", "sending")
POLICIES = ("all", "matching")
TYPICAL_LATENCY = 0.25  # seconds per PSA call, for the preview's time estimate


class ChangeError(Exception):
    def __init__(self, status: int, code: str, message: str, data: dict[str, Any] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.data = status, code, message, data


@dataclass(frozen=True, slots=True)
class Request:
    item_id: int
    cost: Decimal
    seen_catalog_cost: Decimal | None


@dataclass(slots=True)
class PlannedStep:
    item_id: int
    target: str
    target_psa_id: str
    contract_psa_id: str | None
    line_kind: str | None
    before: Decimal | None
    after: Decimal
    currency: str


# ------------------------------------------------------------------ planning


def _live_lines(conn: Connection, item_psa_id: str) -> list[Any]:
    stmt = (
        select(
            ContractLine.psa_id,
            ContractLine.contract_psa_id,
            ContractLine.kind,
            ContractLine.unit_cost,
            ContractLine.quantity,
            ContractLine.currency,
        )
        .join(Contract, Contract.psa_id == ContractLine.contract_psa_id)
        .where(
            ContractLine.item_psa_id == item_psa_id,
            ContractLine.active.is_(True),
            ContractLine.gone.is_(False),
            Contract.active.is_(True),
            Contract.gone.is_(False),
        )
        .order_by(ContractLine.contract_psa_id, ContractLine.psa_id)
    )
    return list(conn.execute(stmt))


def plan(
    conn: Connection,
    requests: list[Request],
    policy: str,
    limits: RateLimits | None,
    *,
    check_stale: bool = True,
) -> tuple[dict[str, Any], list[PlannedStep]]:
    if policy not in POLICIES:
        raise ChangeError(
            400, "bad_field", f"policy must be one of {', '.join(POLICIES)}, got {policy!r}."
        )
    if not requests:
        raise ChangeError(400, "missing_field", "No items to approve.")
    seen_ids: set[int] = set()
    steps: list[PlannedStep] = []
    per_item: list[dict[str, Any]] = []
    impact: dict[str, Decimal] = defaultdict(Decimal)
    totals = {
        "lines": 0,
        "lines_skipped": 0,
        "lines_already": 0,
        "negotiated_lines": 0,
        "item_writes": 0,
    }
    for req in requests:
        if req.item_id in seen_ids:
            raise ChangeError(400, "bad_field", f"Item {req.item_id} is listed twice.")
        seen_ids.add(req.item_id)
        item = conn.execute(select(CatalogItem).where(CatalogItem.id == req.item_id)).first()
        if item is None or item.gone:
            raise ChangeError(
                404,
                "not_found",
                f"Item {req.item_id} is not in the catalogue mirror; sync and try again.",
            )
        if req.cost < 0:
            raise ChangeError(
                400, "bad_field", f"The new cost of {item.identifier} must not be negative."
            )
        new = quantize(req.cost)
        if check_stale and req.seen_catalog_cost != item.cost:
            raise ChangeError(
                409,
                "stale",
                f"The catalogue cost of {item.identifier} is now {display(item.cost)} {item.currency}, "
                f"not the {display(req.seen_catalog_cost)} you saw; review the row and approve again.",
                {"item_id": item.id, "current": json_amount(item.cost)},
            )
        old = item.cost
        if old != new:
            steps.append(
                PlannedStep(item.id, "item", item.psa_id, None, None, old, new, item.currency)
            )
            totals["item_writes"] += 1
        n_lines = n_skipped = n_already = 0
        for line in _live_lines(conn, item.psa_id):
            if line.unit_cost != old:
                totals["negotiated_lines"] += 1
            if line.unit_cost == new:
                n_already += 1
                continue
            if policy == "matching" and line.unit_cost != old:
                n_skipped += 1
                continue
            if line.currency != item.currency:
                n_skipped += 1  # never write a cost across currencies
                continue
            steps.append(
                PlannedStep(
                    item.id,
                    "line",
                    line.psa_id,
                    line.contract_psa_id,
                    line.kind,
                    line.unit_cost,
                    new,
                    item.currency,
                )
            )
            n_lines += 1
            if line.unit_cost is not None:
                impact[item.currency] += line.quantity * (new - line.unit_cost)
        totals["lines"] += n_lines
        totals["lines_skipped"] += n_skipped
        totals["lines_already"] += n_already
        per_item.append(
            {
                "item_id": item.id,
                "identifier": item.identifier,
                "name": item.name,
                "currency": item.currency,
                "before": json_amount(old),
                "after": json_amount(new),
                "lines": n_lines,
                "lines_skipped": n_skipped,
                "lines_already": n_already,
            }
        )
    api_calls = _api_calls(steps, limits)
    currencies = sorted(impact) or sorted({s.currency for s in steps}) or ["USD"]
    preview = {
        "items": len(requests),
        "item_writes": totals["item_writes"],
        "lines": totals["lines"],
        "lines_skipped": totals["lines_skipped"],
        "lines_already": totals["lines_already"],
        "negotiated_lines": totals["negotiated_lines"],
        "api_calls": api_calls,
        "estimated_seconds": round(limits.estimate_seconds(api_calls, TYPICAL_LATENCY), 1)
        if limits
        else None,
        "monthly_impact": json_amount(quantize(impact[currencies[0]]))
        if len(currencies) == 1
        else None,
        "impact_by_currency": {c: json_amount(quantize(v)) for c, v in impact.items()},
        "currency": currencies[0] if len(currencies) == 1 else None,
        "policy": policy,
        "per_item": per_item,
        "warnings": _warnings(totals, policy, limits),
    }
    return preview, steps


def _api_calls(steps: list[PlannedStep], limits: RateLimits | None) -> int:
    if limits is None:
        return 0
    items = sum(1 for s in steps if s.target == "item")
    lines = len(steps) - items
    contracts = len({s.contract_psa_id for s in steps if s.target == "line"})
    # guard reads: one batched read for the items and one per contract touched
    return (
        items * limits.item_write_calls
        + lines * limits.line_write_calls
        + (1 if items else 0)
        + contracts
    )


def _warnings(totals: dict[str, int], policy: str, limits: RateLimits | None) -> list[str]:
    out = []
    if policy == "all" and totals["negotiated_lines"]:
        out.append(
            f"{totals['negotiated_lines']} contract line(s) carry a cost that differs from the catalogue "
            "(negotiated); policy 'all' overwrites them — choose 'matching' to leave them alone."
        )
    if limits is None:
        out.append(
            "No PSA is configured: nothing can be pushed until [psa] is set in the config file."
        )
    return out


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
        raise ChangeError(
            409,
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
            status="pending" if steps else "done",
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
                    "status": "pending",
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
            "status": "pending" if steps else "done",
        },
    )
    return cs_id


def change_set_json(conn: Connection, cs_id: int, *, with_steps: bool = False) -> dict[str, Any]:
    cs = conn.execute(select(ChangeSet).where(ChangeSet.id == cs_id)).first()
    if cs is None:
        raise ChangeError(404, "not_found", f"There is no change set {cs_id}.")
    counts = dict(
        conn.execute(
            select(ChangeStep.status, func.count())
            .where(ChangeStep.change_set_id == cs_id)
            .group_by(ChangeStep.status)
        ).all()
    )
    out: dict[str, Any] = {
        "id": cs.id,
        "created_at": _iso(cs.created_at),
        "actor": cs.actor,
        "kind": cs.kind,
        "undo_of": cs.undo_of,
        "policy": cs.policy,
        "status": cs.status,
        "preview": cs.preview,
        "finished_at": _iso(cs.finished_at),
        "message": cs.message,
        "counts": {
            k: counts.get(k, 0)
            for k in ("pending", "sending", "done", "conflict", "failed", "denied", "cancelled")
        },
        "total": sum(counts.values()),
    }
    if with_steps:
        rows = conn.execute(
            select(ChangeStep, CatalogItem.identifier)
            .join(CatalogItem, CatalogItem.id == ChangeStep.item_id)
            .where(ChangeStep.change_set_id == cs_id)
            .order_by(ChangeStep.id)
        )
        out["steps"] = [
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


def list_change_sets(conn: Connection, limit: int = 50) -> list[dict[str, Any]]:
    ids = (
        conn.execute(select(ChangeSet.id).order_by(ChangeSet.id.desc()).limit(limit))
        .scalars()
        .all()
    )
    return [change_set_json(conn, i) for i in ids]


def _iso(t: Any) -> str | None:
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def undo_plan(conn: Connection, cs_id: int) -> tuple[dict[str, Any], list[PlannedStep]]:
    cs = conn.execute(select(ChangeSet).where(ChangeSet.id == cs_id)).first()
    if cs is None:
        raise ChangeError(404, "not_found", f"There is no change set {cs_id}.")
    if cs.status in ("pending", "pushing"):
        raise ChangeError(
            409, "busy", f"Change set {cs_id} is still being pushed; undo it when it has finished."
        )
    prior = conn.execute(
        select(ChangeSet.id).where(ChangeSet.undo_of == cs_id, ChangeSet.status != "failed")
    ).scalar()
    if prior:
        raise ChangeError(
            409, "already_undone", f"Change set {cs_id} was already undone by change set {prior}."
        )
    done = list(
        conn.execute(
            select(ChangeStep, CatalogItem.identifier, CatalogItem.name.label("item_name"))
            .join(CatalogItem, CatalogItem.id == ChangeStep.item_id)
            .where(ChangeStep.change_set_id == cs_id, ChangeStep.status == "done")
            .order_by(ChangeStep.id)
        )
    )
    steps = [
        PlannedStep(
            s.item_id,
            s.target,
            s.target_psa_id,
            s.contract_psa_id,
            s.line_kind,
            s.after,
            s.before,
            s.currency,
        )
        for s in done
        if s.before is not None
    ]
    if not steps:
        raise ChangeError(
            409, "nothing_to_undo", f"Change set {cs_id} changed nothing that can be restored."
        )
    per: dict[int, dict[str, Any]] = {}
    for s in done:
        p = per.setdefault(
            s.item_id,
            {
                "item_id": s.item_id,
                "identifier": s.identifier,
                "name": s.item_name,
                "currency": s.currency,
                "before": None,
                "after": None,
                "lines": 0,
                "lines_skipped": 0,
                "lines_already": 0,
            },
        )
        if s.target == "item":
            p["before"], p["after"] = json_amount(s.after), json_amount(s.before)
        else:
            p["lines"] += 1
    preview = {
        "items": len(per),
        "item_writes": sum(1 for s in steps if s.target == "item"),
        "lines": sum(1 for s in steps if s.target == "line"),
        "lines_skipped": 0,
        "lines_already": 0,
        "negotiated_lines": 0,
        "api_calls": len(steps),
        "estimated_seconds": None,
        "monthly_impact": None,
        "impact_by_currency": {},
        "currency": None,
        "policy": cs.policy,
        "per_item": list(per.values()),
        "warnings": [],
        "undo_of": cs_id,
    }
    return preview, steps


# ------------------------------------------------------------------ push worker


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


class PushWorker:
    """Applies open change sets one at a time, groups of targets concurrently."""

    def __init__(
        self,
        store: Store,
        connector: Connector,
        table: CostTable,
        stopping: asyncio.Event,
        *,
        group_concurrency: int | None = None,
    ):
        self.store = store
        self.connector = connector
        self.table = table
        self.stopping = stopping
        self.wakeup = asyncio.Event()
        self.current: int | None = None
        self._group_concurrency = group_concurrency or max(2, connector.limits.concurrency * 2)

    async def run(self) -> None:
        while not self.stopping.is_set():
            cs_id = await self.store.read(_next_open_change_set)
            if cs_id is None:
                self.wakeup.clear()
                try:
                    await asyncio.wait_for(self.wakeup.wait(), 30)
                except TimeoutError:
                    pass
                continue
            self.current = cs_id
            try:
                await self.push(cs_id)
            finally:
                self.current = None

    async def push(self, cs_id: int) -> None:
        actor = await self.store.write(_start_change_set, cs_id)
        steps = await self.store.read(_open_steps, cs_id)
        groups: dict[str, list[StepRow]] = defaultdict(list)
        for s in steps:
            groups["items" if s.target == "item" else f"c:{s.contract_psa_id}"].append(s)
        denied: list[PSAPermissionError] = []
        gate = asyncio.Semaphore(self._group_concurrency)

        async def run_group(group: list[StepRow]) -> None:
            async with gate:
                if denied or self.stopping.is_set():
                    return
                await self._push_group(cs_id, actor, group, denied)

        progress = asyncio.ensure_future(self._report_progress(cs_id))
        try:
            await asyncio.gather(*(run_group(g) for g in groups.values()))
        finally:
            progress.cancel()
        if self.stopping.is_set() and not denied:
            return  # resumed at next start; open steps stay open in the journal
        await self.store.write(_finish_change_set, cs_id, denied[0] if denied else None, self.table)

    async def _report_progress(self, cs_id: int, every: float = 0.5) -> None:
        while True:
            await asyncio.sleep(every)
            await self.store.write(_progress, cs_id, self.table)

    async def _push_group(
        self, cs_id: int, actor: str, group: list[StepRow], denied: list[PSAPermissionError]
    ) -> None:
        try:
            current = await self._read_current(group)
        except PSAPermissionError as exc:
            denied.append(exc)
            return
        except PSAError as exc:
            await self.store.write(
                _record,
                cs_id,
                actor,
                [
                    (s, "failed", None, f"could not read the current cost: {exc.message}")
                    for s in group
                ],
                self.table,
            )
            return
        outcomes: list[tuple[StepRow, str, Decimal | None, str | None]] = []
        to_write: list[StepRow] = []
        for s in group:
            value = current.get(s.target_psa_id, _MISSING)
            if value is _MISSING:
                outcomes.append((s, "failed", None, "the target no longer exists in the PSA"))
            elif value is None:
                outcomes.append(
                    (s, "failed", None, "the PSA does not show this cost to the API user")
                )
            elif value == s.after:
                outcomes.append((s, "done", value, None))
            elif value == s.before:
                to_write.append(s)
            else:
                outcomes.append(
                    (
                        s,
                        "conflict",
                        value,
                        f"the PSA holds {display(value)}, neither the expected {display(s.before)} "
                        f"nor the new {display(s.after)}; left unchanged",
                    )
                )
        # Journal before sending: these steps may have reached the PSA if we crash from here on.
        await self.store.write(
            _mark_sending, [s.id for s in to_write], outcomes, cs_id, actor, self.table
        )
        results = await asyncio.gather(*(self._write(s) for s in to_write))
        final: list[tuple[StepRow, str, Decimal | None, str | None]] = []
        for s, (status, value, message, exc) in zip(to_write, results, strict=True):
            if isinstance(exc, PSAPermissionError):
                denied.append(exc)
            final.append((s, status, value, message))
        if final:
            await self.store.write(_record, cs_id, actor, final, self.table)

    async def _read_current(self, group: list[StepRow]) -> dict[str, Decimal | None]:
        c = self.connector
        if group[0].target == "item":
            return await c.read_item_costs([s.target_psa_id for s in group])
        return await c.read_line_costs(
            [LineKey(s.target_psa_id, s.contract_psa_id or "", s.line_kind or "") for s in group]
        )

    async def _write(self, s: StepRow) -> tuple[str, Decimal | None, str | None, Exception | None]:
        # guarded_write re-reads the target after any write whose outcome is unknown and applies
        # the same guard as _push_group: a write is never re-sent blind (issue 13).
        target = (
            s.target_psa_id
            if s.target == "item"
            else LineKey(s.target_psa_id, s.contract_psa_id or "", s.line_kind or "")
        )
        try:
            out = await guarded_write(self.connector, target, s.before, s.after)
        except PSAPermissionError as exc:
            return "denied", None, exc.message, exc
        except PSAError as exc:  # PSAWriteNotApplied, a refused value...
            return "failed", None, exc.message, exc
        return out.status, out.value, out.message, None


class _Missing:
    pass


_MISSING: Any = _Missing()


async def _maybe(coro: Any) -> Any:
    from .psa.base import PSANotFound

    try:
        return await coro
    except PSANotFound:
        return _MISSING


def _next_open_change_set(conn: Connection) -> int | None:
    return conn.execute(
        select(ChangeSet.id)
        .where(ChangeSet.status.in_(("pending", "pushing")))
        .order_by(ChangeSet.id)
        .limit(1)
    ).scalar()


def _start_change_set(conn: Connection, cs_id: int) -> str:
    cs = conn.execute(select(ChangeSet).where(ChangeSet.id == cs_id)).one()
    if cs.status == "pending":
        conn.execute(update(ChangeSet).where(ChangeSet.id == cs_id).values(status="pushing"))
    return cs.actor


def _open_steps(conn: Connection, cs_id: int) -> list[StepRow]:
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


def _mark_sending(
    conn: Connection, ids: list[int], outcomes: list[Any], cs_id: int, actor: str, table: CostTable
) -> None:
    if ids:
        now = utcnow()
        for start in range(0, len(ids), 500):
            conn.execute(
                update(ChangeStep)
                .where(ChangeStep.id.in_(ids[start : start + 500]))
                .values(status="sending", attempts=ChangeStep.attempts + 1, updated_at=now)
            )
    if outcomes:
        _record(conn, cs_id, actor, outcomes, table)


def _record(
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
        if value is not None and status in ("done", "conflict")
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
        if status in ("conflict", "failed", "denied"):
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


def _progress(conn: Connection, cs_id: int, table: CostTable) -> None:
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
    finished = total - counts.get("pending", 0) - counts.get("sending", 0)
    events.emit(
        conn,
        "push",
        {"change_set_id": cs_id, "done": finished, "total": total, "status": "pushing"},
    )


def _finish_change_set(
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
                status="cancelled",
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
        status = "denied"
    elif counts.get("done", 0) == total:
        status = "done"
    elif counts.get("done", 0):
        status = "partial"
    else:
        status = "failed"
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
