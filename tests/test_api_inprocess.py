"""API tier: the daemon's HTTP API with the real ``Daemon`` wiring in this process (a thread,
its own event loop, the API on its Unix socket), no process boundary. Moved from
test_daemon.py (assertions kept); the process-level behaviour stays there, marked slow."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from .harness import ThreadedDaemon


def test_malformed_bodies_are_400_naming_the_field(tmp_path):
    with ThreadedDaemon(tmp_path) as d:
        r = d.request("POST", "/v1/change-sets", content=b"{not json")
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_json"
        r = d.request(
            "POST",
            "/v1/change-sets",
            json={"items": [{"item_id": 1, "cost": "abc", "seen_catalog_cost": None}]},
        )
        assert r.status_code == 400 and "cost" in r.json()["error"]["message"]
        r = d.request("GET", "/v1/nope")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = d.request("GET", "/v1/activity", params={"limit": "ten"})
        assert r.status_code == 400 and "limit" in r.json()["error"]["message"]


def test_events_resume_from_the_last_id_after_a_restart(tmp_path):
    d = ThreadedDaemon(tmp_path).start()
    first = d.get("/v1/events", params={"since": 0, "timeout": 0})
    assert first["events"], "daemon.start should have produced an event"
    last = first["last_id"]
    d.stop()
    d.start()
    again = d.get("/v1/events", params={"since": last, "timeout": 5})
    kinds = [(e["kind"], e["data"].get("action")) for e in again["events"]]
    assert ("activity", "daemon.stop") in kinds and ("activity", "daemon.start") in kinds
    assert all(e["id"] > last for e in again["events"])
    # NDJSON streaming form delivers the same events
    with d.http() as c, c.stream("GET", "/v1/events", params={"since": last, "stream": 1}) as resp:
        got = []
        for line in resp.iter_lines():
            got.append(json.loads(line)["id"])
            if len(got) == len(again["events"]):
                break
    assert got == [e["id"] for e in again["events"]]
    d.stop()


def test_activity_verify_detects_a_tampered_entry(tmp_path):
    import sqlite3

    d = ThreadedDaemon(tmp_path).start()
    d.stop()
    d.start()
    assert d.get("/v1/activity/verify")["ok"] is True
    d.stop()
    db = sqlite3.connect(tmp_path / "state" / "costrecon.db")
    db.execute("UPDATE activity SET actor = 'mallory' WHERE id = 2")
    db.commit()
    db.close()
    d.start()
    result = d.get("/v1/activity/verify")
    assert result["ok"] is False and result["first_broken"] == 2
    r = d.tui_cli("activity", "verify")
    assert r.returncode == 1 and "entry 2" in r.stdout
    d.stop()


async def test_api_errors_name_the_field_and_the_current_value(daemon):
    """Through the TUI's client: a stale approval is 409 naming the current cost, an unknown change
    set 404, a negative manual cost 400 — one sentence each, never a traceback."""
    from costrecon_tui.client import ApprovalItem, DaemonError

    view = await daemon.client.cost_view()
    row = (await daemon.client.cost_rows(view.ids[:1]))[0]
    stale = [ApprovalItem(row.id, Decimal("1.23"), (row.catalog_cost or 0) + 1)]
    with pytest.raises(DaemonError) as exc:
        await daemon.client.preview_change_set(stale)
    assert exc.value.status == 409 and exc.value.code == "stale"
    assert exc.value.data["current"] == str(row.catalog_cost.quantize(Decimal("0.0001")))
    with pytest.raises(DaemonError) as exc:
        await daemon.client.change_set(999)
    assert exc.value.status == 404 and "Traceback" not in str(exc.value)
    with pytest.raises(DaemonError) as exc:
        await daemon.client.set_manual_cost(row.id, Decimal("-1"))
    assert exc.value.status == 400 and "Traceback" not in str(exc.value)


async def test_status_reports_the_psa_the_counts_and_the_socket(daemon):
    status = await daemon.client.status()
    assert status["psa"]["kind"] == "connectwise" and status["psa"]["connected"] is True
    assert status["psa"]["last_sync"] and status["counts"]["items"] > 0
    assert status["daemon"]["socket"] == str(daemon.socket)
    assert status["events"]["last_id"] >= 1
    started = await daemon.client.sync_now()
    assert started
