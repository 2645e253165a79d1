"""`--wait` means what it says (issue 13 item 13): `costrecon sync --full --wait`, `approve --wait`
and `undo --wait` return only when the cost table shows what they did, so a script that runs
`costrecon costs --json` right after sees it. Also the change-set API a script (or the TUI's
Activity view) reads: request ids and the paged steps of a change set."""

from __future__ import annotations

import json
from decimal import Decimal

from .psa_fixtures import cw_daemon, follow_recording, msp_tenant


def _row(d, identifier: str) -> dict:
    out = d.tui_cli("costs", "--json")
    assert out.returncode == 0, out.stderr
    return next(r for r in json.loads(out.stdout) if r["identifier"] == identifier)


def test_a_script_that_waits_then_reads_sees_what_sync_approve_and_undo_did(tmp_path):
    ds = msp_tenant(contracts=5)
    with cw_daemon(tmp_path, ds) as (sim, served, d):
        # Someone raised the catalogue cost in the PSA; a full sync brings it.
        served.call(lambda: sim.set_item_cost(105, Decimal("1.40")))
        synced = d.tui_cli("sync", "--full", "--wait")
        assert synced.returncode == 0, synced.stdout + synced.stderr
        assert Decimal(_row(d, "DNS-FILTER")["catalog_cost"]) == Decimal("1.40")

        row = _row(d, "DNS-FILTER")
        d.request("PUT", f"/v1/costs/{row['id']}/manual", json={"cost": "1.55"})
        done = d.tui_cli("approve", "DNS-FILTER", "--yes", "--wait")
        assert done.returncode == 0, done.stdout + done.stderr
        after = _row(d, "DNS-FILTER")
        assert (Decimal(after["catalog_cost"]), after["state"]) == (Decimal("1.55"), "done")

        cs_id = d.get("/v1/change-sets")["change_sets"][0]["id"]
        undone = d.tui_cli("undo", str(cs_id), "--yes", "--wait")
        assert undone.returncode == 0, undone.stdout + undone.stderr
        back = _row(d, "DNS-FILTER")
        # Restored in the PSA and the table; the vendor cost still differs, so not "done".
        assert Decimal(back["catalog_cost"]) == Decimal("1.40")
        assert back["state"] == ""


def test_request_ids_and_the_steps_of_a_change_set_over_the_api(tmp_path):
    ds = msp_tenant(contracts=5)
    with cw_daemon(tmp_path, ds) as (sim, served, d):
        ids = d.get("/v1/costs")["ids"]
        with d.http() as c:
            rows = c.post("/v1/costs/rows", json={"ids": ids}).json()["rows"]
            row = next(r for r in rows if r["identifier"] == "M365-BP-M")
            body = {
                "items": [
                    {
                        "item_id": row["id"],
                        "cost": "23.10",
                        "seen_catalog_cost": row["catalog_cost"],
                    }
                ],
                "policy": "all",
                "request_id": "script-0042",
            }
            first = follow_recording(d, c.post("/v1/change-sets", json=body))
            again = follow_recording(d, c.post("/v1/change-sets", json=body))
            assert first.status_code == 201 and again.status_code == 201
            cs = first.json()["change_set"]
            assert again.json()["change_set"]["id"] == cs["id"]
            assert [s["id"] for s in c.get("/v1/change-sets").json()["change_sets"]] == [cs["id"]]
            found = c.get("/v1/change-sets", params={"request_id": "script-0042"}).json()
            assert [s["id"] for s in found["change_sets"]] == [cs["id"]]
            none = c.get("/v1/change-sets", params={"request_id": "never-sent"}).json()
            assert none["change_sets"] == []

            d.wait_for(
                lambda: (
                    c.get(f"/v1/change-sets/{cs['id']}", params={"steps": 0}).json()["change_set"][
                        "status"
                    ]
                    == "done"
                ),
                60,
                "the push",
            )
            page = c.get(
                f"/v1/change-sets/{cs['id']}/steps", params={"status": "done", "limit": 2}
            ).json()
            assert page["total"] == cs["total"] and len(page["steps"]) == 2
            step = page["steps"][1]
            assert step["target"] == "line" and step["contract"]
            assert (step["before"], step["after"], step["value"], step["status"]) == (
                "22.0000",
                "23.1000",
                "23.1000",
                "done",
            )
            rest = c.get(
                f"/v1/change-sets/{cs['id']}/steps", params={"offset": 2, "limit": 500}
            ).json()
            assert rest["total"] == cs["total"] and len(rest["steps"]) == cs["total"] - 2
            bad = c.get(f"/v1/change-sets/{cs['id']}/steps", params={"status": "finished"})
            assert (
                bad.status_code == 400 and "status must be one of" in bad.json()["error"]["message"]
            )
            missing = c.get("/v1/change-sets/999/steps")
            assert missing.status_code == 404
