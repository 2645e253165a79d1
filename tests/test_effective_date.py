"""Effective dates on approvals (issue 18 item 4): a future date makes a scheduled change set,
journaled at once, kept across a restart, pushed exactly once when its day comes, cancellable.

The daemon runs in a thread of this process (``ThreadedDaemon``) against the ConnectWise
simulator over loopback; "today" is the push worker's injectable clock, so the test moves time
instead of waiting for it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from .psa_fixtures import (
    follow_recording,
    msp_tenant,
    psa_daemon,
    rows_by_identifier,
    set_vendor_cost,
)

TODAY = dt.date.today()
LATER = TODAY + dt.timedelta(days=30)


def _approve(d, rows, effective=None, dry_run=False):
    body = {
        "items": [
            {"item_id": r["id"], "cost": r["vendor_cost"], "seen_catalog_cost": r["catalog_cost"]}
            for r in rows
        ],
        "dry_run": dry_run,
    }
    if effective is not None:
        body["effective_date"] = effective
    return follow_recording(d, d.request("POST", "/v1/change-sets", json=body))


def _set_today(d, day):
    """Move the daemon's clock and wake its push worker (as its timer would at midnight)."""
    push = d._daemon.push
    push.today = lambda: day
    d._loop.call_soon_threadsafe(push.wakeup.set)


def wait_change_set(d, cs_id, timeout=60):
    """Until the set has finished (psa_fixtures' helper would return a still scheduled one)."""
    return d.wait_for(
        lambda: (
            (cs := d.get(f"/v1/change-sets/{cs_id}")["change_set"])["status"]
            not in ("scheduled", "pending", "pushing")
            and cs
        ),
        timeout,
        f"change set {cs_id}",
    )


def _actions(d, cs_id):
    entries = d.get("/v1/activity", params={"limit": 200})["entries"]
    return [e["action"] for e in entries if (e.get("details") or {}).get("change_set_id") == cs_id]


def test_a_future_dated_approval_waits_survives_a_restart_and_pushes_once_on_its_day(tmp_path):
    ds = msp_tenant(contracts=3)
    with psa_daemon(tmp_path, ds, "connectwise") as (sim, d):
        row = set_vendor_cost(d, rows_by_identifier(d)[sim.identifier(100)], "23.00")
        preview = _approve(d, [row], LATER.isoformat(), dry_run=True).json()["preview"]
        assert preview["effective_date"] == LATER.isoformat()
        assert "ConnectWise" in preview["effective_date_handling"]
        r = _approve(d, [row], LATER.isoformat())
        assert r.status_code == 201, r.text
        cs = r.json()["change_set"]
        assert cs["status"] == "scheduled" and cs["effective_date"] == LATER.isoformat()
        assert rows_by_identifier(d)[sim.identifier(100)]["state"] == "scheduled"
        assert "approve" in _actions(d, cs["id"])
        # the worker runs its loop; nothing is sent before the day
        d._loop.call_soon_threadsafe(d._daemon.push.wakeup.set)
        d.wait_for(lambda: d._daemon.push.current is None or None, 10, "worker idle")
        assert sim.item_cost(100) == Decimal("22.00") and sim.write_count("item", 100) == 0

        d.stop()
        d.start()
        again = d.get(f"/v1/change-sets/{cs['id']}")["change_set"]
        assert again["status"] == "scheduled" and again["effective_date"] == LATER.isoformat()
        assert rows_by_identifier(d)[sim.identifier(100)]["state"] == "scheduled"
        # a second approval of the same item is refused while it is scheduled (busy)
        assert _approve(d, [row]).status_code == 409

        _set_today(d, LATER)
        done = wait_change_set(d, cs["id"], timeout=60)
        assert done["status"] == "done"
        assert sim.item_cost(100) == Decimal("23.00")
        assert sim.write_count("item", 100) == 1
        # the worker keeps running on the same day: the set is not pushed a second time
        _set_today(d, LATER + dt.timedelta(days=1))
        d.wait_for(lambda: d._daemon.push.current is None or None, 10, "worker idle")
        assert sim.write_count("item", 100) == 1
        assert _actions(d, cs["id"]).count("push.done") == 1
        # cancelling a set that has run is refused, with a sentence saying what to do
        r = d.request("POST", f"/v1/change-sets/{cs['id']}/cancel")
        assert r.status_code == 409 and "undo" in r.json()["error"]["message"]


def test_a_cancelled_scheduled_set_never_pushes(tmp_path):
    ds = msp_tenant(contracts=3)
    with psa_daemon(tmp_path, ds, "connectwise") as (sim, d):
        row = set_vendor_cost(d, rows_by_identifier(d)[sim.identifier(100)], "23.00")
        cs = _approve(d, [row], LATER.isoformat()).json()["change_set"]
        r = d.request("POST", f"/v1/change-sets/{cs['id']}/cancel")
        assert r.status_code == 200, r.text
        assert r.json()["change_set"]["status"] == "cancelled"
        assert r.json()["change_set"]["counts"]["cancelled"] == cs["total"]
        assert "cancel" in _actions(d, cs["id"])
        assert rows_by_identifier(d)[sim.identifier(100)]["state"] == ""
        _set_today(d, LATER)
        d.wait_for(lambda: d._daemon.push.current is None or None, 10, "worker idle")
        assert d.get(f"/v1/change-sets/{cs['id']}")["change_set"]["status"] == "cancelled"
        assert sim.write_count("item", 100) == 0 and sim.item_cost(100) == Decimal("22.00")
        # the item is free again: it can be approved at once
        r = _approve(d, [row])
        assert r.status_code == 201 and r.json()["change_set"]["status"] == "pending"


def test_past_and_malformed_effective_dates_are_refused(tmp_path):
    ds = msp_tenant(contracts=2)
    with psa_daemon(tmp_path, ds, "connectwise") as (sim, d):
        row = set_vendor_cost(d, rows_by_identifier(d)[sim.identifier(100)], "23.00")
        past = (TODAY - dt.timedelta(days=1)).isoformat()
        for bad, word in ((past, "past"), ("2027-02-30", "real date"), ("soon", "YYYY-MM-DD")):
            r = _approve(d, [row], bad)
            assert r.status_code == 400 and word in r.json()["error"]["message"], r.text
        # today is "at once": an ordinary pending set
        r = _approve(d, [row], TODAY.isoformat())
        assert r.json()["change_set"]["status"] in ("pending", "pushing", "done")
        assert r.json()["change_set"]["effective_date"] is None


def test_the_cli_schedules_with_effective_refuses_bad_dates_and_cancels(tmp_path):
    ds = msp_tenant(contracts=2)
    with psa_daemon(tmp_path, ds, "connectwise") as (sim, d):
        ident = sim.identifier(100)
        set_vendor_cost(d, rows_by_identifier(d)[ident], "23.00")
        past = (TODAY - dt.timedelta(days=2)).isoformat()
        for bad, word in ((past, "in the past"), ("2027-13-01", "YYYY-MM-DD"), ("next", "real")):
            out = d.tui_cli("approve", ident, "--yes", "--effective", bad)
            assert out.returncode == 2 and word in out.stderr, out.stderr
            # one sentence, no traceback
            assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
        assert d.get("/v1/change-sets")["change_sets"] == []

        dry = d.tui_cli("approve", ident, "--dry-run", "--effective", LATER.isoformat())
        assert dry.returncode == 0 and "scheduled" in dry.stdout and "ConnectWise" in dry.stdout
        out = d.tui_cli("approve", ident, "--yes", "--effective", LATER.isoformat())
        assert out.returncode == 0, out.stderr
        assert f"scheduled for {LATER.isoformat()}" in out.stdout
        cs = d.get("/v1/change-sets")["change_sets"][0]
        assert cs["status"] == "scheduled"
        table = d.tui_cli("costs", "--filter", ident)
        assert "scheduled" in table.stdout

        out = d.tui_cli("cancel", str(cs["id"]))
        assert out.returncode == 0 and "cancelled" in out.stdout, out.stderr
        assert d.get(f"/v1/change-sets/{cs['id']}")["change_set"]["status"] == "cancelled"
        again = d.tui_cli("cancel", str(cs["id"]))
        assert again.returncode != 0 and "not scheduled" in again.stderr
        assert len(again.stderr.strip().splitlines()) == 1
        assert sim.write_count("item", 100) == 0


def test_a_target_moved_before_the_day_is_a_conflict_not_overwritten(tmp_path):
    ds = msp_tenant(contracts=2)
    with psa_daemon(tmp_path, ds, "connectwise") as (sim, d):
        row = set_vendor_cost(d, rows_by_identifier(d)[sim.identifier(100)], "23.00")
        cs = _approve(d, [row], LATER.isoformat()).json()["change_set"]
        sim.set_item_cost(100, "22.50")  # someone edits the item in the PSA meanwhile
        _set_today(d, LATER)
        done = wait_change_set(d, cs["id"], timeout=60)
        assert done["counts"]["conflict"] >= 1 and done["status"] in ("partial", "failed")
        assert sim.item_cost(100) == Decimal("22.50")
        assert sim.write_count("item", 100) == 0
