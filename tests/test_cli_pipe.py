"""`costrecon … | head`: every command ends quietly when its reader closes the pipe early."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from costrecon_tui.cli import EXIT_PIPE

from .harness import DaemonProcess
from .psa_fixtures import cw_daemon, msp_tenant

# `costrecon` as a process whose stdout pipe closes is the point: the slow tier.
pytestmark = pytest.mark.slow


def _into_closed_pipe(d: DaemonProcess, *args: str) -> tuple[int, str]:
    """Run a command whose stdout reader has already gone (as `head` does once it has its
    lines): its first write meets a closed pipe."""
    env = dict(os.environ, COSTRECON_CONFIG=str(d.config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "costrecon_tui.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=60), err


def test_every_command_exits_quietly_when_the_reader_closes_the_pipe(tmp_path):
    with cw_daemon(tmp_path, msp_tenant(contracts=5)) as (_sim, _served, d):
        ids = d.get("/v1/costs")["ids"]
        with d.http() as c:
            rows = {
                r["identifier"]: r
                for r in c.post("/v1/costs/rows", json={"ids": ids}).json()["rows"]
            }
            c.put(
                f"/v1/costs/{rows['DNS-FILTER']['id']}/manual", json={"cost": "1.30"}
            ).raise_for_status()
        done = d.tui_cli("approve", "DNS-FILTER", "--yes", "--wait")
        assert done.returncode == 0, done.stderr
        cs_id = str(d.get("/v1/change-sets")["change_sets"][0]["id"])

        commands = [
            ["costs"],
            ["costs", "--json"],
            ["costs", "--changed", "--filter", "dns"],
            ["approve", "DNS-FILTER", "--dry-run"],
            ["undo", cs_id, "--dry-run"],
            ["sync"],
            ["activity", "tail", "--no-follow"],
            ["activity", "tail"],  # following: ends at its first write, not at Ctrl-C
            ["activity", "verify"],
            ["activity", "export", "--csv", str(tmp_path / "activity.csv")],
            ["--version"],
            ["--help"],
            ["demo", "--help"],
        ]
        for args in commands:
            code, err = _into_closed_pipe(d, *args)
            assert err == "", f"costrecon {' '.join(args)} printed on stderr:\n{err}"
            # argparse's own output (--help, --version) swallows the error and exits 0
            assert code in (EXIT_PIPE, 0), f"costrecon {' '.join(args)} exited {code}"
            if args[0] in ("costs", "approve", "undo", "sync", "activity"):
                assert code == EXIT_PIPE, f"costrecon {' '.join(args)} claimed success"

        # and with a reader, the same commands still print in full
        out = d.tui_cli("costs", "--json")
        assert out.returncode == 0 and '"DNS-FILTER"' in out.stdout
