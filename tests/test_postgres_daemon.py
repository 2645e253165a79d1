"""One daemon on a real PostgreSQL, as a team install starts: ``database_url`` is the only
change. It migrates an empty database, mirrors the PSA, imports a price file, pushes a bulk
approval with every line written once, keeps a verifiable activity log and a numbered event feed,
and finds it all again after a restart."""

from __future__ import annotations

import shutil
from decimal import Decimal

import pytest

from costrecon_daemon.store import head_revision

from . import pricefiles as pf
from .psa_fixtures import (
    approve,
    live_lines,
    msp_tenant,
    psa_daemon,
    rows_by_identifier,
    set_vendor_cost,
    wait_change_set,
)

# A daemon process restarted on PostgreSQL.
pytestmark = pytest.mark.slow


D = Decimal


def test_a_daemon_on_postgresql_syncs_imports_pushes_and_keeps_its_log_across_a_restart(
    tmp_path, pg_url
):
    ds = msp_tenant(contracts=10)
    with psa_daemon(tmp_path, ds, extra={"daemon": {"database_url": pg_url}}, process=True) as (
        sim,
        d,
    ):
        assert d.get("/v1/health")["schema_version"] == head_revision()
        assert not (d.state / "costrecon.db").exists()  # no SQLite file beside a server
        status = d.get("/v1/status")
        assert status["counts"]["items"] >= 6 and status["counts"]["lines"] > 0

        # a vendor price file through the inbox (the bulk insert path of the importer)
        inbox = d.state / "inbox"
        d.wait_for(inbox.is_dir, 10, "the inbox")
        source = pf.write_generic_csv(tmp_path, pf.SAMPLE_HARDWARE, name="hardware.csv")
        shutil.copy(source, inbox / "hardware.csv")
        record = d.wait_for(
            lambda: next(
                (i for i in d.get("/v1/imports")["imports"] if i["file_name"] == "hardware.csv"),
                None,
            ),
            30,
            "the import",
        )
        assert record["status"] == "imported"
        assert record["rows_imported"] == len(pf.SAMPLE_HARDWARE)

        # a bulk approval of three items, pushed once to the catalogue and every live line
        table = rows_by_identifier(d)
        new = {100: "23.1000", 101: "13.0500", 102: "4.6000"}
        rows = [set_vendor_cost(d, table[sim.identifier(i)], cost) for i, cost in new.items()]
        lines = [ln for i in new for ln in live_lines(ds, i)]
        before = sim.write_counts("line", [ln.id for ln in lines])
        r = approve(d, rows)
        assert r.status_code == 201, r.text
        cs = wait_change_set(d, r.json()["change_set"]["id"])
        assert cs["status"] == "done", cs
        after = sim.write_counts("line", [ln.id for ln in lines])
        assert all(after[ln.id] - before[ln.id] == 1 for ln in lines)
        for i, cost in new.items():
            assert sim.item_cost(i) == D(cost)
            assert set(sim.line_costs(ln.id for ln in live_lines(ds, i)).values()) == {D(cost)}

        assert d.get("/v1/activity/verify")["ok"] is True
        feed = d.get("/v1/events", params={"since": 0, "timeout": 0})["events"]
        ids = [e["id"] for e in feed]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert {"activity"} <= {e["kind"] for e in feed}
        last_event = ids[-1]
        entries = len(d.get("/v1/activity", params={"limit": 5000})["entries"])

        d.stop()
        d.start()
        assert d.get("/v1/health")["schema_version"] == head_revision()
        after_restart = rows_by_identifier(d)[sim.identifier(100)]
        assert after_restart["catalog_cost"] == "23.1000" and after_restart["state"] == "done"
        verify = d.get("/v1/activity/verify")
        assert verify["ok"] is True and verify["checked"] > entries  # + daemon.stop/start
        # a client reconnecting with its last id gets only what came after
        newer = d.get("/v1/events", params={"since": last_event, "timeout": 0})["events"]
        assert newer and all(e["id"] > last_event for e in newer)
