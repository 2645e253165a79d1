"""Approval benchmark (issue 14 item 2): the dry-run preview and the creation of a change set
(plan + journal) for a vendor-wide 5% rise on the ConnectWise ``large`` data set, in-process.

The store is mirrored from the simulator once by the real sync and kept (``--db``, default in
the temp directory); each run works on a copy. Prints CPU seconds of this process (all threads:
the store's reader and writer threads included) and wall seconds, beside a baseline measured in
the same run: a bare SELECT of the same contract lines. The machine is shared, so the ratio to
the baseline is the figure to compare across runs.

    python benchmarks/approve.py [--db /tmp/costrecon-large.db] [--profile preview|create]
    python benchmarks/approve.py --daemon

``--daemon``: the same rise through a real daemon process over its API (the price file through
the inbox, as issue 14 did): the preview's round trip, how soon POST /v1/change-sets answers
(201, or 202 "recording") and when the change set is recorded (wall seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import copy_database  # noqa: E402
from tests.sims import CW_KEYS, connectwise_connector  # noqa: E402

from costrecon_daemon.changes import Request, journal, plan  # noqa: E402
from costrecon_daemon.changes.approve import Approvals  # noqa: E402
from costrecon_daemon.costs import CostTable  # noqa: E402
from costrecon_daemon.db import CatalogItem, ContractLine  # noqa: E402
from costrecon_daemon.mirror.sync import run_sync  # noqa: E402
from costrecon_daemon.sim.connectwise import start_connectwise_sim  # noqa: E402
from costrecon_daemon.sim.dataset import generate  # noqa: E402
from costrecon_daemon.store import Store, migrate  # noqa: E402


def build(db: Path) -> None:
    """Mirror the large data set into ``db`` by the real sync (minutes; done once)."""
    print(f"building {db} from the ConnectWise large data set (once)…", flush=True)
    tmp = db.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    migrate(f"sqlite:///{tmp}")

    async def sync() -> None:
        running = await start_connectwise_sim(generate("large"), **CW_KEYS)
        connector = connectwise_connector(running, timeout=120.0)
        store = Store(f"sqlite:///{tmp}")
        try:
            await connector.connect()
            await run_sync(store, connector, actor="bench", full=True)
        finally:
            await connector.aclose()
            await running.close()
            store.close()

    asyncio.run(sync())
    tmp.rename(db)


def rise(store: Store) -> list[Request]:
    """Every item with live contract lines, 5% up (the price file of issue 14)."""

    def q(conn: Any) -> list[Request]:
        listed = select(ContractLine.item_psa_id).where(
            ContractLine.active.is_(True), ContractLine.gone.is_(False)
        )
        rows = conn.execute(
            select(CatalogItem.id, CatalogItem.cost)
            .where(
                CatalogItem.psa_id.in_(listed),
                CatalogItem.gone.is_(False),
                CatalogItem.cost.is_not(None),
                CatalogItem.cost > 0,
            )
            .order_by(CatalogItem.id)
        ).all()
        return [Request(i, (c * Decimal("1.05")).quantize(Decimal("0.01")), c) for i, c in rows]

    return store.read_sync(q)


def baseline(store: Store, reqs: list[Request]) -> int:
    """A bare SELECT of the live lines of the same items (what any plan must at least read)."""

    def q(conn: Any) -> int:
        ids = [r.item_id for r in reqs]
        n = 0
        for start in range(0, len(ids), 900):
            psa = select(CatalogItem.psa_id).where(CatalogItem.id.in_(ids[start : start + 900]))
            n += len(
                conn.execute(
                    select(
                        ContractLine.item_psa_id,
                        ContractLine.psa_id,
                        ContractLine.contract_psa_id,
                        ContractLine.kind,
                        ContractLine.unit_cost,
                        ContractLine.quantity,
                        ContractLine.currency,
                        ContractLine.unit_price,
                    ).where(
                        ContractLine.item_psa_id.in_(psa),
                        ContractLine.active.is_(True),
                        ContractLine.gone.is_(False),
                    )
                ).all()
            )
        return n

    return store.read_sync(q)


class _Worker:
    """Stands in for the push worker: approval creation only wakes it."""

    def __init__(self) -> None:
        self.wakeup = asyncio.Event()
        self.commit_seconds = None

    def today(self) -> Any:
        import datetime as dt

        return dt.date.today()


def create_in_thread(store: Store, reqs: list[Request]) -> int:
    """Plan and journal as an approval does, in this thread (for the profiler), rolled back."""
    with store.writer_engine.connect() as conn, conn.begin() as tx:
        preview, steps = plan(conn, reqs, "all", None)
        cs_id = journal(
            conn,
            actor="bench",
            kind="apply",
            policy="all",
            preview=preview,
            steps=steps,
            item_ids=[r.item_id for r in reqs],
        )
        tx.rollback()
    return cs_id


def timed(label: str, fn: Callable[[], Any], profile: bool = False) -> tuple[Any, float, float]:
    prof = cProfile.Profile() if profile else None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if prof is not None:
        prof.enable()
    out = fn()
    if prof is not None:
        prof.disable()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    print(f"  {label:<28} {cpu:6.2f} s CPU  {wall:6.2f} s wall", flush=True)
    if prof is not None:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(35)
    return out, cpu, wall


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def through_daemon() -> None:
    import httpx
    from benchmarks.push import recorded
    from tests.harness import DaemonProcess
    from tests.pricefiles import PriceLine, write_generic_csv

    from costrecon_daemon.sim.connectwise import ConnectWiseSim
    from costrecon_daemon.sim.serve import ServedApp

    sim = ConnectWiseSim(generate("large"))
    with ServedApp(sim.app) as served, tempfile.TemporaryDirectory() as tmp:
        d = DaemonProcess(
            Path(tmp),
            {
                "psa": {"kind": "connectwise"},
                "psa.connectwise": {
                    "site": served.base_url,
                    "company": sim.company,
                    "public_key": sim.public_key,
                    "private_key": sim.private_key,
                    "client_id": sim.client_id,
                },
                "daemon": {"log_level": "warning"},
                "inbox": {"stable_seconds": 0.3, "rescan_seconds": 2},
            },
        )
        d.start()
        try:
            d.wait_synced(1200)
            with d.http(timeout=600) as c:
                ids = c.get("/v1/costs").json()["ids"]
                rows: list[dict[str, Any]] = []
                for start in range(0, len(ids), 5000):
                    page = {"ids": ids[start : start + 5000]}
                    rows += c.post("/v1/costs/rows", json=page).json()["rows"]
            listed = [r for r in rows if r["lines"] and r["catalog_cost"] not in (None, "0")]
            price = [
                PriceLine(
                    r["identifier"],
                    None,
                    r["name"],
                    (Decimal(r["catalog_cost"]) * Decimal("1.05")).quantize(Decimal("0.01")),
                    currency=r["currency"],
                )
                for r in listed
            ]
            write_generic_csv(Path(tmp), price, name="vendor-rise.csv")
            inbox = Path(tmp) / "state" / "inbox"
            inbox.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / "vendor-rise.csv").rename(inbox / "vendor-rise.csv")
            d.wait_for(
                lambda: len(d.get("/v1/costs", params={"changed": 1})["ids"]) >= len(listed) * 0.9,
                600,
                "the price file",
            )
            with d.http(timeout=600) as c:
                ids = c.get("/v1/costs", params={"changed": 1}).json()["ids"]
                chosen: list[dict[str, Any]] = []
                for start in range(0, len(ids), 5000):
                    page = {"ids": ids[start : start + 5000]}
                    chosen += c.post("/v1/costs/rows", json=page).json()["rows"]
                body = {
                    "items": [
                        {
                            "item_id": r["id"],
                            "cost": r["vendor_cost"],
                            "seen_catalog_cost": r["catalog_cost"],
                        }
                        for r in chosen
                        if r["vendor_cost"] is not None
                    ],
                    "policy": "all",
                }
                pid = d.proc.pid  # type: ignore[union-attr]
                print(
                    f"through a daemon process: approval of {len(body['items'])} items "
                    "(wall s; the daemon's CPU s)"
                )
                for n in (1, 2, 3):
                    t0, cpu0 = time.perf_counter(), cpu_of(pid)
                    resp = c.post("/v1/change-sets", json={**body, "dry_run": True})
                    preview = resp.json()["preview"]
                    print(
                        f"  preview round trip #{n}    {time.perf_counter() - t0:6.2f} s  "
                        f"{cpu_of(pid) - cpu0:6.2f} s CPU  ({preview['lines']} lines, "
                        f"{len(resp.content) / 1e6:.2f} MB)"
                    )
                t0, cpu0 = time.perf_counter(), cpu_of(pid)
                resp = c.post("/v1/change-sets", json={**body, "request_id": "bench-approve"})
                answered = time.perf_counter() - t0
                cs = recorded(c, resp)
                done, cpu = time.perf_counter() - t0, cpu_of(pid) - cpu0
                print(f"  approval answered         {answered:6.2f} s  (HTTP {resp.status_code})")
                print(
                    f"  change set recorded       {done:6.2f} s  {cpu:6.2f} s CPU  "
                    f"({cs['total']} steps; the push starts meanwhile)"
                )
        except httpx.HTTPError as exc:
            raise SystemExit(f"the daemon failed: {exc}") from None
        finally:
            d.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "costrecon-large.db")
    ap.add_argument("--profile", choices=["preview", "create"], default=None)
    ap.add_argument("--daemon", action="store_true", help="through a daemon process's API")
    args = ap.parse_args()
    if args.daemon:
        through_daemon()
        return
    if not args.db.exists():
        build(args.db)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{copy_database(args.db, Path(tmp) / 'costrecon.db')}"
        store = Store(url)
        table = CostTable()
        store.write_sync(table.reload)
        approvals = Approvals(store, table, _Worker(), None, "all")  # type: ignore[arg-type]
        reqs = rise(store)
        print(f"approval of {len(reqs)} items (a 5% rise), large data set, CPU and wall seconds:")
        n, base_cpu, _ = timed("baseline: SELECT the lines", lambda: baseline(store, reqs))
        if args.profile == "preview":
            # In this thread, so the profiler sees it (the daemon runs it on a reader thread).
            timed(
                "preview (profiled, in-thread)",
                lambda: store.read_sync(lambda c: plan(c, reqs, "all", None, keep_steps=False)),
                True,
            )
        timed("preview, first", lambda: asyncio.run(approvals.preview(reqs, "all")))
        preview, prev_cpu, _ = timed(
            "preview (dry run)", lambda: asyncio.run(approvals.preview(reqs, "all"))
        )
        size = len(json.dumps(preview))
        if args.profile == "create":
            timed("creation (profiled, in-thread)", lambda: create_in_thread(store, reqs), True)
        cs, create_cpu, _ = timed(
            "creation (plan + journal)",
            lambda: asyncio.run(approvals.approve(reqs, "all", "bench", "bench-1")),
            args.profile == "create",
        )
        store.close()
    print(
        f"  {n} lines read; preview: {preview['items']} items, {preview['lines']} lines, "
        f"{preview['api_calls']} API calls, JSON {size / 1e6:.2f} MB; change set "
        f"{cs['id']}: {cs['total']} steps"
    )
    print(
        f"  preview  = {prev_cpu / base_cpu:.1f}x the baseline's CPU  (goal <= 1 s)\n"
        f"  creation = {create_cpu / base_cpu:.1f}x the baseline's CPU  (goal <= 5 s)"
    )


if __name__ == "__main__":
    main()
