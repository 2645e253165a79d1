"""Issue 14: the plan reads each contract line once (the margin from the same rows, money in
integer units) and the journal inserts steps through the DBAPI cursor. These check that the fast
paths say and store exactly what the per-line paths did, on a store mirrored from the simulator."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select

from costrecon_daemon.changes import Request, journal, plan
from costrecon_daemon.changes.margin import margin_summary
from costrecon_daemon.costs import CostTable
from costrecon_daemon.db import ChangeStep


def _rows(store: Any) -> list[Any]:
    table = CostTable()
    store.write_sync(table.reload)
    rows = [table.get([i])[0] for i in table.view(sort="identifier")]
    return [r for r in rows if r.lines and r.catalog_cost and r.currency == "USD"]


def _requests(rows: list[Any]) -> list[Request]:
    # A rise of a third: enough to push some lines under a 30% margin floor.
    return [
        Request(r.id, (r.catalog_cost * Decimal("1.33")).quantize(Decimal("0.01")), r.catalog_cost)
        for r in rows
    ]


async def test_the_preview_margin_equals_the_margin_of_the_planned_lines_read_one_by_one(
    synced_store,
):
    reqs = _requests(_rows(synced_store))
    floor = Decimal(30)

    def both(conn: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        preview, steps = plan(conn, reqs, "all", None, margin_floor=floor)
        return preview["margin"], margin_summary(conn, steps, floor)

    fast, per_line = synced_store.read_sync(both)
    assert fast == per_line
    assert fast["lines_priced"] > 0 and fast["below_floor_count"] > 0


async def test_journaled_steps_read_back_exactly_as_planned(synced_store):
    reqs = _requests(_rows(synced_store))

    def create(conn: Any) -> tuple[list[Any], int]:
        preview, steps = plan(conn, reqs, "all", None)
        cs_id = journal(
            conn, actor="tech", kind="apply", policy="all", preview=preview, steps=steps
        )
        return steps, cs_id

    steps, cs_id = synced_store.write_sync(create)
    stored = synced_store.read_sync(
        lambda c: c.execute(
            select(ChangeStep).where(ChangeStep.change_set_id == cs_id).order_by(ChangeStep.id)
        ).all()
    )
    assert [
        (s.item_id, s.target, s.target_psa_id, s.contract_psa_id, s.line_kind, s.before, s.after)
        for s in stored
    ] == [
        (s.item_id, s.target, s.target_psa_id, s.contract_psa_id, s.line_kind, s.before, s.after)
        for s in steps
    ]
    assert {(s.status, s.attempts, s.currency) for s in stored} == {("pending", 0, "USD")}
    assert all(s.updated_at.tzinfo is not None for s in stored)
