"""Approval and push against the ConnectWise simulator with a real daemon process."""

from __future__ import annotations

import random
import threading
import time
from decimal import Decimal

from .psa_fixtures import (
    approve,
    cw_daemon,
    live_lines,
    msp_tenant,
    rows_by_identifier,
    set_vendor_cost,
    wait_change_set,
)


def _sim_line_costs(served, sim, lines):
    return served.call(lambda: {ln.id: sim.line_cost(ln.id) for ln in lines})


def test_cost_table_shows_contract_counts_and_catalogue_costs(tmp_path):
    ds = msp_tenant(contracts=8)
    with cw_daemon(tmp_path, ds) as (sim, served, d):
        rows = rows_by_identifier(d)
        bp = rows["M365-BP-M"]
        expected_contracts = len({ln.contract_id for ln in live_lines(ds, 100)})
        assert bp["contracts"] == expected_contracts
        assert bp["catalog_cost"] == "22.0000"
        assert bp["vendor_cost"] is None and bp["change"] is None
        row = set_vendor_cost(d, bp, "23.10")
        assert row["vendor_cost"] == "23.1000" and row["change"] == "1.1000" and row["change_pct"] == "5.00"
        assert row["vendor_source"]["kind"] == "manual"
        changed = d.get("/v1/costs", params={"changed": 1})["ids"]
        assert changed == [bp["id"]]


def test_single_approval_updates_the_catalogue_item_and_every_contract_line_once(tmp_path):
    ds = msp_tenant(contracts=10)
    with cw_daemon(tmp_path, ds) as (sim, served, d):
        row = set_vendor_cost(d, rows_by_identifier(d)["M365-BP-M"], "23.10")
        preview = approve(d, [row], dry_run=True).json()["preview"]
        lines = live_lines(ds, 100)
        baseline = served.call(lambda: {ln.id: sim.patch_count("addition", ln.id) for ln in ds.lines})
        assert preview["lines"] == len(lines) and preview["items"] == 1
        assert preview["negotiated_lines"] == sum(1 for ln in lines if ln.unit_cost != Decimal("22.00"))
        r = approve(d, [row])
        assert r.status_code == 201, r.text
        cs = wait_change_set(d, r.json()["change_set"]["id"])
        assert cs["status"] == "done", cs
        assert served.call(lambda: sim.item_cost(100)) == Decimal("23.10")
        assert set(_sim_line_costs(served, sim, lines).values()) == {Decimal("23.10")}
        after = served.call(lambda: {ln.id: sim.patch_count("addition", ln.id) for ln in ds.lines})
        assert all(after[ln.id] - baseline[ln.id] == 1 for ln in lines)
        # lines on the cancelled agreement and cancelled lines are left alone
        untouched = [ln for ln in ds.lines if ln.item_id == 100 and ln not in lines]
        assert untouched and all(after[ln.id] == baseline[ln.id] for ln in untouched)
        # the mirror follows the verified writes: the row is no longer changed
        after = rows_by_identifier(d)["M365-BP-M"]
        assert after["catalog_cost"] == "23.1000" and after["change"] == "0.0000" and after["state"] == "done"
        actions = [e["action"] for e in d.get("/v1/activity")["entries"]]
        assert "approve" in actions and "push.item" in actions and "push.done" in actions


def test_policy_matching_leaves_negotiated_lines_alone(tmp_path):
    ds = msp_tenant(contracts=10, negotiated_every=3)
    with cw_daemon(tmp_path, ds) as (sim, served, d):
        row = set_vendor_cost(d, rows_by_identifier(d)["M365-BS-M"], "13.00")
        cs = wait_change_set(d, approve(d, [row], policy="matching").json()["change_set"]["id"])
        assert cs["status"] == "done"
        for ln in live_lines(ds, 101):
            now = served.call(lambda ln=ln: sim.line_cost(ln.id))
            assert now == (Decimal("13.00") if ln.unit_cost == Decimal("12.50") else ln.unit_cost)


def test_a_line_changed_behind_our_back_is_a_conflict_not_overwritten(tmp_path):
    ds = msp_tenant(contracts=6)
    with cw_daemon(tmp_path, ds) as (sim, served, d):
        row = set_vendor_cost(d, rows_by_identifier(d)["EDR-S1-CORE"], "4.60")
        victim = live_lines(ds, 102)[0]
        served.call(lambda: sim.set_line_cost(victim.id, Decimal("9.99")))
        cs = wait_change_set(d, approve(d, [row]).json()["change_set"]["id"])
        assert cs["status"] == "partial"
        assert served.call(lambda: sim.line_cost(victim.id)) == Decimal("9.99")
        conflicts = [s for s in cs["steps"] if s["status"] == "conflict"]
        assert [s["target_psa_id"] for s in conflicts] == [str(victim.id)]
        assert "9.99" in conflicts[0]["message"]
        assert rows_by_identifier(d)["EDR-S1-CORE"]["state"] == "conflict"
        entry = d.get("/v1/activity", params={"action": "push.line.conflict"})["entries"]
        assert entry and entry[0]["subject"].startswith("EDR-S1-CORE")


def test_missing_agreement_edit_right_stops_with_the_connectwise_setting(tmp_path):
    ds = msp_tenant(contracts=4)
    with cw_daemon(tmp_path, ds) as (sim, served, d):
        served.call(lambda: sim.set_role(agreements_edit=False))
        row = set_vendor_cost(d, rows_by_identifier(d)["DNS-FILTER"], "1.25")
        cs = wait_change_set(d, approve(d, [row]).json()["change_set"]["id"])
        assert cs["status"] == "denied"
        assert "Finance > Agreements" in cs["message"]
        assert all(served.call(lambda ln=ln: sim.line_cost(ln.id)) == ln.unit_cost for ln in live_lines(ds, 105))


def test_injected_429_and_5xx_at_10_percent_still_finish_with_every_line_correct(tmp_path):
    ds = msp_tenant(contracts=20)
    with cw_daemon(tmp_path, ds) as (sim, served, d):
        rows = rows_by_identifier(d)
        chosen = [set_vendor_cost(d, rows[i], c) for i, c in (("M365-BP-M", "23.00"), ("BKP-DATTO-SaaS", "3.40"))]

        def faults():
            sim.knobs.error_rate = 0.1
            sim.knobs.rate_limit = 40
            sim.knobs.retry_after = 1

        served.call(faults)
        cs = wait_change_set(d, approve(d, chosen).json()["change_set"]["id"], timeout=180)
        assert cs["status"] == "done", cs["counts"]
        for item_id, cost in ((100, "23.00"), (103, "3.40")):
            assert set(_sim_line_costs(served, sim, live_lines(ds, item_id)).values()) == {Decimal(cost)}


def test_undo_restores_the_before_values(tmp_path):
    ds = msp_tenant(contracts=6, negotiated_every=4)
    with cw_daemon(tmp_path, ds) as (sim, served, d):
        row = set_vendor_cost(d, rows_by_identifier(d)["EMAIL-PP-ESS"], "3.05")
        first = wait_change_set(d, approve(d, [row]).json()["change_set"]["id"])
        assert first["status"] == "done"
        r = d.request("POST", f"/v1/change-sets/{first['id']}/undo", json={})
        assert r.status_code == 201, r.text
        undo = wait_change_set(d, r.json()["change_set"]["id"])
        assert undo["status"] == "done" and undo["undo_of"] == first["id"]
        assert served.call(lambda: sim.item_cost(104)) == Decimal("2.75")
        for ln in live_lines(ds, 104):
            assert served.call(lambda ln=ln: sim.line_cost(ln.id)) == ln.unit_cost
        again = d.request("POST", f"/v1/change-sets/{first['id']}/undo", json={})
        assert again.status_code == 409 and "already undone" in again.json()["error"]["message"]


def test_stale_catalogue_cost_is_refused_with_the_current_value(tmp_path):
    ds = msp_tenant(contracts=3)
    with cw_daemon(tmp_path, ds) as (sim, served, d):
        row = set_vendor_cost(d, rows_by_identifier(d)["M365-BP-M"], "23.10")
        row["catalog_cost"] = "21.00"
        r = approve(d, [row])
        assert r.status_code == 409
        err = r.json()["error"]
        assert err["code"] == "stale" and err["data"]["current"] == "22.0000"


def test_two_concurrent_approvals_of_one_item_create_one_change_set(tmp_path):
    ds = msp_tenant(contracts=4)
    with cw_daemon(tmp_path, ds) as (sim, served, d):
        row = set_vendor_cost(d, rows_by_identifier(d)["M365-BS-M"], "12.90")
        results = []
        barrier = threading.Barrier(2)

        def go():
            barrier.wait()
            results.append(approve(d, [row]).status_code)

        threads = [threading.Thread(target=go) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [201, 409]
        assert len(d.get("/v1/change-sets")["change_sets"]) == 1


def test_kill_9_five_times_during_a_big_push_ends_with_every_line_written_once(tmp_path):
    ds = msp_tenant(contracts=120, lines_per_item=3)  # 6 items x 120 x 3 = 2,160 lines
    with cw_daemon(tmp_path, ds, concurrency=4) as (sim, served, d):
        served.call(lambda: setattr(sim.knobs, "latency", 0.004))
        rows = rows_by_identifier(d)
        chosen = [set_vendor_cost(d, rows[p], str(Decimal(rows[p]["catalog_cost"]) + Decimal("0.33")))
                  for p in rows]
        cs_id = approve(d, chosen).json()["change_set"]["id"]
        baseline = served.call(lambda: {ln.id: sim.patch_count("addition", ln.id) for ln in ds.lines})
        rng = random.Random(11)
        for _ in range(5):
            time.sleep(rng.uniform(0.3, 1.5))
            d.kill9()
            d.start()
        cs = wait_change_set(d, cs_id, timeout=300)
        assert cs["status"] == "done", cs["counts"]
        for item in ds.items:
            lines = live_lines(ds, item.id)
            want = item.cost + Decimal("0.33")
            costs = _sim_line_costs(served, sim, lines)
            assert set(costs.values()) == {want}, item.identifier
            counts = served.call(lambda lines=lines: [sim.patch_count("addition", ln.id) - baseline[ln.id]
                                                      for ln in lines])
            assert set(counts) == {1}, f"{item.identifier}: a line was written {max(counts)} times"
        pushed = d.get("/v1/activity", params={"action": "push.item", "limit": 50})["entries"]
        assert {e["subject"] for e in pushed} == {i.identifier for i in ds.items}
        assert d.get("/v1/activity/verify")["ok"]
