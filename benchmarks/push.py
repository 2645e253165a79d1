"""Push benchmark (issues 5 and 14): approve and push through a real daemon process on the
ConnectWise simulator.

Default size: 200 items touching 6,000 contract lines at 25 ms per request; prints wall time,
requests per line, the bound (requests x latency / allowed concurrency) and the ratio to it, beside
a naive sequential client (read, then PATCH, one line at a time) on a slice of the same lines.

``--size large`` (issue 14): the simulator's ``large`` data set (50,000 items, 8,000 agreements,
150,000 additions) and a price file raising every item that has contract lines by 5%, at each of
``--latencies`` (default 0 and 25 ms), each on a fresh daemon, with the 6,000-line run beside it
in the same process. Prints preview and approval-creation times, lines/s, requests/line, the ratio
to the bound, the preview's estimate against the actual time, and the daemon's RSS (peak, and at
a quarter and three quarters of the push, and once finished: it must not grow with the finished
steps).

    python benchmarks/push.py [--latency 0.025] [--concurrency 8] [--database postgresql]
    python benchmarks/push.py --size large [--latencies 0,0.025]

``--database postgresql`` runs it on SQLite and then on a throwaway PostgreSQL, both printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
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
from tests.pricefiles import PriceLine, write_generic_csv  # noqa: E402

from costrecon_daemon.sim.connectwise import ConnectWiseSim  # noqa: E402
from costrecon_daemon.sim.dataset import (  # noqa: E402
    Dataset,
    SimContract,
    SimItem,
    SimLine,
    generate,
)
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


def recorded(c: httpx.Client, resp: httpx.Response) -> dict:
    """The change set of an approval; one answered 202 ("recording") followed by request id."""
    if resp.status_code != 202:
        return resp.json()["change_set"]
    request_id = resp.json()["request"]["request_id"]
    while True:
        got = c.get("/v1/change-sets", params={"request_id": request_id}).json()
        if got["change_sets"]:
            return got["change_sets"][0]
        if got["request"]["state"] != "recording":
            raise SystemExit(f"approval {request_id}: {got['request']}")
        time.sleep(0.05)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def smaps(pid: int) -> str:
    """Where the daemon's RSS is: the main heap, anonymous maps (Python's arenas, mmap-backed
    blocks) and, among them, glibc's per-thread arenas (64 MiB reservations)."""
    heap = anon = big = 0.0
    n_big = 0
    name = ""
    size = 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if "-" in parts[0] and len(parts) >= 5 and ":" in parts[3]:
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            size = hi - lo
            name = parts[5] if len(parts) > 5 else ""
        elif parts[0] == "Rss:":
            kb = int(parts[1]) / 1024
            if name == "[heap]":
                heap += kb
            elif not name:
                anon += kb
                if size >= 32 << 20:
                    big += kb
                    n_big += 1
    return (
        f"heap {heap:.0f} MB, anonymous maps {anon:.0f} MB (of which {n_big} thread arenas: "
        f"{big:.0f} MB)"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat, fields 14 and 15): a
    figure a loaded machine does not inflate, unlike wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU spent during a push by the daemon (its process) and by the simulator (the thread that
    serves it in this process), per line."""

    def __init__(self, pid: int, served: ServedApp):
        self.pid, self.served = pid, served
        self.daemon0 = cpu_seconds(pid)
        self.sim0 = served.call(time.thread_time)

    def stop(self) -> tuple[float, float]:
        return cpu_seconds(self.pid) - self.daemon0, self.served.call(time.thread_time) - self.sim0


def cpu_lines(daemon: float, sim: float, lines: int) -> list[str]:
    per = 1000 / max(1, lines)
    both = (daemon + sim) * per
    return [
        f"  daemon CPU          {daemon:.1f} s = {daemon * per:.3f} ms/line",
        f"  simulator CPU       {sim:.1f} s = {sim * per:.3f} ms/line  (together {both:.3f} "
        f"ms/line: at most {1000 / max(both, 1e-9):.0f} lines/s on one core, "
        f"{min(1000 / max(daemon * per, 1e-9), 1000 / max(sim * per, 1e-9)):.0f} on two)",
    ]


def start_profile(pid: int, out: str | None) -> subprocess.Popen[bytes] | None:
    """Sample the daemon with py-spy (if asked for and installed) for the push's duration."""
    if not out:
        return None
    try:
        return subprocess.Popen(
            ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "50", "-o", out],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        print("  (py-spy is not installed: no profile)")
        return None


def stop_profile(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        proc.send_signal(2)  # SIGINT: py-spy writes its file and exits
        proc.wait(60)


PROFILE: str | None = None  # --profile: a py-spy raw profile of the daemon during each push


def large_run(ds: Dataset, latency: float, concurrency: int) -> None:
    """The vendor-wide 5% rise of issue 14 through a fresh daemon at one latency."""
    sim = ConnectWiseSim(ds)
    # The run's latency from the start: the preview's estimate rests on the pace the sync
    # measured, so a sync at 0 ms would make the estimate of a 25 ms push a guess.
    sim.knobs.latency = latency
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
                    "concurrency": concurrency,
                },
                "daemon": {"log_level": "warning"},
                "inbox": {"stable_seconds": 0.3, "rescan_seconds": 2},
            },
        )
        d.start()
        try:
            t0 = time.perf_counter()
            d.wait_synced(1200)
            t_sync = time.perf_counter() - t0
            pid = d.proc.pid  # type: ignore[union-attr]
            stages = [("after the sync", rss_mb(pid))]
            with d.http(timeout=600) as c:
                ids = c.get("/v1/costs").json()["ids"]
                rows = []
                for start in range(0, len(ids), 5000):
                    rows += c.post(
                        "/v1/costs/rows", json={"ids": ids[start : start + 5000]}
                    ).json()["rows"]
            listed = [r for r in rows if r["lines"] and r["catalog_cost"] not in (None, "0")]
            # The price file: every listed item, 5% up, keyed by its PSA identifier.
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
            inbox = Path(tmp) / "state" / "inbox"
            inbox.mkdir(parents=True, exist_ok=True)
            write_generic_csv(Path(tmp), price, name="vendor-rise.csv")
            (Path(tmp) / "vendor-rise.csv").rename(inbox / "vendor-rise.csv")
            d.wait_for(
                lambda: len(d.get("/v1/costs", params={"changed": 1})["ids"]) >= len(listed) * 0.9,
                600,
                "the price file",
            )
            with d.http(timeout=600) as c:
                ids = c.get("/v1/costs", params={"changed": 1}).json()["ids"]
                chosen = []
                for start in range(0, len(ids), 5000):
                    chosen += c.post(
                        "/v1/costs/rows", json={"ids": ids[start : start + 5000]}
                    ).json()["rows"]
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
                t1 = time.perf_counter()
                preview = c.post("/v1/change-sets", json={**body, "dry_run": True}).json()[
                    "preview"
                ]
                t_preview = time.perf_counter() - t1
                stages.append(("after the price file and preview", rss_mb(pid)))
                served.call(sim.stats.reset)
                t0 = time.perf_counter()
                resp = c.post("/v1/change-sets", json={**body, "request_id": "bench-large"})
                resp.raise_for_status()
                t_answer = time.perf_counter() - t0
                cs = recorded(c, resp)
                t_create = time.perf_counter() - t0
                stages.append(("after approval creation", rss_mb(pid)))
                print(
                    f"large, {latency * 1000:.0f} ms: preview {t_preview:.2f} s, approval answered "
                    f"in {t_answer:.2f} s (HTTP {resp.status_code}), recorded in {t_create:.2f} s "
                    f"for {cs['total']} steps; pushing…",
                    flush=True,
                )
                rss: list[tuple[int, float]] = []
                where = ""
                cpu = CpuMeter(d.proc.pid, served)  # type: ignore[union-attr]
                spy = start_profile(
                    d.proc.pid,  # type: ignore[union-attr]
                    PROFILE and f"{PROFILE}.large-{latency * 1000:.0f}ms.txt",
                )
                while cs["status"] in ("pending", "pushing"):
                    time.sleep(0.5)
                    cs = c.get(f"/v1/change-sets/{cs['id']}", params={"steps": 0}).json()[
                        "change_set"
                    ]
                    done = sum(
                        v for k, v in cs["counts"].items() if k not in ("pending", "sending")
                    )
                    rss.append((done, rss_mb(d.proc.pid)))  # type: ignore[union-attr]
                    if not where and done >= cs["total"] / 4:
                        where = smaps(d.proc.pid)  # type: ignore[union-attr]
                wall = time.perf_counter() - t0
                daemon_cpu, sim_cpu = cpu.stop()
                stop_profile(spy)
            requests = served.call(lambda: sim.stats.total)
        finally:
            d.stop()
        lines = preview["lines"]
        total = cs["total"]
        # While steps finish (1/4 and 3/4 of them done), apart from the set's end: finishing
        # re-derives every row from the journal once, a step the finished count has no part in.
        pushing = rss[:-1] or rss
        quarter = next((m for n, m in pushing if n >= total / 4), pushing[0][1] if rss else 0.0)
        three = next((m for n, m in pushing if n >= total * 3 / 4), pushing[-1][1] if rss else 0.0)
        print(
            f"large, {latency * 1000:.0f} ms: {cs['status']}, {cs['counts']['done']} of {total} "
            f"targets done ({preview['items']} items, {lines} lines, {preview['lines_skipped']} "
            "skipped by policy)"
        )
        print(f"  first sync          {t_sync:.1f} s  (load average now {os.getloadavg()[0]:.2f})")
        print(f"  preview             {t_preview:.2f} s  (goal <= 1 s)")
        print(
            f"  approval answered   {t_answer:.2f} s  (HTTP {resp.status_code}; goal: within ~1 s)"
        )
        print(
            f"  approval creation   {t_create:.2f} s  (plan + journal of {total} steps; goal <= 5 "
            "s)"
        )
        print(
            f"  push wall time      {wall:.1f} s = {total / wall:.0f} targets/s, "
            f"{lines / wall:.0f} lines/s" + ("  (goal >= 800 at 0 ms)" if latency == 0 else "")
        )
        print(
            f"  requests            {requests}  ({requests / max(1, total):.3f} per target, "
            f"{requests / max(1, lines):.3f} per line)"
        )
        for text in cpu_lines(daemon_cpu, sim_cpu, lines):
            print(text)
        if latency:
            bound = requests * latency / concurrency
            print(
                f"  bound               {bound:.1f} s  -> ratio {wall / bound:.2f}x  (goal <= "
                "1.25x)"
            )
        print(
            f"  estimate / actual   {preview['estimated_seconds']} s "
            f"({preview.get('estimate_basis', {}).get('source')}) / {cs.get('actual_seconds')} s"
        )
        print(
            f"  daemon RSS          peak {max((m for _, m in rss), default=0):.0f} MB, at 1/4 "
            f"{quarter:.0f} MB, at 3/4 {three:.0f} MB, "
            f"finished {rss[-1][1] if rss else 0:.0f} MB  (goal <= 300 MB, not growing)"
        )
        print("  daemon RSS before   " + ", ".join(f"{m:.0f} MB {what}" for what, m in stages))
        print(f"  daemon memory 1/4   {where}")
        sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.025)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--naive-lines", type=int, default=200)
    backends.add_option(ap)
    ap.add_argument("--size", choices=["default", "large"], default="default")
    ap.add_argument(
        "--latencies", default="0,0.025", help="for --size large: seconds, comma-separated"
    )
    ap.add_argument(
        "--skip-default", action="store_true", help="for --size large: no 6,000-line run"
    )
    ap.add_argument(
        "--profile",
        metavar="PREFIX",
        help="sample the daemon with py-spy during each push into PREFIX.<run>.txt (raw stacks)",
    )
    args = ap.parse_args()
    global PROFILE
    PROFILE = args.profile
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the start", flush=True)
    if args.size == "large":
        if not args.skip_default:
            default_run(args)
        big = generate("large")
        for latency in (float(x) for x in args.latencies.split(",") if x):
            large_run(big, latency, args.concurrency)
        return
    default_run(args)


def default_run(args: argparse.Namespace) -> None:
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
        cpu = CpuMeter(d.proc.pid, served)  # type: ignore[union-attr]
        spy = start_profile(
            d.proc.pid,  # type: ignore[union-attr]
            PROFILE and f"{PROFILE}.default-{args.latency * 1000:.0f}ms.txt",
        )
        rss: list[float] = []
        t0 = time.perf_counter()
        with d.http() as c:
            resp = c.post("/v1/change-sets", json=body)
            resp.raise_for_status()
            cs_id = recorded(c, resp)["id"]
        t_journaled = time.perf_counter() - t0
        # Poll the summary as a client watching progress would, over one connection: a new
        # client per poll builds an SSL context, and that CPU in this process (which also runs
        # the simulator) would slow the simulator down.
        with d.http() as poller:
            while True:
                cs = poller.get(f"/v1/change-sets/{cs_id}", params={"steps": 0}).json()[
                    "change_set"
                ]
                rss.append(rss_mb(d.proc.pid))  # type: ignore[union-attr]
                if cs["status"] not in ("pending", "pushing"):
                    break
                time.sleep(0.2)
        wall = time.perf_counter() - t0
        daemon_cpu, sim_cpu = cpu.stop()
        stop_profile(spy)
        requests = served.call(lambda: sim.stats.total)
        d.stop()
        n_lines = sum(1 for ln in ds.lines)
        bound = requests * args.latency / args.concurrency
        print(
            f"push (6,000 lines, {args.latency * 1000:.0f} ms): {cs['status']}, "
            f"{cs['counts']['done']} targets done ({len(rows)} items, {n_lines} lines), "
            f"{n_lines / wall:.0f} lines/s"
        )
        print(f"  requests            {requests}  ({requests / n_lines:.3f} per line; goal <= 1.2)")
        print(
            f"  wall time           {wall:.2f} s  (of which approval + journal of {cs['total']} "
            f"steps: {t_journaled:.2f} s)"
        )
        print(
            f"  bound               {bound:.2f} s  (requests x {args.latency * 1000:.0f} ms / "
            f"concurrency {args.concurrency})"
        )
        if bound:
            print(f"  ratio to bound      {wall / bound:.2f}x  (goal <= 1.25x)")
        for text in cpu_lines(daemon_cpu, sim_cpu, n_lines):
            print(text)
        print(f"  daemon RSS          peak {max(rss, default=0):.0f} MB, at end {rss[-1]:.0f} MB")
        # Baseline in the same run: the naive client on a slice of the same lines, scaled per line.
        slice_ = ds.lines[: args.naive_lines]
        t_naive = naive(sim, served, slice_)
        per_line = t_naive / len(slice_)
        est = per_line * (n_lines + len(rows))
        print(
            f"  naive sequential    {t_naive:.2f} s for {len(slice_)} lines = "
            f"{per_line * 1000:.1f} ms/line; scaled to {n_lines + len(rows)} targets: {est:.0f} s "
            f"-> costrecon is {est / wall:.1f}x faster"
        )


if __name__ == "__main__":
    backends.run_each(main)
