"""Push benchmark (issue 5): approve 200 items touching 6,000 contract lines on the ConnectWise
simulator with 25 ms latency per request, through a real daemon process.

Prints wall time, requests per line, the bound (requests x latency / allowed concurrency) and the
ratio to it, beside a naive sequential client (read, then PATCH, one line at a time) measured in the
same run on a slice of the same lines.

    python benchmarks/push.py [--latency 0.025] [--concurrency 8] [--database postgresql]

``--database postgresql`` runs it on SQLite and then on a throwaway PostgreSQL, both printed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import backends  # noqa: E402
from tests.harness import DaemonProcess  # noqa: E402

from costrecon_daemon.sim.connectwise import ConnectWiseSim  # noqa: E402
from costrecon_daemon.sim.dataset import Dataset, SimContract, SimItem, SimLine  # noqa: E402
from costrecon_daemon.sim.serve import ServedApp  # noqa: E402

ITEMS, AGREEMENTS, PER_AGREEMENT = 200, 300, 20  # 300 x 20 = 6,000 lines


def tenant() -> Dataset:
    items = [
        SimItem(
            id=i + 1,
            identifier=f"SKU-{i:04d}",
            name=f"Service {i}",
            description="",
            cost=Decimal("10.00"),
            price=Decimal("15.00"),
            currency="USD",
            active=True,
            vendor_name="Pax8",
            vendor_sku=None,
            manufacturer=None,
            mpn=None,
            recurring=True,
            category="Cloud",
        )
        for i in range(ITEMS)
    ]
    contracts = [
        SimContract(id=1000 + a, name=f"Agreement {a}", company=f"Client {a}", status="Active")
        for a in range(AGREEMENTS)
    ]
    lines, lid = [], 100000
    for a in range(AGREEMENTS):
        for k in range(PER_AGREEMENT):
            lid += 1
            item = items[(a * 7 + k * 10) % ITEMS]  # every item on 30 agreements
            lines.append(
                SimLine(
                    id=lid,
                    contract_id=1000 + a,
                    item_id=item.id,
                    quantity=Decimal(10),
                    unit_cost=Decimal("10.00"),
                    unit_price=Decimal("15.00"),
                    cancelled=False,
                    description=item.name,
                )
            )
    return Dataset(items=items, contracts=contracts, lines=lines)


def naive(sim: ConnectWiseSim, served: ServedApp, lines: list[SimLine]) -> float:
    """One request at a time: GET the addition, PATCH it (what a simple script does)."""
    auth = httpx.BasicAuth(f"{sim.company}+{sim.public_key}", sim.private_key)
    base = f"{served.base_url}/{sim.codebase}apis/3.0"
    t0 = time.perf_counter()
    with httpx.Client(auth=auth, headers={"clientId": sim.client_id}, timeout=30) as c:
        for ln in lines:
            path = f"{base}/finance/agreements/{ln.contract_id}/additions/{ln.id}"
            c.get(path).raise_for_status()
            c.patch(
                path, json=[{"op": "replace", "path": "unitCost", "value": 10.5}]
            ).raise_for_status()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.025)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--naive-lines", type=int, default=200)
    backends.add_option(ap)
    args = ap.parse_args()
    ds = tenant()
    sim = ConnectWiseSim(ds)
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
                    "concurrency": args.concurrency,
                },
                "daemon": {"log_level": "warning", **backends.database_settings()},
            },
        )
        d.start()
        d.wait_synced(120)
        ids = d.get("/v1/costs")["ids"]
        with d.http() as c:
            rows = c.post("/v1/costs/rows", json={"ids": ids}).json()["rows"]
            for r in rows:
                c.put(f"/v1/costs/{r['id']}/manual", json={"cost": "10.75"}).raise_for_status()
        body = {
            "items": [
                {"item_id": r["id"], "cost": "10.75", "seen_catalog_cost": r["catalog_cost"]}
                for r in rows
            ],
            "policy": "all",
        }
        served.call(lambda: (setattr(sim.knobs, "latency", args.latency), sim.stats.reset()))
        t0 = time.perf_counter()
        with d.http() as c:
            resp = c.post("/v1/change-sets", json=body)
            resp.raise_for_status()
            cs_id = resp.json()["change_set"]["id"]
        t_journaled = time.perf_counter() - t0
        # Poll the summary as a client watching progress would, over one connection: a new
        # client per poll builds an SSL context, and that CPU in this process (which also runs
        # the simulator) would slow the simulator down.
        with d.http() as poller:
            while True:
                cs = poller.get(f"/v1/change-sets/{cs_id}", params={"steps": 0}).json()[
                    "change_set"
                ]
                if cs["status"] not in ("pending", "pushing"):
                    break
                time.sleep(0.2)
        wall = time.perf_counter() - t0
        requests = served.call(lambda: sim.stats.total)
        d.stop()
        n_lines = sum(1 for ln in ds.lines)
        bound = requests * args.latency / args.concurrency
        print(
            f"push: {cs['status']}, {cs['counts']['done']} targets done ({len(rows)} items, {n_lines} lines)"
        )
        print(f"  requests            {requests}  ({requests / n_lines:.3f} per line; goal <= 1.2)")
        print(
            f"  wall time           {wall:.2f} s  (of which approval + journal of {cs['total']} steps: {t_journaled:.2f} s)"
        )
        print(
            f"  bound               {bound:.2f} s  (requests x {args.latency * 1000:.0f} ms / concurrency {args.concurrency})"
        )
        print(f"  ratio to bound      {wall / bound:.2f}x  (goal <= 1.25x)")
        # Baseline in the same run: the naive client on a slice of the same lines, scaled per line.
        slice_ = ds.lines[: args.naive_lines]
        t_naive = naive(sim, served, slice_)
        per_line = t_naive / len(slice_)
        est = per_line * (n_lines + len(rows))
        print(
            f"  naive sequential    {t_naive:.2f} s for {len(slice_)} lines = {per_line * 1000:.1f} ms/line; "
            f"scaled to {n_lines + len(rows)} targets: {est:.0f} s -> costrecon is {est / wall:.1f}x faster"
        )


if __name__ == "__main__":
    backends.run_each(main)
