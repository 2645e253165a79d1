"""`costrecon demo` leaves nothing behind (issue 13 items 10 and 11): after SIGHUP (a dropped SSH
session), SIGTERM or even SIGKILL, no daemon process and no temporary directory remain; and
``--keep DIR`` never overwrites a directory that holds something."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# The demo's processes and a terminal going away are the point: the slow tier.
pytestmark = pytest.mark.slow


def _pids_of_daemons_for(root: Path) -> list[int]:
    """Daemon processes whose command line names a config under ``root``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if (
            state != "Z"
            and b"costrecon_daemon.cli" in cmdline
            and str(root).encode() in b" ".join(cmdline)
        ):
            found.append(int(proc.name))
    return found


def _start_demo(tmp_path: Path) -> tuple[subprocess.Popen[str], Path, list[str]]:
    env = dict(os.environ, TMPDIR=str(tmp_path))  # the demo's temp dir lands where we can look
    proc = subprocess.Popen(
        [sys.executable, "-m", "costrecon_tui.cli", "demo", "--psa", "syncro", "--no-tui"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    root = None
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if m := re.search(r"files in (\S+)", line):
            root = Path(m.group(1))
        if "Ctrl-C stops the demo" in line or not line:
            break
    assert root is not None and any("Ready." in ln for ln in lines), "".join(lines)
    return proc, root, lines


def _wait_gone(root: Path, timeout: float = 40) -> tuple[list[int], bool]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = _pids_of_daemons_for(root)
        if not pids and not root.exists():
            return [], False
        time.sleep(0.05)
    return _pids_of_daemons_for(root), root.exists()


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGKILL], ids=str)
def test_demo_leaves_no_daemon_and_no_files_when_its_terminal_goes_away(tmp_path, sig):
    proc, root, _ = _start_demo(tmp_path)
    try:
        assert root.is_dir() and root.parent == tmp_path
        assert _pids_of_daemons_for(root), "the demo's daemon should be running"
        proc.send_signal(sig)
        proc.wait(60)
        pids, left = _wait_gone(root)
        assert pids == [], f"daemon(s) {pids} outlived the demo after {sig.name}"
        assert not left, f"{root} left behind after {sig.name}"
        if sig != signal.SIGKILL:
            assert proc.returncode == 128 + sig
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in _pids_of_daemons_for(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_demo_keep_refuses_a_directory_that_is_not_empty(tmp_path):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "config.toml").write_text("# my own config\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "costrecon_tui.cli", "demo", "--no-tui", "--keep", str(keep)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=60)
        r = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in _pids_of_daemons_for(keep):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert r.returncode == 2
    assert "not an empty directory" in r.stderr and "Traceback" not in r.stderr
    assert (keep / "config.toml").read_text() == "# my own config\n"
    assert sorted(p.name for p in keep.iterdir()) == ["config.toml"]


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.parametrize("how", ["kill-session", "sigterm"])
def test_demo_with_its_tui_in_tmux_leaves_nothing_when_the_session_dies(tmp_path, how):
    from .test_e2e_tmux import Tmux, _costrecon

    t = Tmux(f"hup-{how}")
    # TMPDIR: the demo's temp dir lands in tmp_path, where this test can look for it.
    t.start(["env", f"TMPDIR={tmp_path}", *_costrecon(), "demo", "--psa", "syncro"], 100, 30)
    roots: list[Path] = []
    try:
        t.wait_for(lambda s: "costrecon — Costs" in s, "the cost table", 120)
        roots = [p for p in tmp_path.iterdir() if p.name.startswith("costrecon-demo-")]
        assert len(roots) == 1 and _pids_of_daemons_for(roots[0])
        if how == "kill-session":
            t.tmux("kill-session", "-t", t.target)  # what a dropped SSH session does: SIGHUP
        else:
            # Only the demo this test started: the one whose environment carries our TMPDIR
            # (other demos may be running on this machine).
            mark = f"TMPDIR={tmp_path}".encode()
            demo = [
                int(p.name)
                for p in Path("/proc").iterdir()
                if p.name.isdigit()
                and mark in _environ(p).split(b"\0")
                and b"demo" in _cmdline(p).split(b" ")  # the demo itself, not its daemon
            ]
            assert len(demo) == 1, f"expected one demo process, found {demo}"
            for pid in demo:
                os.kill(pid, signal.SIGTERM)
        pids, left = _wait_gone(roots[0])
        assert pids == [] and not left, (pids, left, t.screen())
    finally:
        t.kill()
        for root in roots:
            for pid in _pids_of_daemons_for(root):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _environ(proc: Path) -> bytes:
    try:
        return (proc / "environ").read_bytes()
    except OSError:
        return b""


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""
