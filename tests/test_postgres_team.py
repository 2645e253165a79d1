"""Team install: two ``costrecond`` processes (two state dirs, two sockets, as on two jump hosts)
on one real PostgreSQL database and one ConnectWise simulator.

- exactly one leads the PSA workers; the other's approvals are pushed by the leader; kill -9 of the
  leader mid-push: the other takes over within 10 s and finishes with every line written once;
- a client of either daemon sees the other's approvals, pushes and imports live;
- both watch one shared inbox: each file imported once, moved once, reported once;
- the activity log names the host as well as the user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from costrecon_daemon.sim.serve import ServedApp

from . import pricefiles as pf
from .harness import DaemonProcess
from .psa_fixtures import (
    ADAPTERS,
    SimAdapter,
    approve,
    connector_settings,
    live_lines,
    make_sim,
    msp_tenant,
    rows_by_identifier,
    set_vendor_cost,
    wait_change_set,
)

# Two daemon processes on one database, one of them killed: the slow tier.
pytestmark = pytest.mark.slow

TAKEOVER_PROMISE_S = 10.0
USER = pwd.getpwuid(os.getuid()).pw_name


def _daemon(tmp: Path, name: str, pg_url: str, extra: dict[str, Any]) -> DaemonProcess:
    home = tmp / name
    home.mkdir()
    cfg: dict[str, Any] = {"daemon": {"database_url": pg_url, "name": name}}
    for k, v in extra.items():
        cfg.setdefault(k, {}).update(v)
    return DaemonProcess(home, cfg)


@contextlib.contextmanager
def team(
    tmp: Path, pg_url: str, ds: Any, *, concurrency: int = 4, extra: dict[str, Any] | None = None
) -> Iterator[tuple[SimAdapter, DaemonProcess, DaemonProcess]]:
    """A served ConnectWise simulator and two daemons on one database: jump1 starts first and
    leads (it has synced), jump2 follows."""
    sim, make_app = make_sim("connectwise", ds, {})
    with ServedApp(make_app) as served:
        settings = served.call(
            lambda: connector_settings("connectwise", sim, served.base_url, concurrency)
        )
        psa = {"psa": {"kind": "connectwise"}, "psa.connectwise": settings, **(extra or {})}
        one = _daemon(tmp, "jump1", pg_url, psa)
        two = _daemon(tmp, "jump2", pg_url, psa)
        try:
            one.start()
            one.wait_synced()
            one.wait_for(lambda: one.get("/v1/status")["leader"]["leading"], 20, "jump1 to lead")
            two.start()
            # The follower's table is read from the shared database as it starts: wait until it
            # holds what the leader's does (a loaded machine once handed a half-read one over).
            two.wait_for(
                lambda: len(two.get("/v1/costs")["ids"]) == len(one.get("/v1/costs")["ids"]),
                30,
                "jump2's table to hold jump1's rows",
            )
            yield ADAPTERS["connectwise"](sim, served, ds), one, two
        finally:
            for d in (two, one):
                if d.proc is not None:
                    d.stop()


def test_the_follower_serves_reads_and_approvals_and_the_status_names_the_leader(tmp_path, pg_url):
    ds = msp_tenant(contracts=6)
    with team(tmp_path, pg_url, ds) as (sim, one, two):
        lead, follow = one.get("/v1/status")["leader"], two.get("/v1/status")["leader"]
        assert lead["shared"] and lead["leading"] and not follow["leading"]
        assert lead["holder"] == follow["holder"] == lead["this_daemon"]
        assert lead["holder"].startswith("jump1:") and follow["this_daemon"].startswith("jump2:")
        assert lead["epoch"] == follow["epoch"] >= 1

        # the follower shows the leader's view of the PSA, and passes a sync request on to it
        two.wait_for(lambda: two.get("/v1/status")["psa"]["connected"], 10, "the PSA state")
        r = two.request("POST", "/v1/sync", json={"full": False})
        assert r.status_code == 202 and r.json()["passed_to_leader"] is True
        two.wait_for(
            lambda: any(
                e["actor"] == f"{USER}@jump2"
                for e in two.get("/v1/activity", params={"action": "sync.done"})["entries"]
            ),
            30,
            "the leader to run the sync asked of the follower",
        )

        # the follower's table is the same table, and its approval is pushed by the leader
        table = rows_by_identifier(two)
        assert table.keys() == rows_by_identifier(one).keys()
        row = set_vendor_cost(two, table["DNS-FILTER"], "1.35")
        lines = [ln.id for ln in live_lines(ds, 105)]
        before = sim.write_counts("line", lines)
        r = approve(two, [row])
        assert r.status_code == 201, r.text
        cs = wait_change_set(two, r.json()["change_set"]["id"], timeout=60)
        assert cs["status"] == "done", cs["counts"]
        after = sim.write_counts("line", lines)
        assert all(after[i] - before[i] == 1 for i in lines)
        assert sim.item_cost(105) == Decimal("1.35")

        # the log says who, and on which host; the push entries name the approver, not the pusher
        entries = one.get("/v1/activity", params={"limit": 200})["entries"]
        by_action = {e["action"]: e for e in reversed(entries)}
        assert by_action["approve"]["actor"] == f"{USER}@jump2"
        assert by_action["cost.manual.set"]["actor"] == f"{USER}@jump2"
        assert by_action["push.done"]["actor"] == f"{USER}@jump2"
        assert by_action["leader.gain"]["actor"] == "costrecond@jump1"
        assert one.get("/v1/activity/verify")["ok"] is True


def test_kill_9_of_the_leader_mid_push_the_follower_takes_over_and_writes_each_line_once(
    tmp_path, pg_url
):
    # 6 items x 60 agreements x 3 = 1,080 lines (a few cancelled), one PATCH each: the kill lands
    # after 50 of them, so mid-push at any size that leaves the push seconds to run.
    ds = msp_tenant(contracts=60, lines_per_item=3)
    with team(tmp_path, pg_url, ds) as (sim, one, two):
        sim.latency(0.01)  # so the kill lands mid-push on a loaded machine too
        rows = rows_by_identifier(two)
        chosen = [
            set_vendor_cost(two, rows[sim.identifier(it.id)], str(it.cost + Decimal("0.33")))
            for it in ds.items
        ]
        live = {it.id: live_lines(ds, it.id) for it in ds.items}
        all_live = [ln.id for lines in live.values() for ln in lines]
        assert len(all_live) > 1000
        baseline = sim.write_counts("line", all_live)
        item_base = sim.write_counts("item", [it.id for it in ds.items])

        cs_id = approve(two, chosen).json()["change_set"]["id"]  # approved on the follower
        seen = two.wait_for(
            lambda: (
                (cs := two.get(f"/v1/change-sets/{cs_id}", params={"steps": 0})["change_set"])[
                    "counts"
                ]["done"]
                >= 50
                and cs
            ),
            60,
            "the leader to start pushing the follower's approval",
        )
        assert seen["status"] == "pushing"
        one.kill9()
        killed = time.monotonic()
        cs_at_kill = two.get(f"/v1/change-sets/{cs_id}", params={"steps": 0})["change_set"]
        assert cs_at_kill["status"] == "pushing", "the kill did not land mid-push"

        two.wait_for(lambda: two.get("/v1/status")["leader"]["leading"], 30, "jump2 to take over")
        takeover = time.monotonic() - killed
        print(f"takeover {takeover:.2f} s after kill -9 of the leader")
        assert takeover < TAKEOVER_PROMISE_S

        cs = wait_change_set(two, cs_id, timeout=300)
        assert cs["status"] == "done", cs["counts"]
        counts = sim.write_counts("line", all_live)
        costs = sim.line_costs(all_live)
        for item in ds.items:
            want = item.cost + Decimal("0.33")
            assert sim.item_cost(item.id) == want, item.identifier
            assert {costs[ln.id] for ln in live[item.id]} == {want}, item.identifier
            written = [counts[ln.id] - baseline[ln.id] for ln in live[item.id]]
            assert set(written) == {1}, (
                f"{item.identifier}: a line was written {max(written)} times"
            )
        item_writes = sim.write_counts("item", [it.id for it in ds.items])
        assert all(item_writes[i] - item_base[i] == 1 for i in item_writes), item_writes

        status = two.get("/v1/status")["leader"]
        assert status["holder"].startswith("jump2:") and status["epoch"] == 2
        gains = two.get("/v1/activity", params={"action": "leader.gain"})["entries"]
        assert [e["actor"] for e in reversed(gains)] == ["costrecond@jump1", "costrecond@jump2"]
        assert two.get("/v1/activity/verify")["ok"] is True
        # the restarted daemon follows; the push is not run twice
        one.start()
        assert one.get("/v1/status")["leader"]["leading"] is False
        assert one.get(f"/v1/change-sets/{cs_id}")["change_set"]["status"] == "done"


def _long_poll_until(d: DaemonProcess, since: int, item_id: int, out: dict[str, Any]) -> None:
    """What a TUI does: long-poll from its last id until the item's row changes. Each poll waits
    up to 60 s, so news within seconds means the daemon was woken by the other's write."""
    started = time.monotonic()
    while time.monotonic() - started < 120:
        got = d.get("/v1/events", params={"since": since, "timeout": 60}, timeout=90)
        out.setdefault("events", []).extend(got["events"])
        since = got["last_id"]
        if any(e["kind"] == "rows" and item_id in e["data"]["ids"] for e in got["events"]):
            break
    out["seconds"] = time.monotonic() - started


def test_a_client_of_either_daemon_sees_the_others_approvals_pushes_and_imports_live(
    tmp_path, pg_url
):
    ds = msp_tenant(contracts=6)
    with team(tmp_path, pg_url, ds) as (sim, one, two):
        # a TUI on the leader waits for news; the approval happens on the follower
        since = one.get("/v1/status")["last_event"]
        waiting: dict[str, Any] = {}
        target = rows_by_identifier(two)["EDR-S1-CORE"]
        poll = threading.Thread(target=_long_poll_until, args=(one, since, target["id"], waiting))
        poll.start()
        time.sleep(0.5)
        row = set_vendor_cost(two, target, "4.40")
        poll.join(130)
        assert waiting["seconds"] < 30, "the leader's long poll was not woken by the follower"
        assert any(e["kind"] == "rows" and row["id"] in e["data"]["ids"] for e in waiting["events"])
        # the leader's in-memory table shows the follower's manual cost
        one.wait_for(
            lambda: rows_by_identifier(one)["EDR-S1-CORE"]["vendor_cost"] == "4.4000",
            10,
            "the manual cost on the other daemon",
        )

        # approved on the follower, pushed by the leader: the follower's table follows the push
        cs_id = approve(two, [row]).json()["change_set"]["id"]
        wait_change_set(two, cs_id, timeout=60)
        two.wait_for(
            lambda: (
                (r := rows_by_identifier(two)["EDR-S1-CORE"])["state"] == "done"
                and r["catalog_cost"] == "4.4000"
            ),
            10,
            "the follower's table to show the leader's push",
        )
        feed = two.get("/v1/events", params={"since": since, "timeout": 0})["events"]
        pushes = [e for e in feed if e["kind"] == "push" and e["data"]["change_set_id"] == cs_id]
        assert pushes[-1]["data"]["status"] == "done"
        assert pushes[-1]["data"]["origin"].startswith("jump1:")  # the leader pushed it

        # an import on the leader's inbox reaches the follower's table and feed
        mark = two.get("/v1/status")["last_event"]
        prices = [
            pf.PriceLine("PAX-M365-BP-M", None, "Microsoft 365 Business Premium", Decimal("23.40"))
        ]
        pf.write_generic_csv(one.state / "inbox", prices, name="pax8-prices.csv")
        two.wait_for(
            lambda: rows_by_identifier(two)["M365-BP-M"]["vendor_cost"] == "23.4000",
            30,
            "the other daemon's import in the follower's table",
        )
        news = two.get("/v1/events", params={"since": mark, "timeout": 0})["events"]
        assert any(e["kind"] == "imports" for e in news)
        # reconnecting with the last id still misses nothing and repeats nothing
        ids = [
            e["id"] for e in two.get("/v1/events", params={"since": since, "timeout": 0})["events"]
        ]
        assert ids == sorted(set(ids)) and ids[0] > since


def test_two_daemons_watching_one_inbox_import_each_file_once(tmp_path, pg_url):
    shared = tmp_path / "share"
    inbox = {
        "inbox": {
            "path": str(shared / "inbox"),
            "processed_dir": str(shared / "processed"),
            "failed_dir": str(shared / "failed"),
            "stable_seconds": 0.3,
            "rescan_seconds": 1,
        }
    }
    one = _daemon(tmp_path, "jump1", pg_url, inbox)
    two = _daemon(tmp_path, "jump2", pg_url, inbox)
    with one, two:
        (shared / "inbox").mkdir(parents=True, exist_ok=True)
        staging = tmp_path / "staging"
        staging.mkdir()
        names = []
        for n in range(12):
            lines = [replace(ln, cost=ln.cost + Decimal(n)) for ln in pf.SAMPLE_HARDWARE]
            names.append(pf.write_generic_csv(staging, lines, name=f"prices-{n:02d}.csv").name)
        # the same content under a second name: one import, one duplicate, as with one daemon
        copy = staging / "prices-00-copy.csv"
        copy.write_bytes((staging / names[0]).read_bytes())
        names.append(copy.name)
        for name in names:
            os.replace(staging / name, shared / "inbox" / name)  # appears whole, at once

        def settled() -> list[dict[str, Any]] | None:
            found = one.get("/v1/imports")["imports"]
            left = list((shared / "inbox").iterdir())
            return found if len(found) >= len(names) and not left else None

        one.wait_for(settled, 60, "both daemons to empty the inbox")
        # Settled, rather than a few seconds' sleep: the inbox is empty and neither daemon still
        # tracks a file, so no second import can come.
        one.wait_for(
            lambda: (
                all(d.get("/v1/status")["inbox"]["pending"] == 0 for d in (one, two))
                and not list((shared / "inbox").iterdir())
            ),
            30,
            "neither daemon to track a file",
        )
        imports = one.get("/v1/imports")["imports"]
        by_name: dict[str, list[str]] = {}
        for i in imports:
            by_name.setdefault(i["file_name"], []).append(i["status"])
        assert sorted(by_name) == sorted(names)
        assert all(len(v) == 1 for v in by_name.values()), by_name
        assert sorted(s for v in by_name.values() for s in v) == ["duplicate"] + ["imported"] * 12

        moved = sorted(p.name for p in (shared / "processed").rglob("*") if p.is_file())
        assert moved == sorted(names)  # each moved once: no "(2)" copies, nothing left behind
        reported = one.get("/v1/activity", params={"action": "import.", "limit": 500})["entries"]
        assert sorted(e["subject"] for e in reported) == sorted(names)
        hosts = {e["actor"].rsplit("@", 1)[1] for e in reported}
        assert hosts <= {"jump1", "jump2"}
        print(f"imports by host: {sorted(e['actor'] for e in reported)}")
