"""Unit tier: the journal state machine and the cost table on a temporary SQLite store mirrored
from the ConnectWise simulator — plan, journal, record, finish and resume, called directly (no
daemon, no HTTP). The same paths through a daemon process are in test_reconcile.py."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import update

from costrecon_daemon import activity
from costrecon_daemon.changes import (
    ChangeSetState,
    PushWorker,
    Request,
    StepState,
    change_set_json,
    journal,
    plan,
    undo_plan,
)
from costrecon_daemon.changes.journal import (
    finish_change_set,
    mark_sending,
    next_open_change_set,
    open_steps,
    record_outcomes,
    start_change_set,
)
from costrecon_daemon.costs import CostTable
from costrecon_daemon.costs.manual import revert_manual, set_manual
from costrecon_daemon.db import CatalogItem, ContractLine
from costrecon_daemon.errors import Conflict, InvalidInput
from costrecon_daemon.psa.base import PSAPermissionError

from .sims import connectwise_connector


def _table(store: Any) -> CostTable:
    table = CostTable()
    store.write_sync(table.reload)
    return table


def _item_with_lines(table: CostTable, min_lines: int = 2) -> Any:
    rows = [table.get([i])[0] for i in table.view(sort="identifier")]
    return next(r for r in rows if r.lines >= min_lines and r.catalog_cost and r.currency == "USD")


def _approve(store: Any, table: CostTable, row: Any, cost: str, policy: str = "all") -> int:
    req = [Request(row.id, Decimal(cost), row.catalog_cost)]

    def create(conn: Any) -> int:
        preview, steps = plan(conn, req, policy, None)
        return journal(
            conn, actor="tech", kind="apply", policy=policy, preview=preview, steps=steps
        )

    return store.write_sync(create)


def _steps(store: Any, cs_id: int) -> list[Any]:
    return store.read_sync(lambda c: open_steps(c, cs_id))


# ------------------------------------------------------------------ plan


async def test_plan_writes_the_item_and_each_of_its_lines_and_the_preview_counts_them(
    synced_store,
):
    table = _table(synced_store)
    row = _item_with_lines(table)
    preview, steps = synced_store.read_sync(
        lambda c: plan(c, [Request(row.id, Decimal("9.5"), row.catalog_cost)], "all", None)
    )
    assert [s.target for s in steps].count("item") == 1
    lines = [s for s in steps if s.target == "line"]
    assert len(lines) == preview["lines"] == row.lines
    assert all(s.after == Decimal("9.5") for s in steps)
    assert preview["items"] == 1 and preview["per_item"][0]["identifier"] == row.identifier
    assert preview["per_item"][0]["after"] == "9.5000"


async def test_plan_refuses_a_stale_cost_a_bad_policy_and_an_empty_request(synced_store):
    table = _table(synced_store)
    row = _item_with_lines(table)
    stale = [Request(row.id, Decimal("9.5"), row.catalog_cost + 1)]
    with pytest.raises(Conflict) as exc:
        synced_store.read_sync(lambda c: plan(c, stale, "all", None))
    assert exc.value.code == "stale"
    ok = [Request(row.id, Decimal("9.5"), row.catalog_cost)]
    with pytest.raises(InvalidInput):
        synced_store.read_sync(lambda c: plan(c, ok, "some", None))
    with pytest.raises(InvalidInput):
        synced_store.read_sync(lambda c: plan(c, [], "all", None))


async def test_matching_policy_leaves_lines_whose_cost_differs_from_the_catalogue(
    synced_store, cw_sim
):
    table = _table(synced_store)
    row = _item_with_lines(table)
    # a negotiated line: its cost no longer equals the catalogue cost
    _, steps = synced_store.read_sync(
        lambda c: plan(c, [Request(row.id, Decimal("9.5"), row.catalog_cost)], "all", None)
    )
    negotiated = next(s for s in steps if s.target == "line")
    synced_store.write_sync(
        lambda c: c.execute(
            update(ContractLine)
            .where(ContractLine.psa_id == negotiated.target_psa_id)
            .values(unit_cost=row.catalog_cost + Decimal("0.5"))
        )
    )
    preview, steps = synced_store.read_sync(
        lambda c: plan(c, [Request(row.id, Decimal("9.5"), row.catalog_cost)], "matching", None)
    )
    assert negotiated.target_psa_id not in {s.target_psa_id for s in steps}
    assert preview["lines_skipped"] >= 1


# ------------------------------------------------------------------ journal → record → finish


async def test_journal_then_every_step_done_finishes_done_and_the_mirror_follows(synced_store):
    table = _table(synced_store)
    row = _item_with_lines(table)
    cs_id = _approve(synced_store, table, row, "9.5")
    cs = synced_store.read_sync(lambda c: change_set_json(c, cs_id, with_steps=True))
    assert cs["status"] == ChangeSetState.PENDING and cs["actor"] == "tech"
    assert {s["status"] for s in cs["steps"]} == {StepState.PENDING}
    assert synced_store.read_sync(next_open_change_set) == cs_id

    assert synced_store.write_sync(start_change_set, cs_id) == ("tech", {StepState.PENDING: 3})
    steps = _steps(synced_store, cs_id)
    outcomes = [(s, StepState.DONE, s.after, None) for s in steps]
    synced_store.write_sync(lambda c: record_outcomes(c, cs_id, "tech", outcomes, table))
    synced_store.write_sync(finish_change_set, cs_id, None, table)

    cs = synced_store.read_sync(lambda c: change_set_json(c, cs_id))
    assert cs["status"] == ChangeSetState.DONE and cs["finished_at"]
    assert table.get([row.id])[0].catalog_cost == Decimal("9.5")  # the mirror took the write
    assert synced_store.read_sync(next_open_change_set) is None
    actions = [e["action"] for e in synced_store.read_sync(lambda c: activity.query(c, limit=20))]
    assert "approve" in actions and "push.item" in actions and "push.done" in actions


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [(StepState.CONFLICT, ChangeSetState.PARTIAL), (StepState.FAILED, ChangeSetState.PARTIAL)],
)
async def test_a_conflict_or_failure_on_one_line_finishes_partial_and_is_logged(
    synced_store, outcome, expected
):
    table = _table(synced_store)
    row = _item_with_lines(table)
    cs_id = _approve(synced_store, table, row, "9.5")
    steps = _steps(synced_store, cs_id)
    bad = next(s for s in steps if s.target == "line")
    found = row.catalog_cost + Decimal("1") if outcome == StepState.CONFLICT else None
    outcomes = [
        (s, outcome, found, "left unchanged") if s is bad else (s, StepState.DONE, s.after, None)
        for s in steps
    ]
    synced_store.write_sync(lambda c: record_outcomes(c, cs_id, "tech", outcomes, table))
    synced_store.write_sync(finish_change_set, cs_id, None, table)
    cs = synced_store.read_sync(lambda c: change_set_json(c, cs_id))
    assert cs["status"] == expected
    assert cs["counts"][outcome] == 1
    logged = synced_store.read_sync(lambda c: activity.query(c, limit=50))
    assert any(e["action"] == f"push.line.{outcome}" for e in logged)


async def test_nothing_done_finishes_failed_and_a_denial_cancels_what_was_not_sent(synced_store):
    table = _table(synced_store)
    row = _item_with_lines(table)
    cs_id = _approve(synced_store, table, row, "9.5")
    steps = _steps(synced_store, cs_id)
    synced_store.write_sync(
        lambda c: record_outcomes(
            c, cs_id, "tech", [(steps[0], StepState.FAILED, None, "500")], table
        )
    )
    synced_store.write_sync(
        finish_change_set,
        cs_id,
        PSAPermissionError("no edit right", setting="Product Catalog: Edit"),
        table,
    )
    cs = synced_store.read_sync(lambda c: change_set_json(c, cs_id, with_steps=True))
    assert cs["status"] == ChangeSetState.DENIED
    assert {s["status"] for s in cs["steps"][1:]} == {StepState.CANCELLED}

    # an item whose steps all failed (no denial) finishes failed
    other = next(
        r
        for r in (table.get([i])[0] for i in table.view())
        if r.id != row.id and r.catalog_cost and r.currency == "USD"
    )
    cs2 = _approve(synced_store, table, other, "1.25")
    failed = [(s, StepState.FAILED, None, "500") for s in _steps(synced_store, cs2)]
    synced_store.write_sync(lambda c: record_outcomes(c, cs2, "tech", failed, table))
    synced_store.write_sync(finish_change_set, cs2, None, table)
    assert synced_store.read_sync(lambda c: change_set_json(c, cs2))["status"] == "failed"


async def test_an_item_with_open_steps_cannot_be_approved_again(synced_store):
    table = _table(synced_store)
    row = _item_with_lines(table)
    first = _approve(synced_store, table, row, "9.5")
    with pytest.raises(Conflict) as exc:
        _approve(synced_store, table, row, "9.75")
    assert exc.value.code == "busy" and exc.value.data == {"change_set_id": first}


# ------------------------------------------------------------------ resume (push worker)


async def test_resume_after_a_crash_finishes_only_what_is_not_done_and_never_writes_twice(
    synced_store, cw_sim
):
    """A crash left one line ``sending`` after its write landed, and the rest pending: the push
    worker finds that line at *after* (no second write) and writes the others once each."""
    table = _table(synced_store)
    row = _item_with_lines(table)
    was = row.catalog_cost  # the table's row follows the push in place
    cs_id = _approve(synced_store, table, row, "9.5")
    steps = _steps(synced_store, cs_id)
    landed = next(s for s in steps if s.target == "line")
    cw_sim.sim.set_line_cost(int(landed.target_psa_id), Decimal("9.5"))  # the write that landed
    synced_store.write_sync(lambda c: mark_sending(c, [landed.id], [], cs_id, "tech", table))
    synced_store.write_sync(start_change_set, cs_id)  # the crashed run had started it

    connector = connectwise_connector(cw_sim)
    try:
        await connector.connect()
        worker = PushWorker(synced_store, connector, table, asyncio.Event())
        assert await synced_store.read(next_open_change_set) == cs_id
        await worker.push(cs_id)
    finally:
        await connector.aclose()

    cs = synced_store.read_sync(lambda c: change_set_json(c, cs_id, with_steps=True))
    assert cs["status"] == ChangeSetState.DONE, cs
    assert cw_sim.sim.patch_count("addition", int(landed.target_psa_id)) == 0
    for s in steps:
        if s is not landed and s.target == "line":
            assert cw_sim.sim.patch_count("addition", int(s.target_psa_id)) == 1
            assert cw_sim.sim.line_cost(int(s.target_psa_id)) == Decimal("9.5")
    assert cw_sim.sim.item_cost(int(row.psa_id)) == Decimal("9.5")

    # and its undo plans the way back to each target's before
    preview, undo_steps = synced_store.read_sync(lambda c: undo_plan(c, cs_id))
    assert {s.after for s in undo_steps} == {was}
    assert preview["per_item"][0]["identifier"] == row.identifier


# ------------------------------------------------------------------ cost table + manual costs


async def test_cost_table_filters_sorts_and_follows_a_manual_cost_and_its_revert(synced_store):
    table = _table(synced_store)
    ids = table.view()
    assert table.total() == len(ids) > 0
    rows = table.get(ids)
    assert [r.identifier.casefold() for r in rows] == sorted(r.identifier.casefold() for r in rows)
    assert table.view(descending=True) == list(reversed(ids))
    row = _item_with_lines(table)
    assert table.view(query=row.identifier.lower()) == [row.id]
    assert table.view(changed=True) == []  # no vendor costs yet

    new = synced_store.write_sync(
        lambda c: set_manual(
            c, table, item_id=row.id, cost=row.catalog_cost * 2, actor="tech", note="quote 42"
        )
    )
    assert new.vendor_cost == row.catalog_cost * 2 and new.vendor_source["kind"] == "manual"
    assert new.change == row.catalog_cost and new.change_pct == Decimal("100.00")
    assert table.view(changed=True) == [row.id]
    assert table.view(sort="vendor_cost")[0] == row.id  # the only vendor cost sorts first
    as_json = table.get([row.id])[0].to_json()
    assert as_json["vendor_cost"] == str((row.catalog_cost * 2).quantize(Decimal("0.0001")))
    assert as_json["change_pct"] == "100.00"

    synced_store.write_sync(lambda c: revert_manual(c, table, item_id=row.id, actor="tech"))
    assert table.get([row.id])[0].vendor_cost is None and table.view(changed=True) == []
    logged = [e["action"] for e in synced_store.read_sync(lambda c: activity.query(c, limit=10))]
    assert "cost.manual.set" in logged and "cost.manual.revert" in logged


async def test_cost_table_reload_drops_gone_items_and_refresh_updates_one_row(synced_store):
    table = _table(synced_store)
    row = _item_with_lines(table)
    synced_store.write_sync(
        lambda c: c.execute(
            update(CatalogItem).where(CatalogItem.id == row.id).values(cost=Decimal("77"))
        )
    )
    assert table.get([row.id])[0].catalog_cost == row.catalog_cost  # not yet refreshed
    synced_store.read_sync(lambda c: table.refresh(c, [row.id]))
    assert table.get([row.id])[0].catalog_cost == Decimal("77")
    synced_store.write_sync(
        lambda c: c.execute(update(CatalogItem).where(CatalogItem.id == row.id).values(gone=True))
    )
    synced_store.read_sync(table.reload)
    assert table.get([row.id]) == [] and row.id not in table.view()
