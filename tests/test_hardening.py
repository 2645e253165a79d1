"""Hostile neighbours (issue 13): planted symlinks, fake daemons, loose file modes, bad config."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from costrecon_daemon.config import ConfigError, load_config
from costrecon_daemon.lifecycle import prepare_runtime_dir, secure_state_dir
from costrecon_daemon.sockets import UntrustedSocket, check_peer, check_socket

from .harness import DaemonProcess, write_config

NOBODY = 65534
needs_root = pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")


@pytest.fixture
def shared_tmp():
    """A directory another user can reach (pytest's tmp_path is private to us)."""
    path = Path(tempfile.mkdtemp(prefix="costrecon-hostile-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _wait_for(path: Path) -> None:
    for _ in range(500):
        if path.exists():
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"the impostor never bound {path}")


def test_runtime_dir_that_is_a_planted_symlink_is_refused_and_its_target_left_alone(tmp_path):
    target = tmp_path / "someone-elses"
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    link = tmp_path / "costrecon-run"
    link.symlink_to(target)
    with pytest.raises(PermissionError, match="symbolic link"):
        prepare_runtime_dir(link)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755


@needs_root
def test_runtime_dir_owned_by_another_user_is_refused(tmp_path):
    planted = tmp_path / "run"
    planted.mkdir()
    os.chown(planted, NOBODY, NOBODY)
    with pytest.raises(PermissionError, match="another user"):
        prepare_runtime_dir(planted)


@pytest.mark.slow
def test_daemon_refuses_to_start_on_a_symlinked_runtime_dir(tmp_path):
    d = DaemonProcess(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    d.runtime.symlink_to(elsewhere)
    r = subprocess.run(
        [sys.executable, "-m", "costrecon_daemon.cli", "-c", str(d.config), "run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert "symbolic link" in r.stderr
    assert "Traceback" not in r.stderr
    assert not any(elsewhere.iterdir())


def test_clients_refuse_a_socket_whose_directory_is_a_symlink(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(real / "costrecond.sock"))
        link = tmp_path / "run"
        link.symlink_to(real)
        with pytest.raises(UntrustedSocket, match="symbolic link"):
            check_socket(link / "costrecond.sock")


def test_clients_refuse_a_socket_in_a_directory_others_can_write(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o777)
    with pytest.raises(UntrustedSocket, match="chmod 700"):
        check_socket(run / "costrecond.sock")


def _fake_daemon_as(uid: int, sock_path: Path, ready: threading.Event) -> int:
    """A child process that binds ``sock_path`` as ``uid`` and answers one connection."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.setgid(uid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX)
            s.bind(str(sock_path))
            s.listen(1)
            os.write(1, b"")
            conn, _ = s.accept()
            conn.close()
        finally:
            os._exit(0)
    return pid


@pytest.mark.slow
@needs_root
def test_status_refuses_a_fake_daemon_run_by_another_user_in_tmp(tmp_path, shared_tmp):
    # Another user planted /tmp-style world-writable parent with their own directory inside.
    parent = shared_tmp / "tmp"
    parent.mkdir()
    parent.chmod(0o1777)
    run = parent / "costrecon-0"
    run.mkdir(mode=0o700)
    os.chown(run, NOBODY, NOBODY)
    sock = run / "costrecond.sock"
    pid = _fake_daemon_as(NOBODY, sock, threading.Event())
    try:
        _wait_for(sock)
        with pytest.raises(UntrustedSocket, match="other users can write"):
            check_socket(sock)
        cfg = write_config(
            tmp_path / "config.toml",
            {"daemon": {"state_dir": str(tmp_path / "state"), "runtime_dir": str(run)}},
        )
        r = subprocess.run(
            [sys.executable, "-m", "costrecon_daemon.cli", "-c", str(cfg), "status"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 1
        assert "not talking" in r.stderr and "running" not in r.stdout
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


@needs_root
def test_peer_check_refuses_a_process_that_is_not_the_sockets_owner(shared_tmp):
    run = shared_tmp / "run"
    run.mkdir(mode=0o755)
    run.chmod(0o777)  # the impostor must be able to bind here
    sock = run / "costrecond.sock"
    pid = _fake_daemon_as(NOBODY, sock, threading.Event())
    try:
        _wait_for(sock)
        os.chown(sock, 0, 0)  # looks like ours
        run.chmod(0o700)
        with pytest.raises(UntrustedSocket, match="runs as"):
            check_peer(sock)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


@pytest.mark.slow
def test_state_dir_and_database_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with DaemonProcess(tmp_path, fresh=True) as d:  # the daemon creates them
            d.get("/v1/health")
            modes = {
                p.name: stat.S_IMODE(p.stat().st_mode) for p in d.state.iterdir() if p.is_file()
            }
            assert stat.S_IMODE(d.state.stat().st_mode) == 0o700
            assert modes["costrecon.db"] == 0o600
            loose = {name: f"{mode:o}" for name, mode in modes.items() if mode & 0o077}
            assert not loose
    finally:
        os.umask(old)


def test_an_existing_loose_install_is_tightened_at_start_with_a_log_line(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o755)
    db = state / "costrecon.db"
    db.write_bytes(b"")
    db.chmod(0o644)
    old = os.umask(0o022)
    try:
        notes = secure_state_dir(state)
    finally:
        os.umask(old)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert any("costrecon.db" in n and "644" in n for n in notes)


@pytest.mark.parametrize(
    ("section", "key", "value", "needle"),
    [
        ("sync", "interval_minutes", "nan", "finite"),
        ("sync", "interval_minutes", "inf", "finite"),
        ("sync", "full_every_hours", "-inf", "finite"),
        ("inbox", "rescan_seconds", "0", "greater than 0"),
    ],
)
def test_config_refuses_non_finite_or_empty_intervals(tmp_path, section, key, value, needle):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[{section}]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=needle) as err:
        load_config(cfg)
    assert f"{section}.{key}" in str(err.value)


def test_config_refuses_a_failed_dir_that_is_the_inbox(tmp_path):
    inbox = tmp_path / "inbox"
    cfg = write_config(
        tmp_path / "c.toml", {"inbox": {"path": str(inbox), "failed_dir": str(inbox)}}
    )
    with pytest.raises(ConfigError, match="inbox.failed_dir is the inbox itself"):
        load_config(cfg)


def test_config_refuses_allowed_users_that_lock_out_the_daemons_own_user(tmp_path):
    cfg = write_config(tmp_path / "c.toml", {"daemon": {"allowed_users": ["alice-not-me"]}})
    with pytest.raises(ConfigError, match="does not include"):
        load_config(cfg)


def test_log_lines_cannot_be_forged_by_a_file_name(tmp_path):
    import logging

    from costrecon_daemon.cli import PrintableFormatter

    record = logging.LogRecord(
        "intake",
        logging.INFO,
        __file__,
        1,
        "imported %s",
        ("x\n2026 INFO forged\x1b]0;t\x07",),
        None,
    )
    line = PrintableFormatter("%(levelname)s %(message)s").format(record)
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line
    assert "\\x0a2026 INFO forged\\x1b]0;t\\x07" in line


@pytest.mark.slow
def test_a_corrupt_database_gets_one_sentence_not_a_traceback(tmp_path):
    d = DaemonProcess(tmp_path)
    d.state.mkdir(parents=True)
    (d.state / "costrecon.db").write_bytes(b"this is a spreadsheet, not a database" * 200)
    r = subprocess.run(
        [sys.executable, "-m", "costrecon_daemon.cli", "-c", str(d.config), "run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "is damaged or is not a costrecon database" in last and "move it aside" in last


@pytest.mark.slow
def test_a_signed_activity_log_verifies_through_the_daemon(tmp_path):
    key = tmp_path / "cfg" / "activity.key"
    with DaemonProcess(tmp_path, {"daemon": {"activity_key_file": str(key)}}) as d:
        d.request("PUT", "/v1/costs/999999/manual", json={"cost": "1.00"})
        assert (key.stat().st_mode & 0o777) == 0o600
        assert d.get("/v1/activity/verify")["ok"]
