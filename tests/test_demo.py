"""`costrecon demo` for every PSA: a simulated tenant synced, sample files imported, all cleaned
up."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import pytest

from .harness import kill_daemon_of

# The demo is a program of its own: run as a subprocess.
pytestmark = pytest.mark.slow


def _get(sock, path):
    with httpx.Client(
        transport=httpx.HTTPTransport(uds=str(sock), verify=False), base_url="http://d", timeout=10
    ) as c:
        return c.get(path).json()


@pytest.mark.parametrize("psa", ["connectwise", "autotask", "syncro"])
def test_demo_runs_every_psa_without_a_tui_and_cleans_up(tmp_path, psa):
    keep = tmp_path / "demo"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "costrecon_tui.cli",
            "demo",
            "--psa",
            psa,
            "--no-tui",
            "--keep",
            str(keep),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Ctrl-C stops the demo" in line or not line:
                break
        assert any("Ready." in ln for ln in lines), "".join(lines)
        sock = keep / "run" / "costrecond.sock"
        status = _get(sock, "/v1/status")
        assert status["psa"]["connected"] and status["psa"]["last_sync"]
        assert status["counts"]["items"] == 320
        imports = {i["file_name"]: i["status"] for i in _get(sock, "/v1/imports")["imports"]}
        # Costs also arrive from the Pax8 simulator (issue 16): one API pull beside the files.
        pulls = [n for n in imports if n.startswith("Pax8 API pull, ")]
        assert len(pulls) == 1 and imports.pop(pulls[0]) == "imported"
        assert imports == {
            "pax8-price-update.csv": "imported",
            "ingram-new-skus.csv": "imported",
            "acme-prices-BROKEN.csv": "failed",
        }
        assert (keep / "state" / "failed" / "acme-prices-BROKEN.csv.errors.txt").exists()
        changed = _get(sock, "/v1/costs?changed=1")["ids"]
        assert len(changed) > 10
        assert _get(sock, "/v1/unmatched")["rows"], "the Ingram file's SKUs wait in Mappings"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # a demo that does not stop must not outlive the test run (nor its daemon)
            proc.kill()
            out, _ = proc.communicate()
            pytest.fail(f"costrecon demo did not stop within 60 s of Ctrl-C:\n{out}")
        finally:
            kill_daemon_of(keep)  # its daemon runs in a session of its own
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    assert not (keep / "run" / "costrecond.sock").exists()  # the daemon it started has stopped
