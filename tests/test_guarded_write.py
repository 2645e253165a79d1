"""A write whose outcome is unknown is never re-sent blind (issue 13 item 2; DESIGN.md §3).

A PSA gateway that applies a write and then answers 504 leaves the client not knowing whether the
cost changed. Re-sending it overwrote a value a person set in between and marked the line done.
The push now re-reads the target and applies the same guard as before the first write: at *after*
done, at *before* write again, anything else a conflict that keeps the person's value.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from costrecon_daemon.psa.guarded import guarded_write

from .psa_fixtures import (
    PSAS,
    approve,
    live_lines,
    msp_tenant,
    psa_daemon,
    rows_by_identifier,
    set_vendor_cost,
    wait_change_set,
)
from .test_connector_contract import connected, mixed_tenant, pick_lines, served

every_psa = pytest.mark.parametrize("psa", PSAS)

PERSON = Decimal("9.76")


@every_psa
def test_a_line_a_person_edits_after_an_unacknowledged_write_is_a_conflict_not_overwritten(
    tmp_path, psa
):
    ds = msp_tenant(contracts=4)
    with psa_daemon(tmp_path, ds, psa) as (sim, d):
        row = set_vendor_cost(d, rows_by_identifier(d)[sim.identifier(105)], "1.40")
        lines = [ln.id for ln in live_lines(ds, 105)]
        line_base = sim.write_counts("line", lines)
        item_base = sim.write_count("item", 105)
        edited: set[int] = set()

        def person_edits_the_line_just_written() -> None:
            # Runs on the simulator's loop between applying a write and answering 504, so the
            # edit is certainly in before the client can look again.
            for line_id in lines:
                if line_id not in edited and sim._line_cost(line_id) == Decimal("1.40"):
                    sim._set_line_cost(line_id, PERSON)
                    edited.add(line_id)

        sim.on_applied_error(person_edits_the_line_just_written)
        cs = wait_change_set(d, approve(d, [row]).json()["change_set"]["id"], timeout=120)
        sim.on_applied_error(None)

        assert edited == set(lines)  # every line write was applied, then answered 504
        assert cs["status"] == "partial", cs["counts"]
        # The catalogue item's write landed too (no one touched it): the read finds the new
        # cost, so it is done, written once.
        assert sim.item_cost(105) == Decimal("1.40")
        assert sim.write_count("item", 105) - item_base == 1
        # Every line keeps the person's value, is reported as a conflict naming it, written once.
        assert set(sim.line_costs(lines).values()) == {PERSON}
        steps = {s["target_psa_id"]: s for s in cs["steps"] if s["target"] == "line"}
        for line_id in lines:
            step = steps[sim.line_psa_id(line_id)]
            assert step["status"] == "conflict", step
            assert "9.76" in step["message"], step
        after = sim.write_counts("line", lines)
        assert all(after[i] - line_base[i] == 1 for i in lines), (line_base, after)
        assert rows_by_identifier(d)[sim.identifier(105)]["state"] == "conflict"
        assert d.get("/v1/activity", params={"action": "push.line.conflict"})["entries"]


# ---- the guard itself, one connector against its simulator in-process --------------------------


def _unacknowledged(sim, then) -> None:
    """The next write is applied and answered 504; ``then`` runs in between (on the sim's loop)."""

    def once() -> None:
        sim.sim.knobs.applied_error_rate = 0.0  # only this one write (already on the sim's loop)
        then()

    sim.call(
        lambda: (
            setattr(sim.sim.knobs, "applied_error_rate", 1.0),
            setattr(sim.sim.knobs, "on_applied_error", lambda request: once()),
        )
    )


@every_psa
async def test_a_write_that_landed_is_found_by_reading_and_not_sent_again(psa):
    ds = mixed_tenant()
    with served(psa, ds) as sim:
        async with connected(sim) as conn:
            line_id = pick_lines(sim, ds)[0]
            ln = next(x for x in ds.lines if x.id == line_id)
            new = ln.unit_cost + Decimal("0.25")
            _unacknowledged(sim, lambda: None)
            out = await guarded_write(conn, sim.line_key(line_id), ln.unit_cost, new, backoff=0)
            assert (out.status, out.value, out.writes) == ("done", new, 1)
            assert sim.write_count("line", line_id) == 1


@every_psa
async def test_a_write_that_did_not_land_is_sent_again_after_reading_the_old_value(psa):
    ds = mixed_tenant()
    with served(psa, ds) as sim:
        async with connected(sim) as conn:
            item = next(it for it in ds.items if it.active and it.recurring)
            new = item.cost + Decimal("1.00")
            # The 504 came back and the PSA rolled the change back: the record holds *before*.
            _unacknowledged(sim, lambda: sim._set_item_cost(item.id, item.cost))
            out = await guarded_write(conn, sim.item_psa_id(item.id), item.cost, new, backoff=0)
            assert (out.status, out.value, out.writes) == ("done", new, 2)
            assert sim.item_cost(item.id) == new


@every_psa
async def test_a_value_someone_else_set_meanwhile_is_a_conflict_and_kept(psa):
    ds = mixed_tenant()
    with served(psa, ds) as sim:
        async with connected(sim) as conn:
            line_id = pick_lines(sim, ds)[0]
            ln = next(x for x in ds.lines if x.id == line_id)
            _unacknowledged(sim, lambda: sim._set_line_cost(line_id, PERSON))
            out = await guarded_write(
                conn, sim.line_key(line_id), ln.unit_cost, ln.unit_cost + 1, backoff=0
            )
            assert (out.status, out.value, out.writes) == ("conflict", PERSON, 1)
            assert "9.76" in (out.message or "")
            assert sim.line_cost(line_id) == PERSON
            assert sim.write_count("line", line_id) == 1


async def test_a_write_that_never_lands_is_tried_a_bounded_number_of_times():
    ds = mixed_tenant()
    with served("connectwise", ds) as sim:
        async with connected(sim) as conn:
            item = next(it for it in ds.items if it.active)

            def rolled_back(request) -> None:
                sim._set_item_cost(item.id, item.cost)

            sim.call(
                lambda: (
                    setattr(sim.sim.knobs, "applied_error_rate", 1.0),
                    setattr(sim.sim.knobs, "on_applied_error", rolled_back),
                )
            )
            out = await guarded_write(
                conn, sim.item_psa_id(item.id), item.cost, item.cost + 1, attempts=3, backoff=0
            )
            assert (out.status, out.value, out.writes) == ("failed", item.cost, 3)
            assert "3 attempt(s)" in (out.message or "")
            assert sim.write_count("item", item.id) == 3
