"""Margins in an approval preview (issue 18.3): what the new costs do to each contract line's
margin.

Prices are read from the mirror and never written: costrecon changes costs only. A line's margin
is ``(price − cost) / price``; a line whose margin after the change falls below the floor
(``[push] margin_floor``, percent) is listed so the person approving sees it before anything is
sent. The monthly margin is Σ quantity × (price − cost) over the lines the change writes, per
currency (prices and costs in different currencies are never compared).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.engine import Connection

from ..db import CatalogItem, Contract, ContractLine
from ..money import SCALE, json_amount, quantize

DEFAULT_FLOOR = Decimal(20)
MAX_LISTED = 200  # lines below the floor named in a preview (the count is always whole)
_CHUNK = 500


class LineStep(Protocol):
    """The part of a planned step this module reads (changes.plan.PlannedStep)."""

    item_id: int
    target: str
    target_psa_id: str
    after: Decimal
    before: Decimal | None
    currency: str


@dataclass(frozen=True, slots=True)
class LineMargin:
    line_psa_id: str
    item: str
    contract: str
    customer: str
    currency: str
    quantity: Decimal
    price: Decimal
    cost_before: Decimal | None
    cost_after: Decimal

    @property
    def margin_after(self) -> Decimal | None:
        return margin_pct(self.price, self.cost_after)

    def to_json(self) -> dict[str, Any]:
        before = margin_pct(self.price, self.cost_before)
        after = self.margin_after
        return {
            "line": self.line_psa_id,
            "item": self.item,
            "contract": self.contract,
            "customer": self.customer,
            "currency": self.currency,
            "quantity": json_amount(self.quantity),
            "price": json_amount(self.price),
            "cost_before": json_amount(self.cost_before),
            "cost_after": json_amount(self.cost_after),
            "margin_before_pct": None if before is None else format(before, "f"),
            "margin_after_pct": None if after is None else format(after, "f"),
        }


def margin_pct(price: Decimal | None, cost: Decimal | None) -> Decimal | None:
    """(price − cost) / price in percent, one decimal; None without a positive price or a cost."""
    if price is None or cost is None or price <= 0:
        return None
    return ((price - cost) * 100 / price).quantize(Decimal("0.1"))


def _line_margins(conn: Connection, steps: list[LineStep]) -> list[LineMargin]:
    by_psa = {s.target_psa_id: s for s in steps}
    out: list[LineMargin] = []
    ids = list(by_psa)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        stmt = (
            select(
                ContractLine.psa_id,
                ContractLine.quantity,
                ContractLine.unit_price,
                ContractLine.currency,
                Contract.name.label("contract"),
                Contract.company,
                CatalogItem.identifier,
            )
            .join(Contract, Contract.psa_id == ContractLine.contract_psa_id)
            .join(CatalogItem, CatalogItem.psa_id == ContractLine.item_psa_id)
            .where(ContractLine.psa_id.in_(chunk), ContractLine.unit_price.is_not(None))
        )
        for r in conn.execute(stmt):
            step = by_psa[r.psa_id]
            if r.currency != step.currency:
                continue  # a price in another currency says nothing about this cost
            out.append(
                LineMargin(
                    line_psa_id=r.psa_id,
                    item=r.identifier,
                    contract=r.contract,
                    customer=r.company,
                    currency=r.currency,
                    quantity=r.quantity,
                    price=r.unit_price,
                    cost_before=step.before,
                    cost_after=step.after,
                )
            )
    return out


def margin_summary(
    conn: Connection, steps: Iterable[LineStep], floor: Decimal | None = None
) -> dict[str, Any]:
    """The preview's ``margin`` part: lines below the floor and the monthly margin per currency."""
    floor = DEFAULT_FLOOR if floor is None else floor
    line_steps = [s for s in steps if s.target == "line"]
    lines = _line_margins(conn, line_steps)
    before: dict[str, Decimal] = defaultdict(Decimal)
    after: dict[str, Decimal] = defaultdict(Decimal)
    low: list[LineMargin] = []
    for ln in lines:
        after[ln.currency] += ln.quantity * (ln.price - ln.cost_after)
        if ln.cost_before is not None:
            before[ln.currency] += ln.quantity * (ln.price - ln.cost_before)
        m = ln.margin_after
        if m is not None and m < floor:
            low.append(ln)
    low.sort(key=lambda ln: (ln.margin_after, ln.customer, ln.line_psa_id))
    monthly = {
        c: {
            "before": json_amount(quantize(before[c])),
            "after": json_amount(quantize(after[c])),
            "change": json_amount(quantize(after[c] - before[c])),
        }
        for c in sorted(after)
    }
    return {
        "floor_pct": format(floor.normalize(), "f"),
        "lines_priced": len(lines),
        "lines_unpriced": len(line_steps) - len(lines),
        "below_floor_count": len(low),
        "below_floor": [ln.to_json() for ln in low[:MAX_LISTED]],
        "monthly": monthly,
    }


def _sum_of(units2: int) -> Decimal:
    """A sum of quantity x amount products (ten-thousandths squared) as money, exactly."""
    return quantize(Decimal(units2).scaleb(-2 * SCALE))


class MarginTally:
    """``margin_summary`` fed from the rows the plan already read (issue 14: no second query
    over 120,000 lines). Sums are kept in integer units, and a ``LineMargin`` is built only for
    the lines listed below the floor, so the cost per line is a few integer operations.

    ``contracts``: each live contract's (name, company), looked up for lines below the floor."""

    def __init__(
        self, floor: Decimal | None = None, contracts: dict[str, tuple[str, str]] | None = None
    ):
        self.floor = DEFAULT_FLOOR if floor is None else floor
        self.contracts = contracts or {}
        self.lines = 0  # line steps seen
        self.priced = 0
        self.before: dict[str, int] = defaultdict(int)
        self.after: dict[str, int] = defaultdict(int)
        self.low: list[tuple[Any, ...]] = []
        self._pct: dict[tuple[int, int], Decimal | None] = {}
        self._dec: dict[int, Decimal] = {}

    def _money(self, units: int) -> Decimal:
        d = self._dec.get(units)
        if d is None:
            d = self._dec[units] = Decimal(units).scaleb(-SCALE).quantize(Decimal(1).scaleb(-SCALE))
        return d

    def add_lines(self, item: str, currency: str, after: int, lines: list[Any]) -> None:
        """The lines one item's new cost ``after`` (integer units) writes, as the plan read them:
        (item_psa_id, psa_id, contract_psa_id, kind, unit_cost, quantity, currency,
        unit_price). Unpriced lines only count."""
        self.lines += len(lines)
        after_sum = before_sum = priced = 0
        pct = self._pct
        floor = self.floor
        for line in lines:
            price = line[7]
            if price is None:
                continue
            priced += 1
            quantity = line[5]
            before = line[4]
            after_sum += quantity * (price - after)
            if before is not None:
                before_sum += quantity * (price - before)
            key = (price, after)
            if key in pct:
                m = pct[key]
            else:
                m = pct[key] = margin_pct(self._money(price), self._money(after))
            if m is not None and m < floor:
                # Kept raw: a floor above most margins lists thousands, and only the first
                # MAX_LISTED become LineMargins.
                contract = line[2]
                customer = self.contracts.get(contract, ("", ""))[1]
                self.low.append(
                    (m, customer, line[1], item, contract, currency, quantity, price, before, after)
                )
        self.priced += priced
        if priced:
            self.after[currency] += after_sum
            self.before[currency] += before_sum

    def summary(self) -> dict[str, Any]:
        low = heapq.nsmallest(MAX_LISTED, self.low, key=_low_order)
        listed = [
            LineMargin(
                line_psa_id=psa_id,
                item=item,
                contract=self.contracts.get(contract, (contract, ""))[0],
                customer=customer,
                currency=currency,
                quantity=self._money(quantity),
                price=self._money(price),
                cost_before=None if before is None else self._money(before),
                cost_after=self._money(after),
            )
            for _, customer, psa_id, item, contract, currency, quantity, price, before, after in low
        ]
        monthly = {
            c: {
                "before": json_amount(_sum_of(self.before[c])),
                "after": json_amount(_sum_of(self.after[c])),
                "change": json_amount(_sum_of(self.after[c] - self.before[c])),
            }
            for c in sorted(self.after)
        }
        return {
            "floor_pct": format(self.floor.normalize(), "f"),
            "lines_priced": self.priced,
            "lines_unpriced": self.lines - self.priced,
            "below_floor_count": len(self.low),
            "below_floor": [ln.to_json() for ln in listed],
            "monthly": monthly,
        }


def _low_order(low: tuple[Any, ...]) -> tuple[Decimal, str, str]:
    return low[0], low[1], low[2]  # margin after, customer, line (as margin_summary sorts)
