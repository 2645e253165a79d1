"""The daemon's memory during a big push (issue 14 item 5), measured by what it holds, not by time.

- A price file's import raises the writer connection's SQLite page cache for its transaction;
  the writer lives as long as the daemon, so the cache must be back to its bound afterwards, or
  the next push's journal writes fill it (64 MB).
- A push holds a bounded number of steps in full whatever the change set's size, and none once
  it is finished: counted as live ``StepRow`` objects while it runs.
- The preview's estimate counts the journal commits the push waits for: one per group.
- The cost table reloads a slice at a time (no second copy of it beside the first), and what it
  holds afterwards is what a whole load makes.

Real SQLite files, the real importer, a real ConnectWise simulator on loopback and the daemon's
parts wired as app.py wires them (tests/test_push_scale.py's rig).
"""

from __future__ import annotations

import gc
import importlib
from collections import Counter
from decimal import Decimal
from typing import Any

from sqlalchemy import event, insert, update

from costrecon_daemon.changes.journal import StepRow
from costrecon_daemon.changes.plan import COMMIT_SHARE, ITEM_GROUP, estimate_seconds, plan
from costrecon_daemon.costs.table import load_rows
from costrecon_daemon.db import CACHE_KIB_WRITER, CatalogItem, ManualCost, new_id
from costrecon_daemon.intake import Options, import_file
from costrecon_daemon.psa.http import Measured
from costrecon_daemon.store import Store, migrate

from . import pricefiles as pf
from .test_push_scale import rig

D = Decimal
# The module, not the function of the same name that costrecon_daemon.changes exports.
push_module = importlib.import_module("costrecon_daemon.changes.push")
table_module = importlib.import_module("costrecon_daemon.costs.table")


def _cache_kib(store: Store) -> int:
    return store.write_sync(lambda c: c.exec_driver_sql("PRAGMA cache_size").scalar())


def test_the_writer_page_cache_is_back_to_its_bound_after_an_import(tmp_path):
    url = f"sqlite:///{tmp_path / 'costrecon.db'}"
    migrate(url)
    store = Store(url)
    raised: list[str] = []

    @event.listens_for(store.writer_engine, "before_cursor_execute")
    def _seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "cache_size=" in statement.replace(" ", ""):
            raised.append(statement)

    try:
        assert _cache_kib(store) == -CACHE_KIB_WRITER
        lines = [pf.PriceLine(f"SKU-{n:05d}", None, f"Part {n}", D("10.00")) for n in range(3000)]
        path = pf.write_generic_csv(tmp_path, lines, name="acme-prices.csv")
        record = import_file(store, path, Options(), None, vendor="Acme")
        assert record["status"] == "imported", record
        # The import did raise it for its own transaction (else this test proves nothing)...
        assert raised, "the import no longer raises the writer's page cache"
        # ...and the writer connection the push will use next is back to the bound.
        assert _cache_kib(store) == -CACHE_KIB_WRITER
    finally:
        store.close()


async def test_a_push_holds_a_bounded_number_of_steps_and_none_once_finished(tmp_path, monkeypatch):
    # Small loads, so a modest change set is many loads long: what is held must not grow with
    # the steps finished.
    monkeypatch.setattr(push_module, "LOAD_STEPS", 40)
    # What earlier tests in this worker left alive is set aside (gc.freeze, for the worker's
    # life): each count walks only what this test made, not the whole worker's heap (thirty
    # counts of that were most of this test's CPU in a full run).
    gc.collect()
    gc.freeze()
    async with rig(tmp_path, contracts=40) as r:
        r.worker._group_concurrency = 2
        reqs = await r.vendor_costs(D("1.05"))
        cs = await r.approvals.approve(reqs, "all", "tech")
        total = cs["total"]
        held: list[int] = []
        moved = r.worker._moved
        calls = 0

        def counting(cs_id: int, moves: Any) -> None:
            nonlocal calls
            moved(cs_id, moves)
            calls += 1
            if calls % 3 == 0:
                held.append(_live(StepRow))

        monkeypatch.setattr(r.worker, "_moved", counting)
        done = await r.push(cs["id"])
        assert done["status"] == "done" and done["counts"]["done"] == total
        # Held at most: a load (up to LOAD_STEPS and one group over), and per lane the group
        # being sent and the one whose outcomes wait for the next commit.
        per_contract = Counter(line.contract_id for line in r.ds.lines)
        largest = max(max(per_contract.values()), min(len(reqs), ITEM_GROUP))
        bound = 40 + largest + 2 * r.worker._group_concurrency * largest
        assert total > 3 * bound and len(held) >= 5, (total, bound, len(held))
        assert max(held) <= bound, (max(held), bound, total)
        assert _live(StepRow) == 0


async def test_the_estimate_counts_the_one_commit_each_group_of_the_push_waits_for(
    tmp_path, monkeypatch
):
    async with rig(tmp_path, contracts=30, extra_items=10) as r:
        reqs = await r.vendor_costs(D("1.05"))
        measured = Measured(requests=100, writes=0, latency=0.05, rate=100.0)
        # Large, so each group's share stands out of the estimate's rounding to 0.1 s.
        commit = 2.0

        def preview(seconds: float) -> dict[str, Any]:
            got, _ = r.store.read_sync(
                lambda c: plan(
                    c,
                    reqs,
                    "all",
                    r.approvals.limits,
                    measured=measured,
                    commit_seconds=seconds,
                    keep_steps=False,
                )
            )
            return got

        with_commits, without = preview(commit), preview(0.0)
        groups = round(
            (with_commits["estimated_seconds"] - without["estimated_seconds"])
            / (commit * COMMIT_SHARE)
        )
        # The push waits for one commit per group: its steps journaled ``sending``.
        waited = 0
        record = r.worker._record

        async def counting(*args: Any, **kwargs: Any) -> None:
            nonlocal waited
            waited += 1
            await record(*args, **kwargs)

        monkeypatch.setattr(r.worker, "_record", counting)
        cs = await r.approvals.approve(reqs, "all", "tech")
        done = await r.push(cs["id"])
        assert done["status"] == "done"
        assert waited == groups, (waited, groups)
        # What the estimate's part for the PSA's pace rests on is unchanged by the commits.
        alone, _ = estimate_seconds(with_commits["api_calls"], r.approvals.limits, measured)
        assert alone == without["estimated_seconds"]


def _live(kind: type) -> int:
    """Objects of ``kind`` still reachable (garbage awaiting the cyclic collector not counted)."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)


async def test_a_reload_a_slice_at_a_time_equals_a_whole_load(tmp_path, monkeypatch):
    # Small slices, so the reload (and the refresh it is made of) takes many of them.
    monkeypatch.setattr(table_module, "REFRESH_SLICE", 7)
    async with rig(tmp_path, contracts=20, extra_items=30) as r:
        # Changed behind the table's back, as a sync or a price file changes the mirror: a new
        # item with a vendor cost (a new row), a row's item gone from the catalogue.
        leaver = min(r.table._rows)

        def change(c: Any) -> int:
            newcomer = new_id(
                c.execute(
                    insert(CatalogItem).values(
                        psa_id="new-9001",
                        identifier="NEW-9001",
                        name="New item",
                        cost=D("3.00"),
                        currency="USD",
                    )
                )
            )
            c.execute(
                insert(ManualCost).values(
                    item_id=newcomer, cost=D("3.50"), currency="USD", set_by="tech"
                )
            )
            c.execute(update(CatalogItem).where(CatalogItem.id == leaver).values(gone=True))
            return newcomer

        newcomer = await r.store.write(change)
        assert newcomer not in r.table._rows and leaver in r.table._rows
        await r.store.write(r.table.reload)
        whole = r.store.read_sync(lambda c: load_rows(c))
        assert newcomer in whole and leaver not in whole
        got = {row.id: row for row in r.table.get(r.table.view())}
        assert set(got) == set(whole)
        for i, row in whole.items():
            row.margin_floor = r.table.margin_floor
            assert got[i].to_json() == row.to_json(), i
