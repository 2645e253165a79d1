"""``costrecond sim <psa>`` starts a simulator and prints a config snippet that works as printed."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from costrecon_daemon.app import build_connector
from costrecon_daemon.config import load_config
from costrecon_daemon.psa.base import failing

# The `costrecond sim` command as a user runs it: subprocesses.
pytestmark = pytest.mark.slow

# Each run passes one credential flag of its own, so the flags are shown to reach the simulator.
CASES = {
    "connectwise": (["--company", "contoso"], 'company = "contoso"'),
    "autotask": (["--username", "api-bob@example.com"], 'username = "api-bob@example.com"'),
    "syncro": (["--api-token", "tok-from-flag-42"], 'api_token = "tok-from-flag-42"'),
}


def _read_until_snippet(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[str, str]:
    """The "listening on <url>" URL and the printed TOML snippet (ends at its blank line)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    url, snippet, in_table = None, [], False
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no complete snippet within {timeout} s: {snippet}") from None
        if line is None:
            raise AssertionError(f"the simulator exited: {proc.wait()} {snippet}")
        if url is None and (m := re.search(r"listening on (http://\S+)", line)):
            url = m.group(1)
        if line.startswith("[psa]"):
            snippet = []
        snippet.append(line)
        if line.startswith("[psa."):
            in_table = True
        elif in_table and not line.strip():
            assert url is not None
            return url, "".join(snippet[snippet.index("[psa]\n") :])


@pytest.mark.parametrize("psa", list(CASES))
async def test_sim_command_prints_a_working_config_snippet(tmp_path: Path, psa: str):
    flags, expected = CASES[psa]
    proc = subprocess.Popen(
        [sys.executable, "-m", "costrecon_daemon.cli", "sim", psa, "--port", "0", "--size", "tiny",
         *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        url, snippet = _read_until_snippet(proc)
        assert expected in snippet
        assert url.rstrip("/").split(":")[-1].split("/")[0] != "0"  # the real, bound port

        # Not authenticated: refused. (Proves the request below passes on its credentials.)
        probe = {
            "connectwise": url + "/v2025_1/apis/3.0/procurement/catalog",
            "autotask": url + "v1.0/Services/query?search=%7B%7D",
            "syncro": url + "/products",
        }[psa]
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(probe)).status_code == 401

        # The snippet, pasted as printed, is a valid config; the connector built from it makes
        # authenticated calls (connect, then the permission probes) and is refused nothing.
        config = tmp_path / "config.toml"
        config.write_text(snippet)
        config.chmod(0o600)
        cfg = load_config(config)
        assert cfg.psa.kind == psa
        conn = build_connector(cfg)
        assert conn is not None
        try:
            await conn.connect()
            assert failing(await conn.check_permissions()) == []
            assert conn.requests_made >= 2
        finally:
            await conn.aclose()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(10) == 0
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise


def test_sim_command_refuses_a_flag_of_another_psa():
    out = subprocess.run(
        [sys.executable, "-m", "costrecon_daemon.cli", "sim", "syncro", "--port", "0",
         "--username", "bob"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2
    assert "--username does not apply" in out.stderr
