"""``GET /v1/status`` names every PSA permission the daemon checked (issue 20 item 7): the Sync
view shows each with ✓/✗ and the fix for each ✗."""

from __future__ import annotations

from costrecon_daemon.sim.dataset import generate

from .psa_fixtures import psa_daemon


def test_status_lists_each_checked_permission_with_its_fix(tmp_path):
    with psa_daemon(tmp_path, generate("tiny"), "connectwise") as (sim, d):
        psa = d.get("/v1/status")["psa"]
        caps = {p["capability"]: p for p in psa["permissions"]}
        assert {"read_catalog", "edit_catalog", "read_lines", "edit_lines"} <= set(caps)
        assert all(p["ok"] is True and p["fix"] is None for p in caps.values())
        assert psa["permission_problems"] == []

        sim.deny_line_edit()
        # The check runs when the daemon connects to the PSA.
        d.stop()
        d.start()
        # last_sync survives the restart: wait for this run's check instead.
        psa = d.wait_for(
            lambda: (p := d.get("/v1/status")["psa"])["permissions"] and p,
            what="the permission check after the restart",
        )
        caps = {p["capability"]: p for p in psa["permissions"]}
        assert caps["edit_lines"]["ok"] is False
        assert "Finance > Agreements" in caps["edit_lines"]["fix"]
        assert caps["read_catalog"]["ok"] is True
