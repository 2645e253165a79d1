"""MSP-size change sets in process (issue 14; issue 20 items 4 and 8): row states moved step by
step and equal to what the journal says, idempotent approvals, the paged steps of a change set,
one activity summary for a big set, honest counts and estimates.

A real ConnectWise simulator on loopback, the real connector, a real SQLite store migrated from
empty; the daemon's parts wired as app.py wires them, without a daemon process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from costrecon_daemon.changes import Approvals, PushWorker, Request, change_set_json, list_steps
from costrecon_daemon.costs import CostTable, set_manual
from costrecon_daemon.costs.table import load_rows
from costrecon_daemon.db import ActivityEntry, ChangeSet
from costrecon_daemon.mirror.sync import run_sync
from costrecon_daemon.sim.connectwise import RunningSim
from costrecon_daemon.sim.dataset import Dataset
from costrecon_daemon.store import Store

from .harness import migrated
from .psa_fixtures import follow_recording, msp_tenant, psa_daemon
from .sims import connectwise

D = Decimal


@dataclass
class Rig:
    store: Store
    table: CostTable
    worker: PushWorker
    approvals: Approvals
    sim: RunningSim
    ds: Dataset

    def rows(self) -> dict[str, Any]:
        ids = self.table.view()
        return {r.identifier: r for r in self.table.get(ids)}

    async def vendor_costs(self, rise: Decimal, only: set[str] | None = None) -> list[Request]:
        """A vendor cost `rise` above the catalogue on every (or each named) item; the requests
        a person approving them all would send."""
        reqs = []
        for r in self.rows().values():
            if r.catalog_cost is None or (only is not None and r.identifier not in only):
                continue
            new = (r.catalog_cost * rise).quantize(D("0.01"))
            await self.store.write(
                lambda c, r=r, new=new: set_manual(
                    c, self.table, item_id=r.id, cost=new, actor="tech", note=None, currency=None
                )
            )
            reqs.append(Request(r.id, new, r.catalog_cost))
        return reqs

    async def push(self, cs_id: int) -> dict[str, Any]:
        await self.worker.push(cs_id)
        return await self.store.read(lambda c: change_set_json(c, cs_id))


@asynccontextmanager
async def rig(tmp_path: Path, contracts: int = 12, extra_items: int = 0) -> AsyncIterator[Rig]:
    url = f"sqlite:///{tmp_path / 'costrecon.db'}"
    migrated(url)
    store = Store(url)
    ds = msp_tenant(contracts=contracts, extra_items=extra_items)
    try:
        async with connectwise(ds) as (running, connector):
            await run_sync(store, connector, actor="costrecond", full=True)
            table = CostTable()
            await store.write(table.reload)
            worker = PushWorker(store, connector, table, asyncio.Event())
            approvals = Approvals(store, table, worker, connector, "all")
            yield Rig(store, table, worker, approvals, running, ds)
    finally:
        store.close()


def _from_journal(rig: Rig) -> dict[int, Any]:
    return rig.store.read_sync(lambda c: load_rows(c))


async def test_row_states_follow_the_push_step_by_step_and_equal_a_full_rescan(tmp_path):
    async with rig(tmp_path) as r:
        reqs = await r.vendor_costs(D("1.05"))
        cs = await r.approvals.approve(reqs, "matching", "tech")
        assert {row.state for row in r.rows().values()} == {"pending"}
        done = await r.push(cs["id"])
        assert done["status"] == "done"
        # What the incremental counts left in the table is what the journal says, row by row.
        scanned = _from_journal(r)
        for row in r.table.get(r.table.view()):
            again = scanned[row.id]
            assert (row.state, row.state_detail, row.catalog_cost) == (
                again.state,
                again.state_detail,
                again.catalog_cost,
            ), row.identifier
            assert row.state == "done"
            assert row.catalog_cost == row.vendor_cost == row.pushed


async def test_counts_are_recorded_and_equal_the_preview_with_the_lines_skipped_by_policy(
    tmp_path,
):
    async with rig(tmp_path) as r:
        reqs = await r.vendor_costs(D("1.05"))
        preview = await r.approvals.preview(reqs, "matching")
        assert preview["lines_skipped"] > 0  # negotiated lines left alone under 'matching'
        cs = await r.approvals.approve(reqs, "matching", "tech")
        done = await r.push(cs["id"])
        s = done["summary"]
        assert s["skipped"] == preview["lines_skipped"]
        assert s["changed"] == preview["lines"] + preview["item_writes"] == done["total"]
        assert (s["conflicts"], s["failed"], s["differences"]) == (0, 0, [])


async def test_a_conflict_is_counted_served_by_the_steps_page_and_said_why_counts_differ(
    tmp_path,
):
    async with rig(tmp_path, extra_items=60) as r:
        reqs = await r.vendor_costs(D("1.05"))
        cs = await r.approvals.approve(reqs, "all", "tech")
        # A person edits one line in the PSA after the approval: it must be a conflict, kept.
        line = r.ds.lines[3]
        r.sim.sim.set_line_cost(line.id, D("9.76"))
        done = await r.push(cs["id"])
        assert done["status"] == "partial"
        assert done["summary"]["conflicts"] == 1
        assert any("1 conflict" in d for d in done["summary"]["differences"])
        page = r.store.read_sync(lambda c: list_steps(c, cs["id"], statuses=["conflict"]))
        assert page["total"] == 1
        step = page["steps"][0]
        assert (step["target"], step["status"], step["value"]) == ("line", "conflict", "9.7600")
        assert step["message"] and step["before"] and step["after"]
        assert r.sim.sim.line_cost(line.id) == D("9.76")
        everything = r.store.read_sync(lambda c: list_steps(c, cs["id"], offset=10, limit=25))
        assert everything["total"] == done["total"] and len(everything["steps"]) == 25


async def test_a_big_change_set_writes_one_approval_and_one_summary_to_the_activity_log(
    tmp_path,
):
    async with rig(tmp_path, extra_items=60) as r:
        reqs = await r.vendor_costs(D("1.05"))
        before = r.store.read_sync(
            lambda c: c.execute(select(ActivityEntry.id).order_by(ActivityEntry.id.desc())).scalar()
        )
        cs = await r.approvals.approve(reqs, "all", "tech")
        r.sim.sim.set_line_cost(r.ds.lines[3].id, D("9.76"))
        done = await r.push(cs["id"])
        assert done["total"] > 500 and done["summary"]["conflicts"] == 1
        actions = r.store.read_sync(
            lambda c: (
                c.execute(select(ActivityEntry.action).where(ActivityEntry.id > before))
                .scalars()
                .all()
            )
        )
        assert actions == ["approve", "push.done"]


async def test_a_retried_approval_with_the_same_request_id_returns_the_same_change_set(tmp_path):
    async with rig(tmp_path) as r:
        reqs = await r.vendor_costs(D("1.05"))
        first = await r.approvals.approve(reqs, "all", "tech", "req-7f3a")
        again = await r.approvals.approve(reqs, "all", "tech", "req-7f3a")
        assert again["id"] == first["id"]
        n = r.store.read_sync(lambda c: len(c.execute(select(ChangeSet.id)).all()))
        assert n == 1
        assert (await r.approvals.by_request("tech", "req-7f3a"))["id"] == first["id"]
        assert await r.approvals.by_request("tech", "never-sent") is None
        # Another user's request id is theirs: it does not reveal this change set.
        assert await r.approvals.by_request("someone", "req-7f3a") is None


async def test_a_row_is_done_only_while_catalogue_vendor_and_pushed_cost_agree(tmp_path):
    async with rig(tmp_path) as r:
        reqs = await r.vendor_costs(D("1.05"), only={"DNS-FILTER"})
        cs = await r.approvals.approve(reqs, "all", "tech")
        await r.push(cs["id"])
        assert r.rows()["DNS-FILTER"].state == "done"
        row = r.rows()["DNS-FILTER"]
        await r.store.write(
            lambda c: set_manual(
                c, r.table, item_id=row.id, cost=D("1.99"), actor="tech", note=None, currency=None
            )
        )
        after = r.rows()["DNS-FILTER"]
        assert after.state == ""
        assert "changed since" in after.state_detail["note"]


@pytest.mark.parametrize("psa", ["connectwise", "syncro"])
def test_the_estimate_comes_from_the_measured_pace(tmp_path, psa):
    """Issue 20 item 8, through a daemon process: sync at 100 ms per request, preview, push; the
    estimate rests on the 100 ms the sync measured, and the undo's on the pace the push measured.

    How close an estimate lands to the wall-clock time is a benchmark figure
    (benchmarks/push.py prints estimate against actual), not asserted here: on a loaded machine
    the push is slower than any pace measured a minute earlier (CI failed on exactly that)."""
    ds = msp_tenant(contracts=24)
    # Syncro's connector defaults to 3 connections (ConnectWise's to 8) and writes a line in 3
    # requests: set to 8 (psa.syncro.concurrency, a setting people have), its push takes seconds
    # instead of half a minute, and the estimate, which spreads the calls over the concurrency
    # the connector declares, is checked the same way.
    with psa_daemon(tmp_path, ds, psa, concurrency=8) as (sim, d):
        sim.latency(0.1)
        time.sleep(1)  # the sync at 100 ms is measured apart from the first one
        before = d.get("/v1/status")["psa"]["last_sync"]
        d.request("POST", "/v1/sync", json={"full": True}).raise_for_status()
        d.wait_for(
            lambda: (s := d.get("/v1/status")["psa"])["last_sync"] != before and not s["syncing"],
            120,
            "the sync at 100 ms",
        )
        rows = d.get("/v1/costs")["ids"]
        with d.http() as c:
            rows = c.post("/v1/costs/rows", json={"ids": rows}).json()["rows"]
            items = []
            for row in rows:
                if not row["catalog_cost"] or not row["lines"]:
                    continue
                new = str((D(row["catalog_cost"]) * D("1.05")).quantize(D("0.01")))
                c.put(f"/v1/costs/{row['id']}/manual", json={"cost": new}).raise_for_status()
                items.append(
                    {"item_id": row["id"], "cost": new, "seen_catalog_cost": row["catalog_cost"]}
                )
            body = {"items": items, "policy": "all"}
            preview = c.post("/v1/change-sets", json={**body, "dry_run": True}).json()["preview"]
            assert preview["estimate_basis"]["source"] == "last sync"
            _seen.append(preview["estimate_basis"])
            _seen.append(preview["api_calls"])
            cs = follow_recording(d, c.post("/v1/change-sets", json=body)).json()["change_set"]
            cs = _wait_finished(d, cs["id"])
            assert cs["status"] == "done", (
                cs["summary"],
                d.get(
                    f"/v1/change-sets/{cs['id']}/steps",
                    params={"status": "conflict,failed,denied", "limit": 3},
                ),
            )
            assert cs["estimated_seconds"] == preview["estimated_seconds"]
            c.post(f"/v1/change-sets/{cs['id']}/undo", json={"dry_run": True})
            _seen.append(
                c.post(f"/v1/change-sets/{cs['id']}/undo", json={"dry_run": True}).json()[
                    "preview"
                ]["estimate_basis"]
            )
            # The sync's pace: the injected 100 ms is a floor for the measured latency, and the
            # estimate spreads the calls over the PSA's concurrency at that latency.
            basis = preview["estimate_basis"]
            assert basis["latency_ms"] >= 100, basis
            floor = preview["api_calls"] * 0.1 / basis["concurrency"]
            assert cs["estimated_seconds"] >= 0.9 * floor, (cs["estimated_seconds"], floor, basis)
            assert cs["actual_seconds"] >= 0.9 * floor, (cs["actual_seconds"], floor)
            undo_preview = c.post(
                f"/v1/change-sets/{cs['id']}/undo", json={"dry_run": True}
            ).json()["preview"]
            _seen.append(undo_preview["estimate_basis"])
            assert undo_preview["estimate_basis"]["source"] == "last push"
            # ...whose pace is the one this push had: its calls over its own recorded time,
            # both measured in the same push, so the same whatever the machine's load.
            rate = undo_preview["estimate_basis"]["requests_per_second"]
            _within_30_percent(rate * cs["actual_seconds"], preview["api_calls"])
            undo = follow_recording(d, c.post(f"/v1/change-sets/{cs['id']}/undo", json={})).json()[
                "change_set"
            ]
            undo = _wait_finished(d, undo["id"])
            # The undo records the estimate its preview gave, made from that pace, and its own
            # actual time (the next estimate's basis).
            assert undo["status"] == "done" and undo["actual_seconds"] > 0
            assert undo["estimated_seconds"] == undo_preview["estimated_seconds"]
            assert undo_preview["estimated_seconds"] >= 0.7 * undo_preview["api_calls"] / rate


def _wait_finished(d: Any, cs_id: int) -> dict[str, Any]:
    # One connection, a poll every half second: the simulator runs in this process, and a busy
    # poller would slow it down and distort the time being measured.
    deadline = time.monotonic() + 300
    with d.http() as c:
        while time.monotonic() < deadline:
            cs = c.get(f"/v1/change-sets/{cs_id}", params={"steps": 0}).json()["change_set"]
            if cs["status"] not in ("pending", "pushing"):
                return cs
            time.sleep(0.5)
    raise AssertionError(f"change set {cs_id} did not finish")


_seen: list[Any] = []


def _within_30_percent(estimate: float, actual: float) -> None:
    assert actual and 0.7 * actual <= estimate <= 1.3 * actual, (estimate, actual, _seen[-4:])
