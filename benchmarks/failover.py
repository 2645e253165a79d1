"""Failover benchmark (issue 17): two ``costrecond`` processes on one PostgreSQL database and one
ConnectWise simulator; a big change set approved on the follower; the leader killed with SIGKILL
five times during the push (each killed daemon restarted as the new follower).

Prints, per kill: the takeover time (kill -> the other daemon reports it leads), the resume time
(kill -> the push's done count moves again) and, as the baseline a single host gives, the time the
killed daemon needs to restart and answer (what systemd's Restart= buys, before its RestartSec).
At the end: the change set's status and whether every line was written exactly once.

    python benchmarks/failover.py [--kills 5] [--contracts 200] [--latency 0.03]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import backends  # noqa: E402
from tests.harness import DaemonProcess  # noqa: E402
from tests.pgserver import running_server  # noqa: E402
from tests.psa_fixtures import (  # noqa: E402
    ADAPTERS,
    approve,
    connector_settings,
    live_lines,
    make_sim,
    msp_tenant,
    rows_by_identifier,
    set_vendor_cost,
)

from costrecon_daemon.sim.serve import ServedApp  # noqa: E402


def daemon(tmp: Path, name: str, url: str, psa: dict[str, Any]) -> DaemonProcess:
    home = tmp / name
    home.mkdir()
    cfg = {"daemon": {"database_url": url, "name": name, "log_level": "info"}, **psa}
    return DaemonProcess(home, cfg)


def leading(d: DaemonProcess) -> bool:
    try:
        return bool(d.get("/v1/status", timeout=5)["leader"]["leading"])
    except Exception:  # noqa: BLE001 - not up yet
        return False


def done_count(d: DaemonProcess, cs_id: int) -> tuple[str, int, int]:
    cs = d.get(f"/v1/change-sets/{cs_id}", timeout=10)["change_set"]
    return cs["status"], cs["counts"]["done"], cs["total"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--contracts", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.03)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    # Each kill cuts the simulator's connections from the dead daemon mid-request; those resets
    # are the point of the run, not news.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    ds = msp_tenant(contracts=args.contracts, lines_per_item=3)
    sim, make_app = make_sim("connectwise", ds, {})
    with (
        running_server(durable=True) as server,
        ServedApp(make_app) as served,
        tempfile.TemporaryDirectory() as tmp_text,
    ):
        tmp = Path(tmp_text)
        url = backends.fresh_database(server)
        settings = served.call(
            lambda: connector_settings("connectwise", sim, served.base_url, args.concurrency)
        )
        psa = {"psa": {"kind": "connectwise"}, "psa.connectwise": settings}
        adapter = ADAPTERS["connectwise"](sim, served, ds)
        one, two = daemon(tmp, "jump1", url, psa), daemon(tmp, "jump2", url, psa)
        one.start()
        one.wait_synced(120)
        one.wait_for(lambda: leading(one), 30, "jump1 to lead")
        two.start()
        try:
            rows = rows_by_identifier(two)
            chosen = [
                set_vendor_cost(two, rows[adapter.identifier(it.id)], str(it.cost + Decimal("1")))
                for it in ds.items
            ]
            live = [ln.id for it in ds.items for ln in live_lines(ds, it.id)]
            base = adapter.write_counts("line", live)
            adapter.latency(args.latency)
            cs_id = approve(two, chosen).json()["change_set"]["id"]
            print(
                f"{len(live)} live lines on {args.contracts} agreements; "
                f"{args.latency * 1000:.0f} ms PSA latency, concurrency {args.concurrency}; "
                "change set approved on the follower"
            )
            leader, follower = one, two
            takeovers: list[float] = []
            resumes: list[float] = []
            restarts: list[float] = []
            for n in range(1, args.kills + 1):
                follower.wait_for(
                    lambda f=follower: done_count(f, cs_id)[1] > 0, 120, "the push to run"
                )
                time.sleep(1.0)
                status, done_before, total = done_count(follower, cs_id)
                killed = time.perf_counter()
                leader.kill9()
                while not leading(follower):
                    time.sleep(0.02)
                takeover = time.perf_counter() - killed
                resume = None
                if status == "pushing":
                    deadline = time.perf_counter() + 60
                    while time.perf_counter() < deadline:
                        st, done_now, _ = done_count(follower, cs_id)
                        if done_now > done_before or st not in ("pending", "pushing"):
                            resume = time.perf_counter() - killed
                            break
                        time.sleep(0.05)
                t_restart = time.perf_counter()
                leader.start()
                restart = time.perf_counter() - t_restart
                takeovers.append(takeover)
                restarts.append(restart)
                if resume is not None:
                    resumes.append(resume)
                line = (
                    f"  kill {n}: {status} {done_before}/{total} at the kill; "
                    f"takeover {takeover:.2f} s"
                )
                if resume is not None:
                    line += f"; push moving again {resume:.2f} s"
                print(f"{line}; restart of the killed daemon {restart:.2f} s", flush=True)
                leader, follower = follower, leader
            deadline = time.monotonic() + 600
            while (st := done_count(leader, cs_id))[0] in ("pending", "pushing"):
                if time.monotonic() > deadline:
                    raise SystemExit("the change set did not finish")
                time.sleep(0.2)
            counts = adapter.write_counts("line", live)
            written = {counts[i] - base[i] for i in live}
            print(
                f"\nchange set {cs_id}: {st[0]}, {st[1]}/{st[2]} done; writes per line: {written}"
            )
            print(
                f"takeover over {len(takeovers)} kills: median {statistics.median(takeovers):.2f} "
                f"s, max {max(takeovers):.2f} s (promise: 10 s)"
            )
            if resumes:
                print(
                    f"push moving again: median {statistics.median(resumes):.2f} s, "
                    f"max {max(resumes):.2f} s ({len(resumes)} kills landed mid-push)"
                )
            print(
                f"baseline, one host: restart of the killed daemon to its first answer: median "
                f"{statistics.median(restarts):.2f} s (+ systemd RestartSec, + the host's own "
                "reboot when it is the host that died)"
            )
        finally:
            for d in (one, two):
                if d.proc is not None:
                    d.stop()


if __name__ == "__main__":
    main()
