"""The daemon process as a user meets it: start, status, socket, identity, shutdown."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from costrecon_daemon.store import head_revision

from .harness import DaemonProcess

# Process-level behaviour (signals, the socket's mode, start/stop, restart): subprocesses.
pytestmark = pytest.mark.slow


def test_runs_on_embedded_defaults_and_answers_health_over_the_socket(tmp_path):
    # fresh: no database yet, the process creates and migrates it (the harness's copy skipped)
    with DaemonProcess(tmp_path, fresh=True) as d:
        health = d.get("/v1/health")
        assert health["api_version"] == 1
        assert health["pid"] == d.proc.pid
        assert health["schema_version"] == head_revision()
        # curl works against it, as the README says
        out = subprocess.run(
            ["curl", "-s", "--unix-socket", str(d.socket), "http://localhost/v1/health"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(out)["pid"] == d.proc.pid


def test_status_reports_a_running_daemon_and_exit_3_when_stopped(tmp_path):
    d = DaemonProcess(tmp_path)
    r = d.cli("status")
    assert r.returncode == 3
    assert "not running" in r.stdout and "costrecond start" in r.stdout
    with d:
        r = d.cli("status")
        assert r.returncode == 0, r.stderr
        assert f"pid {d.proc.pid}" in r.stdout
        data = json.loads(d.cli("status", "--json").stdout)
        assert data["running"] is True and data["daemon"]["pid"] == d.proc.pid


def test_socket_is_private_and_removed_on_sigterm(tmp_path):
    d = DaemonProcess(tmp_path).start()
    assert stat.S_IMODE(d.runtime.stat().st_mode) == 0o700
    assert stat.S_IMODE(d.socket.stat().st_mode) == 0o600
    assert d.stop() == 0
    assert not d.socket.exists()
    entries = d.tmp / "state"
    assert (entries / "costrecon.db").exists()


def test_second_daemon_on_the_same_state_dir_refuses_clearly(tmp_path):
    with DaemonProcess(tmp_path) as d:
        r = d.cli("run", timeout=30)
        assert r.returncode == 1
        assert "already running" in r.stderr and str(d.proc.pid) in r.stderr
        assert "Traceback" not in r.stderr
        # the first one is unharmed
        assert d.get("/v1/health")["pid"] == d.proc.pid


def test_start_and_stop_commands_detach_and_wait(tmp_path):
    d = DaemonProcess(tmp_path)
    r = d.cli("start")
    assert r.returncode == 0, r.stderr
    assert "started" in r.stdout
    assert d.get("/v1/health")["ok"]
    r = d.cli("stop")
    assert r.returncode == 0 and "stopped" in r.stdout
    assert not d.socket.exists()


def _request_as(uid: int, gid: int, sock: Path, method: str, path: str, body: bytes = b"") -> str:
    """One raw HTTP request over the socket from a child process running as another user."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            os.setgroups([gid])
            os.setgid(gid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(sock))
                head = f"{method} {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n"
                head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                s.sendall(head.encode() + body)
                chunks = []
                while chunk := s.recv(65536):
                    chunks.append(chunk)
            os.write(w, b"".join(chunks))
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    return data.decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to call as another user")
def test_a_user_not_allowed_gets_403_and_nothing_is_logged_as_them(tmp_path):
    import grp
    import pwd
    import shutil
    import tempfile

    me = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    # A runtime dir the shared group can reach; the caller is in the group but not allowed.
    shared = Path(tempfile.mkdtemp(prefix="costrecon-403-"))
    shared.chmod(0o755)
    try:
        extra = {
            "daemon": {
                "runtime_dir": str(shared / "run"),
                "socket_group": group,
                "allowed_users": [me],
            }
        }
        d = DaemonProcess(tmp_path, extra)
        d.runtime = shared / "run"
        with d:
            answer = _request_as(nobody.pw_uid, nobody.pw_gid, d.socket, "GET", "/v1/activity")
            assert answer.startswith("HTTP/1.1 403")
            assert '"forbidden"' in answer and "nobody" in answer and "allowed_users" in answer
            body = b'{"cost": "1.00"}'
            answer = _request_as(
                nobody.pw_uid, nobody.pw_gid, d.socket, "PUT", "/v1/costs/1/manual", body
            )
            assert answer.startswith("HTTP/1.1 403")
            actors = {e["actor"] for e in d.get("/v1/activity")["entries"]}
            assert "nobody" not in actors
    finally:
        shutil.rmtree(shared, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a group")
def test_shared_group_makes_the_socket_group_writable(tmp_path):
    import grp

    group = grp.getgrgid(os.getgid()).gr_name
    with DaemonProcess(
        tmp_path, {"daemon": {"socket_group": group, "allowed_groups": [group]}}
    ) as d:
        assert stat.S_IMODE(d.socket.stat().st_mode) == 0o660
        assert stat.S_IMODE(d.runtime.stat().st_mode) == 0o750
        assert d.get("/v1/health")["ok"]


def test_runs_with_no_config_file_at_all_using_platform_directories(tmp_path):
    import signal
    import sys
    import time

    import httpx

    run = tmp_path / "xdg-run"
    run.mkdir(mode=0o700)
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        "XDG_RUNTIME_DIR": str(run),
    }
    env.pop("COSTRECON_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "costrecon_daemon.cli", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sock = run / "costrecon" / "costrecond.sock"
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(sock), verify=False), base_url="http://d"
        ) as c:
            status = c.get("/v1/status").json()
        assert status["daemon"]["config"] is None  # embedded defaults
        assert status["daemon"]["state_dir"] == str(tmp_path / "xdg-state" / "costrecon")
        assert (tmp_path / "xdg-state" / "costrecon" / "costrecon.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert not sock.exists()
