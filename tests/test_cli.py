"""The `costrecon` commands for scripts and people without the TUI, against a real daemon."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest

from costrecon_tui.export import write_csv

from .harness import DaemonProcess
from .psa_fixtures import cw_daemon, live_lines, msp_tenant

# The `costrecon` command line as a user runs it: subprocesses.
pytestmark = pytest.mark.slow


def test_costs_approve_and_undo_from_the_command_line(tmp_path):
    ds = msp_tenant(contracts=5)
    with cw_daemon(tmp_path, ds) as (sim, served, d):
        ids = d.get("/v1/costs")["ids"]
        with d.http() as c:
            rows = {
                r["identifier"]: r
                for r in c.post("/v1/costs/rows", json={"ids": ids}).json()["rows"]
            }
            c.put(
                f"/v1/costs/{rows['DNS-FILTER']['id']}/manual", json={"cost": "1.30"}
            ).raise_for_status()

        out = d.tui_cli("costs", "--changed", "--json")
        assert out.returncode == 0, out.stderr
        changed = json.loads(out.stdout)
        assert [r["identifier"] for r in changed] == ["DNS-FILTER"]
        assert (
            changed[0]["vendor_cost"] == "1.3000"
            and changed[0]["vendor_source"]["kind"] == "manual"
        )

        table = d.tui_cli("costs", "--filter", "dns")
        assert (
            "DNS-FILTER" in table.stdout and "+0.15" in table.stdout and "M365" not in table.stdout
        )

        dry = d.tui_cli("approve", "DNS-FILTER", "--dry-run")
        assert dry.returncode == 0 and "Approval preview" in dry.stdout and "1.15" in dry.stdout
        assert d.get("/v1/change-sets")["change_sets"] == []  # a dry run writes nothing

        no_prompt = d.tui_cli("approve", "DNS-FILTER")  # no terminal to ask on: refuse, don't guess
        assert no_prompt.returncode == 2 and "--yes" in no_prompt.stderr

        done = d.tui_cli("approve", "DNS-FILTER", "--yes", "--wait")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "done" in done.stdout
        assert served.call(lambda: sim.item_cost(105)) == Decimal("1.30")
        assert all(
            served.call(lambda ln=ln: sim.line_cost(ln.id)) == Decimal("1.30")
            for ln in live_lines(ds, 105)
        )

        cs_id = d.get("/v1/change-sets")["change_sets"][0]["id"]
        undo = d.tui_cli("undo", str(cs_id), "--yes", "--wait")
        assert undo.returncode == 0, undo.stdout + undo.stderr
        assert served.call(lambda: sim.item_cost(105)) == Decimal("1.15")

        unknown = d.tui_cli("approve", "NOPE-1", "--yes")
        assert unknown.returncode == 2 and "NOPE-1" in unknown.stderr

        tail = d.tui_cli("activity", "tail", "--no-follow", "-n", "50")
        assert tail.returncode == 0 and "approve" in tail.stdout and "undo" in tail.stdout
        export = tmp_path / "activity.csv"
        r = d.tui_cli("activity", "export", "--csv", str(export))
        assert r.returncode == 0, r.stderr
        exported = list(csv.DictReader(export.open()))
        assert len(exported) == len(d.get("/v1/activity", params={"limit": 5000})["entries"])
        assert {"approve", "undo", "push.done"} <= {e["action"] for e in exported}
        assert d.tui_cli("activity", "verify").stdout.startswith("Activity log intact")


def test_exported_cells_cannot_become_spreadsheet_formulas():
    out = io.StringIO()
    write_csv(
        [
            {
                "id": 1,
                "at": "2026-01-01T00:00:00Z",
                "actor": "@admin",
                "action": "cost.manual.set",
                "subject": '=HYPERLINK("http://x")',
                "before": "+1",
                "after": "-2",
                "details": {"note": "ok"},
            }
        ],
        out,
    )
    row = list(csv.reader(io.StringIO(out.getvalue())))[1]
    assert row[2] == "'@admin" and row[4].startswith("'=") and row[5] == "'+1" and row[6] == "'-2"
    assert row[7] == '{"note": "ok"}'


def test_commands_say_how_to_start_a_daemon_that_is_not_running(tmp_path):
    d = DaemonProcess(tmp_path)
    r = d.tui_cli("costs")
    assert r.returncode == 3
    assert "costrecond is not running" in r.stderr and "costrecond start" in r.stderr
    assert "Traceback" not in r.stderr
