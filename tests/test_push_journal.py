"""The push's journal writes after the throughput work of issue 14 (items 1 and 5): open steps
loaded compactly still carry exactly what was journaled; the DBAPI-level outcome writes record
each step once and move the mirror; a push stopped between a write and the commit of its outcome
resumes without sending anything twice.

Real ConnectWise simulator on loopback, real connector, real SQLite store (the rig of
test_push_scale.py).
"""

from __future__ import annotations

import asyncio
import importlib
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from costrecon_daemon.changes import PushWorker
from costrecon_daemon.db import CatalogItem, ChangeStep, ContractLine

from .test_push_scale import rig

D = Decimal
journal = importlib.import_module("costrecon_daemon.changes.journal")


def _steps(r: Any, cs_id: int) -> list[Any]:
    return r.store.read_sync(
        lambda c: c.execute(
            select(ChangeStep).where(ChangeStep.change_set_id == cs_id).order_by(ChangeStep.id)
        ).all()
    )


async def test_open_steps_carry_exactly_what_was_journaled(tmp_path):
    async with rig(tmp_path, extra_items=10) as r:
        reqs = await r.vendor_costs(D("1.05"))
        cs = await r.approvals.approve(reqs, "all", "tech")
        loaded = r.store.read_sync(journal.open_steps, cs["id"])
        rows = _steps(r, cs["id"])
        assert len(loaded) == len(rows) > 50
        assert {s.target for s in loaded} == {"item", "line"}
        for got, row in zip(loaded, rows, strict=True):
            assert (
                got.id,
                got.item_id,
                got.target,
                got.target_psa_id,
                got.contract_psa_id,
                got.line_kind,
                got.before,
                got.after,
                got.status,
            ) == (
                row.id,
                row.item_id,
                row.target,
                row.target_psa_id,
                row.contract_psa_id,
                row.line_kind,
                row.before,
                row.after,
                row.status,
            )
            assert isinstance(got.after, Decimal)
        # What the push worker holds (ids and group keys) and loads a few groups at a time.
        keys = r.store.read_sync(journal.open_step_keys, cs["id"])
        assert keys == [(s.id, s.target, s.contract_psa_id) for s in loaded]
        some = [k[0] for k in keys[::3]]
        by_id = r.store.read_sync(journal.steps_by_id, some)
        assert list(by_id) == some
        assert all(by_id[s.id] == s for s in loaded if s.id in by_id)


async def test_a_push_records_each_step_once_and_the_mirror_holds_what_the_psa_holds(tmp_path):
    async with rig(tmp_path) as r:
        reqs = await r.vendor_costs(D("1.05"))
        cs = await r.approvals.approve(reqs, "all", "tech")
        done = await r.push(cs["id"])
        assert done["status"] == "done"
        steps = _steps(r, cs["id"])
        assert {(s.status, s.attempts) for s in steps} == {("done", 1)}
        assert all(s.value == s.after and s.message is None for s in steps)
        lines = r.store.read_sync(
            lambda c: dict(c.execute(select(ContractLine.psa_id, ContractLine.unit_cost)).all())
        )
        items = r.store.read_sync(
            lambda c: dict(c.execute(select(CatalogItem.psa_id, CatalogItem.cost)).all())
        )
        for s in steps:
            mirror = lines if s.target == "line" else items
            assert mirror[s.target_psa_id] == s.after
            if s.target == "line":
                assert r.sim.sim.line_cost(int(s.target_psa_id)) == s.after


async def test_a_push_stopped_after_some_writes_resumes_without_sending_any_twice(tmp_path):
    async with rig(tmp_path) as r:
        reqs = await r.vendor_costs(D("1.05"))
        cs = await r.approvals.approve(reqs, "all", "tech")
        connector = r.worker.connector
        real_write = connector.write_line_cost
        writes = 0

        async def write_then_stop(line: Any, cost: Decimal) -> Decimal:
            # Stop the worker after the tenth write has landed, while other groups still have
            # outcomes queued for a commit (the shutdown a restart would cause).
            nonlocal writes
            got = await real_write(line, cost)
            writes += 1
            if writes == 10:
                stopping.set()
            return got

        connector.write_line_cost = write_then_stop  # type: ignore[method-assign]
        stopping = asyncio.Event()
        # Two lanes, so most groups are still queued when it stops.
        first_run = PushWorker(r.store, connector, r.table, stopping, group_concurrency=2)
        await first_run.push(cs["id"])
        connector.write_line_cost = real_write  # type: ignore[method-assign]
        first = {s.id: s.status for s in _steps(r, cs["id"])}
        assert "pending" in first.values()  # stopped part-way
        sent = r.sim.sim.patch_count()
        assert sent >= 10
        # Every line the PSA received is journaled as at least sending: none is left pending.
        for s in _steps(r, cs["id"]):
            if s.target == "line" and r.sim.sim.patch_count("addition", int(s.target_psa_id)):
                assert s.status in ("sending", "done"), s.target_psa_id

        again = PushWorker(r.store, connector, r.table, asyncio.Event())
        await again.push(cs["id"])
        steps = _steps(r, cs["id"])
        assert {s.status for s in steps} == {"done"}
        for s in steps:
            kind = "addition" if s.target == "line" else "catalog"
            assert r.sim.sim.patch_count(kind, int(s.target_psa_id)) == 1, s.target_psa_id
