"""Planning a change set: which targets an approval (or an undo) writes, and the preview."""

from __future__ import annotations

import logging
import operator
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, select, type_coerce
from sqlalchemy.engine import Connection

from ..db import CatalogItem, ChangeSet, ChangeStep, Contract, ContractLine
from ..money import SCALE, display, json_amount, quantize, to_units
from ..psa.base import (
    RateLimits,
)
from ..psa.http import Measured

if TYPE_CHECKING:
    pass


from ..errors import Conflict, InvalidInput, NotFound
from .margin import MarginTally
from .states import ChangeSetState, StepState

log = logging.getLogger(__name__)
POLICIES = ("all", "matching")
TYPICAL_LATENCY = 0.25  # seconds per PSA call, for the preview's time estimate
# Seconds per journal commit until a push has measured it. A group (a batch of catalogue items;
# one contract's lines) waits for one commit, its ``sending`` marks, on the one writer: its
# outcomes ride in the commit of the next group's marks (changes/push.py), never one of their own.
TYPICAL_COMMIT = 0.015
# About half of a push's journal commits overlap requests in flight (the other groups keep the
# PSA busy meanwhile): measured on the simulators at 25-100 ms (tests/test_push_scale.py).
COMMIT_SHARE = 0.5
PER_ITEM_LISTED = 500  # items detailed in a preview's JSON (the TUI shows the first 200)
# Catalogue-item steps per push group: a multiple of the connectors' guard-read batches
# (ConnectWise 200, Autotask 400 ids per request), so splitting adds no request. The push groups
# by it (changes/push.py) and the estimate counts its groups by it.
ITEM_GROUP = 400


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


@dataclass(slots=True)
class PreviewItem:
    """One approved item in a preview: its cost before and after and its lines."""

    item_id: int
    identifier: str
    name: str
    currency: str
    before: Decimal | None = None
    after: Decimal | None = None
    lines: int = 0
    lines_skipped: int = 0
    lines_already: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "identifier": self.identifier,
            "name": self.name,
            "currency": self.currency,
            # Formatted here: only the items a preview lists are (not 12,000 of them).
            "before": json_amount(self.before),
            "after": json_amount(self.after),
            "lines": self.lines,
            "lines_skipped": self.lines_skipped,
            "lines_already": self.lines_already,
        }


@dataclass(slots=True)
class Preview:
    """What an approval (or an undo) will write, shown before and journaled with the change set."""

    items: int
    item_writes: int
    lines: int
    policy: str
    per_item: list[PreviewItem]
    lines_skipped: int = 0
    lines_already: int = 0
    negotiated_lines: int = 0
    api_calls: int = 0
    estimated_seconds: float | None = None
    estimate_basis: dict[str, Any] = field(default_factory=dict)
    monthly_impact: str | None = None
    impact_by_currency: dict[str, str | None] = field(default_factory=dict)
    currency: str | None = None
    warnings: list[str] = field(default_factory=list)
    undo_of: int | None = None  # an undo's preview names the change set it reverses

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "items": self.items,
            "item_writes": self.item_writes,
            "lines": self.lines,
            "lines_skipped": self.lines_skipped,
            "lines_already": self.lines_already,
            "negotiated_lines": self.negotiated_lines,
            "api_calls": self.api_calls,
            "estimated_seconds": self.estimated_seconds,
            "estimate_basis": self.estimate_basis,
            "monthly_impact": self.monthly_impact,
            "impact_by_currency": self.impact_by_currency,
            "currency": self.currency,
            "policy": self.policy,
            # The first items only: ``items`` counts them all, and a vendor-wide rise of 12,000
            # items made a 2.5 MB preview, stored with the change set and sent on every poll.
            "per_item": [p.to_json() for p in self.per_item[:PER_ITEM_LISTED]],
            "warnings": self.warnings,
        }
        if self.undo_of is not None:
            out["undo_of"] = self.undo_of
        return out


# ------------------------------------------------------------------ planning


CHUNK = 900  # ids per IN (...) list: under SQLite's oldest variable limit


def _chunks(values: list[Any]) -> Any:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _units(col: Any) -> Any:
    # Money read as its stored integer ten-thousandths: the plan compares and sums 120,000 lines
    # in integers and makes a Decimal only for the values a step keeps (once per distinct value).
    return type_coerce(col, BigInteger)


# Above this many items one pass over every live line beats an index lookup per item: on the
# large data set (150,000 lines) the scan reads all of them in a third of the time the IN lists
# take for 12,000 items (benchmarks/approve.py).
SCAN_ABOVE = 2 * CHUNK
LINE_BATCH = 2000  # lines read from the driver at a time in that pass
_LINE_ORDER = operator.itemgetter(2, 1)  # contract, line: the order a push sends an item's lines
_CONTRACT = operator.itemgetter(2)


def _live_lines(
    conn: Connection, item_psa_ids: list[str]
) -> tuple[dict[str, list[Any]], dict[str, tuple[str, str]]]:
    """Live lines of many items at once (one pass over the lines, or one query per chunk of
    items; never one per item), each read once, and the live contracts' (name, company).

    Each line, as the database row (a tuple): (item_psa_id, psa_id, contract_psa_id, kind,
    unit_cost, quantity, currency, unit_price), money in integer units; an item's lines in the
    order the steps are journaled and pushed in: by contract, then line."""
    # The live contracts once (thousands), joined here: a join in SQL looked each contract up
    # again for every one of 120,000 lines.
    contracts: dict[str, tuple[str, str]] = {
        psa_id: (name, company)
        for psa_id, name, company in conn.execute(
            select(Contract.psa_id, Contract.name, Contract.company).where(
                Contract.active.is_(True), Contract.gone.is_(False)
            )
        )
    }
    stmt = select(
        ContractLine.item_psa_id,
        ContractLine.psa_id,
        ContractLine.contract_psa_id,
        ContractLine.kind,
        _units(ContractLine.unit_cost),
        _units(ContractLine.quantity),
        ContractLine.currency,
        _units(ContractLine.unit_price),
    ).where(ContractLine.active.is_(True), ContractLine.gone.is_(False))
    # Each line kept as a new tuple whose repeated values (item, contract, kind, currency, the
    # few hundred distinct amounts) are one shared object each, read a batch at a time: a
    # vendor-wide rise reads 150,000 lines, and the driver's rows (an object per column per row)
    # held all at once were ~85 MB of small objects (now ~45). Freed after the plan, that memory
    # stayed in the daemon's RSS: Python's arenas, pinned by whatever long-lived object was made
    # meanwhile (issue 14).
    wanted = {p: p for p in item_psa_ids}
    known = {c: c for c in contracts}
    strings: dict[Any, Any] = {}
    share = strings.setdefault
    out: dict[str, list[Any]] = defaultdict(list)

    def keep(rows: Any) -> None:
        for row in rows:
            item = wanted.get(row[0])
            contract = known.get(row[2])
            if item is None or contract is None:
                continue
            kind, cost, quantity, currency, price = row[3], row[4], row[5], row[6], row[7]
            out[item].append(
                (
                    item,
                    row[1],
                    contract,
                    share(kind, kind),
                    share(cost, cost),
                    share(quantity, quantity),
                    share(currency, currency),
                    share(price, price),
                )
            )

    if len(wanted) > SCAN_ABOVE:
        # Straight from the driver: SQLAlchemy's result rows cost more than the read itself here
        # (the columns need no conversion: money is selected as its stored integers).
        sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql)
            while rows := cursor.fetchmany(LINE_BATCH):
                keep(rows)
        finally:
            cursor.close()
    else:
        for chunk in _chunks(sorted(wanted)):
            keep(conn.execute(stmt.where(ContractLine.item_psa_id.in_(chunk))))
    for lines in out.values():
        lines.sort(key=_LINE_ORDER)
    return out, contracts


def estimate_seconds(
    api_calls: int,
    limits: RateLimits | None,
    measured: Measured | None,
    *,
    groups: int = 0,
    commit_seconds: float | None = None,
) -> tuple[float | None, dict[str, Any]]:
    """How long ``api_calls`` will take on this PSA, and what the figure rests on.

    A push measured since the daemon started gives its own pace (requests per second, rate
    limits and all); else the latency measured during the last sync, spread over the allowed
    concurrency; else a typical latency, said so."""
    if limits is None:
        return None, {"source": "none"}
    if measured is not None and measured.kind == "push":
        by_rate = api_calls / max(measured.rate, 1e-6)
        seconds = max(by_rate, limits.estimate_seconds(api_calls, 0.0))
        basis = {
            "source": "last push",
            "latency_ms": round(measured.latency * 1000, 1),
            "requests_per_second": round(measured.rate, 1),
        }
    elif measured is not None:
        commit = commit_seconds if commit_seconds is not None else TYPICAL_COMMIT
        seconds = (
            limits.estimate_seconds(api_calls, measured.latency) + groups * commit * COMMIT_SHARE
        )
        basis = {
            "source": "last sync",
            "latency_ms": round(measured.latency * 1000, 1),
            "concurrency": limits.concurrency,
            "commit_ms": round(commit * 1000, 1),
        }
    else:
        seconds = limits.estimate_seconds(api_calls, TYPICAL_LATENCY)
        basis = {"source": "typical", "latency_ms": TYPICAL_LATENCY * 1000}
    return round(seconds, 1), basis


def plan(
    conn: Connection,
    requests: list[Request],
    policy: str,
    limits: RateLimits | None,
    *,
    check_stale: bool = True,
    margin_floor: Decimal | None = None,
    measured: Measured | None = None,
    commit_seconds: float | None = None,
    batched: tuple[bool, bool] = (True, True),
    keep_steps: bool = True,
) -> tuple[dict[str, Any], list[PlannedStep]]:
    """The preview and the steps. ``keep_steps=False`` (a dry run): the steps are counted, not
    made (120,000 objects no one reads), and the list returned is empty."""
    if policy not in POLICIES:
        raise InvalidInput(
            "bad_field", f"policy must be one of {', '.join(POLICIES)}, got {policy!r}."
        )
    if not requests:
        raise InvalidInput("missing_field", "No items to approve.")
    seen_ids: set[int] = set()
    steps: list[PlannedStep] = []
    per_item: list[PreviewItem] = []
    totals = {
        "lines": 0,
        "lines_skipped": 0,
        "lines_already": 0,
        "negotiated_lines": 0,
        "item_writes": 0,
    }
    for req in requests:
        if req.item_id in seen_ids:
            raise InvalidInput("bad_field", f"Item {req.item_id} is listed twice.")
        seen_ids.add(req.item_id)
    catalogue: dict[int, Any] = {}
    for chunk in _chunks([r.item_id for r in requests]):
        for rec in conn.execute(
            select(
                CatalogItem.id,
                CatalogItem.psa_id,
                CatalogItem.identifier,
                CatalogItem.name,
                CatalogItem.cost,
                CatalogItem.currency,
                CatalogItem.gone,
            ).where(CatalogItem.id.in_(chunk))
        ):
            catalogue[rec.id] = rec
    lines_of, contract_names = _live_lines(
        conn, [catalogue[r.item_id].psa_id for r in requests if r.item_id in catalogue]
    )
    money: dict[int, Decimal] = {}  # units -> Decimal, made once per distinct value
    impact_units: dict[str, int] = defaultdict(int)
    margins = MarginTally(margin_floor, contract_names)
    contracts: set[str] = set()  # the contracts the line steps touch (the push's groups)
    step_currencies: set[str] = set()
    matching = policy == "matching"
    for req in requests:
        item = catalogue.get(req.item_id)
        if item is None or item.gone:
            raise NotFound(
                "not_found",
                f"Item {req.item_id} is not in the catalogue mirror; sync and try again.",
            )
        if req.cost < 0:
            raise InvalidInput(
                "bad_field", f"The new cost of {item.identifier} must not be negative."
            )
        new = quantize(req.cost)
        if check_stale and req.seen_catalog_cost != item.cost:
            raise Conflict(
                "stale",
                f"The catalogue cost of {item.identifier} is now {display(item.cost)} "
                f"{item.currency}, not the {display(req.seen_catalog_cost)} you saw; review the "
                "row and approve again.",
                {"item_id": item.id, "current": json_amount(item.cost)},
            )
        old = item.cost
        old_u = None if old is None else to_units(old)
        new_u = to_units(new)
        currency = item.currency
        if old != new:
            if keep_steps:
                steps.append(
                    PlannedStep(item.id, "item", item.psa_id, None, None, old, new, currency)
                )
            step_currencies.add(currency)
            totals["item_writes"] += 1
        # Rows: (item_psa_id, psa_id, contract, kind, unit_cost, quantity, currency, unit_price).
        written: list[Any] = []
        n_skipped = n_already = negotiated = 0
        delta = 0  # the monthly cost change: quantity x cost change, in units squared
        for line in lines_of.get(item.psa_id, ()):
            cost_u = line[4]
            if cost_u != old_u:
                negotiated += 1
            if cost_u == new_u:
                n_already += 1
            elif (matching and cost_u != old_u) or line[6] != currency:
                n_skipped += 1  # by policy; or never write a cost across currencies
            else:
                written.append(line)
                if cost_u is not None:
                    delta += line[5] * (new_u - cost_u)
        if written:
            step_currencies.add(currency)
            contracts.update(map(_CONTRACT, written))
            impact_units[currency] += delta
            margins.add_lines(item.identifier, currency, new_u, written)
            if keep_steps:
                for line in written:
                    cost_u = line[4]
                    if cost_u is None:
                        before = None
                    else:
                        before = money.get(cost_u)
                        if before is None:
                            before = money[cost_u] = Decimal(cost_u).scaleb(-SCALE)
                    steps.append(
                        PlannedStep(
                            item.id, "line", line[1], line[2], line[3], before, new, currency
                        )
                    )
        totals["negotiated_lines"] += negotiated
        totals["lines"] += len(written)
        totals["lines_skipped"] += n_skipped
        totals["lines_already"] += n_already
        per_item.append(
            PreviewItem(
                item.id,
                item.identifier,
                item.name,
                currency,
                old,
                new,
                len(written),
                n_skipped,
                n_already,
            )
        )
    impact: dict[str, Decimal] = defaultdict(
        Decimal, {c: Decimal(u).scaleb(-2 * SCALE) for c, u in impact_units.items()}
    )
    api_calls = _call_count(totals["item_writes"], totals["lines"], len(contracts), limits, batched)
    groups = len(contracts) + _item_groups(totals["item_writes"])
    seconds, basis = estimate_seconds(
        api_calls, limits, measured, groups=groups, commit_seconds=commit_seconds
    )
    currencies = sorted(impact) or sorted(step_currencies) or ["USD"]
    preview = Preview(
        items=len(requests),
        item_writes=totals["item_writes"],
        lines=totals["lines"],
        lines_skipped=totals["lines_skipped"],
        lines_already=totals["lines_already"],
        negotiated_lines=totals["negotiated_lines"],
        api_calls=api_calls,
        estimated_seconds=seconds,
        estimate_basis=basis,
        monthly_impact=json_amount(quantize(impact[currencies[0]]))
        if len(currencies) == 1
        else None,
        impact_by_currency={c: json_amount(quantize(v)) for c, v in impact.items()},
        currency=currencies[0] if len(currencies) == 1 else None,
        policy=policy,
        per_item=per_item,
        warnings=_warnings(totals, policy, limits),
    )
    return {**preview.to_json(), "margin": margins.summary()}, steps


def _groups(steps: list[PlannedStep]) -> int:
    """The push's units of work: the catalogue items in groups of ITEM_GROUP, then each
    contract's lines."""
    items = sum(1 for s in steps if s.target == "item")
    contracts = len({s.contract_psa_id for s in steps if s.target == "line"})
    return contracts + _item_groups(items)


def _item_groups(items: int) -> int:
    return -(-items // ITEM_GROUP)


def _api_calls(
    steps: list[PlannedStep], limits: RateLimits | None, batched: tuple[bool, bool] = (True, True)
) -> int:
    """Requests the push will make. ``batched``: whether the connector reads many items / many
    lines of a contract in one request for the guard (ConnectWise), or one by one (the default)."""
    items = sum(1 for s in steps if s.target == "item")
    contracts = len({s.contract_psa_id for s in steps if s.target == "line"})
    return _call_count(items, len(steps) - items, contracts, limits, batched)


def _call_count(
    items: int,
    lines: int,
    contracts: int,
    limits: RateLimits | None,
    batched: tuple[bool, bool] = (True, True),
) -> int:
    if limits is None:
        return 0
    item_reads = (1 if items else 0) if batched[0] else items
    line_reads = contracts if batched[1] else lines
    return (
        items * limits.item_write_calls + lines * limits.line_write_calls + item_reads + line_reads
    )


def _warnings(totals: dict[str, int], policy: str, limits: RateLimits | None) -> list[str]:
    out = []
    if policy == "all" and totals["negotiated_lines"]:
        out.append(
            f"{totals['negotiated_lines']} contract line(s) carry a cost that differs from the "
            "catalogue "
            "(negotiated); policy 'all' overwrites them — choose 'matching' to leave them alone."
        )
    if limits is None:
        out.append(
            "No PSA is configured: nothing can be pushed until [psa] is set in the config file."
        )
    return out


def undo_plan(
    conn: Connection,
    cs_id: int,
    limits: RateLimits | None = None,
    *,
    measured: Measured | None = None,
    commit_seconds: float | None = None,
    batched: tuple[bool, bool] = (True, True),
) -> tuple[dict[str, Any], list[PlannedStep]]:
    cs = conn.execute(select(ChangeSet).where(ChangeSet.id == cs_id)).first()
    if cs is None:
        raise NotFound("not_found", f"There is no change set {cs_id}.")
    if cs.status in (ChangeSetState.PENDING, ChangeSetState.PUSHING):
        raise Conflict(
            "busy", f"Change set {cs_id} is still being pushed; undo it when it has finished."
        )
    prior = conn.execute(
        select(ChangeSet.id).where(
            ChangeSet.undo_of == cs_id, ChangeSet.status != ChangeSetState.FAILED
        )
    ).scalar()
    if prior:
        raise Conflict(
            "already_undone", f"Change set {cs_id} was already undone by change set {prior}."
        )
    done = list(
        conn.execute(
            select(ChangeStep, CatalogItem.identifier, CatalogItem.name.label("item_name"))
            .join(CatalogItem, CatalogItem.id == ChangeStep.item_id)
            .where(ChangeStep.change_set_id == cs_id, ChangeStep.status == StepState.DONE)
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
        raise Conflict(
            "nothing_to_undo", f"Change set {cs_id} changed nothing that can be restored."
        )
    per: dict[int, PreviewItem] = {}
    for s in done:
        p = per.setdefault(s.item_id, PreviewItem(s.item_id, s.identifier, s.item_name, s.currency))
        if s.target == "item":
            p.before, p.after = s.after, s.before
        else:
            p.lines += 1
    api_calls = _api_calls(steps, limits, batched) if limits is not None else len(steps)
    seconds, basis = estimate_seconds(
        api_calls, limits, measured, groups=_groups(steps), commit_seconds=commit_seconds
    )
    preview = Preview(
        items=len(per),
        item_writes=sum(1 for s in steps if s.target == "item"),
        lines=sum(1 for s in steps if s.target == "line"),
        api_calls=api_calls,
        estimated_seconds=seconds,
        estimate_basis=basis,
        policy=cs.policy,
        per_item=list(per.values()),
        undo_of=cs_id,
    )
    return preview.to_json(), steps
