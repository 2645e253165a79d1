"""`costrecon demo`: the whole product against a simulated PSA, on a fresh machine, no network.

Starts a simulator with the demo tenant, a temporary daemon wired to it (own state dir, socket and
database), drops sample price files into its inbox, waits for the first sync, then opens the TUI.
On exit everything it started stops and its files are removed (unless --keep DIR).

A technician's SSH session can drop at any moment (issue 13 item 11), so nothing the demo starts
may outlive it: SIGHUP and SIGTERM stop the daemon and remove the files, and a small reaper
process watching a pipe from the demo does the same if the demo dies without running any code
(SIGKILL, a crash). The simulator is a thread of the demo and ends with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from costrecon_daemon.sim.dataset import generate
from costrecon_daemon.sim.samples import write_samples
from costrecon_daemon.sim.serve import ServedApp


def _sim(psa: str, dataset: Any) -> tuple[Any, dict[str, Any]]:
    """The simulator object and the [psa.<kind>] settings that reach it (base URL filled later)."""
    if psa == "connectwise":
        from costrecon_daemon.sim.connectwise import ConnectWiseSim

        sim = ConnectWiseSim(dataset)
        return sim, {
            "company": sim.company,
            "public_key": sim.public_key,
            "private_key": sim.private_key,
            "client_id": sim.client_id,
        }
    if psa == "autotask":
        from costrecon_daemon.sim.autotask import AutotaskSim

        autotask = AutotaskSim(dataset)
        return autotask, {
            "username": autotask.username,
            "secret": autotask.secret,
            "integration_code": autotask.integration_code,
        }
    from costrecon_daemon.sim.syncro import SyncroSim

    syncro = SyncroSim(dataset)
    return syncro, {"api_token": syncro.api_token}


def _settings(psa: str, sim: Any, base_url: str, creds: dict[str, Any]) -> dict[str, Any]:
    """Point the connector at the served simulator; the sims also need to know their own URL
    (Autotask hands it out as the zone URL, Syncro builds paging links from it)."""
    if psa == "connectwise":
        return {"site": base_url, **creds}
    if psa == "autotask":
        sim.base_url = base_url + "/atservicesrest/"
        return {"base_url_for_zone_lookup": sim.base_url, **creds}
    sim.base_url = base_url + "/api/v1"
    return {"base_url": sim.base_url, **creds}


def _toml(sections: dict[str, dict[str, Any]]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    out = []
    for name, table in sections.items():
        out.append(f"[{name}]")
        out += [f"{k} = {value(v)}" for k, v in table.items()]
        out.append("")
    return "\n".join(out)


def run_demo(args: argparse.Namespace) -> int:
    try:
        return _run_demo(args)
    except SystemExit:
        raise
    except Exception as exc:  # one sentence on screen, never a traceback
        print(f"costrecon demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


class _Signalled(Exception):
    """SIGHUP or SIGTERM arrived while no TUI was running: unwind to the clean-up."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Cleanup:
    """What the demo started, and how to stop it: shared by the normal exit and the signals."""

    def __init__(self, root: Path, keep: bool):
        self.root, self.keep = root, keep
        # The socket's directory: inside root unless that path is too long for a Unix socket
        # (AF_UNIX paths stop at 108 bytes; a deep $TMPDIR or --keep DIR gets there).
        self.run_dir = root / "run"
        if len(str(self.run_dir / "costrecond.sock").encode()) > 100:
            self.run_dir = Path(tempfile.mkdtemp(prefix="costrecon-run-", dir="/tmp"))
        self.daemon: subprocess.Popen[bytes] | None = None
        self.reaper_pipe: int | None = None
        self.app: Any = None
        self.done = False

    def run(self) -> None:
        if self.done:
            return
        self.done = True
        daemon = self.daemon
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(20)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(5)
        if not self.run_dir.is_relative_to(self.root):
            shutil.rmtree(self.run_dir, ignore_errors=True)  # only the socket lives there
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
        if self.reaper_pipe is not None:
            # Closing the pipe lets the reaper go: there is nothing left for it to do.
            os.close(self.reaper_pipe)
            self.reaper_pipe = None

    def on_signal(self, signum: int, frame: Any) -> None:
        app = self.app
        if app is not None and signum == signal.SIGTERM:
            # The terminal is still there: let the TUI restore it, then the normal exit cleans up.
            try:
                asyncio.get_running_loop().call_soon_threadsafe(
                    functools.partial(app.exit, return_code=128 + signum)
                )
                return
            except RuntimeError:
                pass
        if app is not None:
            # SIGHUP: the terminal is gone, so there is no screen to restore and the TUI may be
            # stuck writing to it. Stop everything from here and leave.
            self.run()
            os._exit(128 + signum)
        raise _Signalled(signum)


def _start_reaper(cleanup: _Cleanup) -> None:
    """A watcher in its own session (a hangup of the demo's terminal does not reach it) that waits
    for the demo's end of a pipe to close, then stops the daemon and removes the files. On a normal
    exit the demo has done both already and the reaper finds nothing to do."""
    read_end, write_end = os.pipe()
    subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from costrecon_tui.demo import reap; reap(sys.argv[1:])",
            str(read_end),
            str(cleanup.root),
            "keep" if cleanup.keep else "remove",
            str(cleanup.run_dir),
        ],
        pass_fds=(read_end,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    os.close(read_end)
    cleanup.reaper_pipe = write_end


def reap(argv: list[str]) -> None:
    """The reaper's body: read daemon pids from the pipe until the demo is gone, then clean up."""
    fd, root, mode, run_dir = int(argv[0]), Path(argv[1]), argv[2], Path(argv[3])
    for sig in (signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    pids: list[int] = []
    with os.fdopen(fd, "rb") as pipe:
        for line in pipe:  # ends at EOF: the demo closed the pipe or died
            if line.strip().isdigit():
                pids.append(int(line))
    for pid in pids:
        if _is_our_daemon(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_is_our_daemon(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _is_our_daemon(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if not run_dir.is_relative_to(root):
        shutil.rmtree(run_dir, ignore_errors=True)
    if mode == "remove":
        shutil.rmtree(root, ignore_errors=True)


def _is_our_daemon(pid: int) -> bool:
    # The pid could have been reused after the daemon exited: only a costrecond counts.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True  # no /proc (not Linux): trust the pid
    return b"costrecon_daemon.cli" in cmdline and state != "Z"


def _refuse_non_empty(root: Path) -> str | None:
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        return (
            f"costrecon demo: {root} is not an empty directory; --keep needs a new or empty "
            "directory (the demo writes its own config.toml, state and sockets there)."
        )
    return None


def _run_demo(args: argparse.Namespace) -> int:
    if args.keep:
        root = Path(args.keep).expanduser().resolve()
        refusal = _refuse_non_empty(root)
        if refusal:
            print(refusal, file=sys.stderr)
            return 2
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="costrecon-demo-"))
    cleanup = _Cleanup(root, keep=bool(args.keep))
    previous = {
        sig: signal.signal(sig, cleanup.on_signal) for sig in (signal.SIGHUP, signal.SIGTERM)
    }
    try:
        _start_reaper(cleanup)
        return _demo(args, root, cleanup)
    except _Signalled as stop:
        print(f"costrecon demo: {stop}: stopping the daemon and the simulator…", flush=True)
        return 128 + stop.signum
    finally:
        cleanup.run()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if args.keep:
            print(f"costrecon demo: kept {root}")


def _demo(args: argparse.Namespace, root: Path, cleanup: _Cleanup) -> int:
    print(f"costrecon demo: simulated {args.psa} tenant, files in {root}", flush=True)
    dataset = generate("demo")
    sim, creds = _sim(args.psa, dataset)
    daemon: subprocess.Popen[bytes] | None = None
    status = 0
    make_app = sim.app if args.psa == "connectwise" else sim.make_app
    # Costs also arrive from a Pax8 simulator selling the same items (README "Vendor APIs").
    from costrecon_daemon.sim.pax8 import Pax8Sim

    pax8 = Pax8Sim(dataset)
    with ServedApp(make_app) as served, ServedApp(pax8.make_app) as pax8_served:
        pax8.base_url = pax8_served.base_url + "/v1"
        config = root / "config.toml"
        sections: dict[str, dict[str, Any]] = {
            "daemon": {"state_dir": str(root / "state"), "runtime_dir": str(cleanup.run_dir)},
            "sync": {"interval_minutes": 30.0},
            "inbox": {"stable_seconds": 0.5, "rescan_seconds": 5.0},
            "psa": {"kind": args.psa},
            f"psa.{args.psa}": _settings(args.psa, sim, served.base_url, creds),
            "vendors.pax8": {
                "base_url": pax8.base_url,
                "client_id": pax8.client_id,
                "client_secret": pax8.client_secret,
            },
        }
        config.write_text("# written by `costrecon demo`\n" + _toml(sections))
        config.chmod(0o600)
        socket = cleanup.run_dir / "costrecond.sock"
        log = root / "costrecond.out"
        with open(log, "ab") as out:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "costrecon_daemon.cli", "-c", str(config), "run"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        cleanup.daemon = daemon
        if cleanup.reaper_pipe is not None:
            os.write(cleanup.reaper_pipe, f"{daemon.pid}\n".encode())
        _wait(lambda: _get(socket, "/v1/health"), daemon, log, "the daemon to start")
        print("  daemon up; waiting for the first sync…", flush=True)
        _wait(
            lambda: (
                (s := _get(socket, "/v1/status"))["psa"]["last_sync"] and not s["psa"]["syncing"]
            ),
            daemon,
            log,
            "the first sync",
            timeout=120,
        )
        inbox = root / "state" / "inbox"
        files = write_samples(dataset, inbox)
        print(f"  dropped {len(files)} sample price files into {inbox}", flush=True)
        _wait(
            lambda: not any(p.exists() for p in files),
            daemon,
            log,
            "the price files to be imported",
            timeout=60,
            fatal=False,
        )
        _wait(
            lambda: any(
                v["state"] in ("ok", "failed")
                for v in _get(socket, "/v1/status")["vendors"]["sources"]
            ),
            daemon,
            log,
            "the first Pax8 pull",
            timeout=60,
            fatal=False,
        )
        print("  costs pulled from the Pax8 simulator (see the Files view)", flush=True)
        if args.no_tui:
            print(
                f"\nReady. In another terminal:\n  export COSTRECON_CONFIG={config}\n  costrecon\n"
                f"  curl --unix-socket {socket} http://localhost/v1/status\nCtrl-C stops the demo.",
                flush=True,
            )
            try:
                while daemon.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
        else:
            from .app import CostreconApp
            from .cli import tui_exit_status
            from .client import DaemonClient

            os.environ["COSTRECON_CONFIG"] = str(config)
            log_path = str(root / "costrecon-tui.log")
            _tui_log(Path(log_path))
            app = CostreconApp(DaemonClient(socket), log_path=log_path)
            cleanup.app = app
            app.run()
            cleanup.app = None
            # the screen is back to the shell at once; say what the next seconds are for
            print("costrecon demo: stopping the daemon and the simulator…", flush=True)
            if app.return_code in (128 + signal.SIGTERM, 128 + signal.SIGHUP):
                return int(app.return_code)
            status = tui_exit_status(app, log_path if args.keep else None)
        # The simulator must outlive the daemon's shutdown (it may be mid-request).
        cleanup.run()
    return status


def _tui_log(path: Path) -> None:
    import logging

    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("costrecon_tui")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _get(socket: Path, path: str) -> Any:
    with httpx.Client(
        # Plain HTTP over a Unix socket: no TLS, so no CA bundle to load (20 ms of CPU a call).
        transport=httpx.HTTPTransport(uds=str(socket), verify=False),
        base_url="http://d",
        timeout=5,
    ) as c:
        r = c.get(path)
        r.raise_for_status()
        return r.json()


def _wait(
    check: Any,
    proc: subprocess.Popen[bytes],
    log: Path,
    what: str,
    *,
    timeout: float = 60,
    fatal: bool = True,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise SystemExit("costrecon demo: the daemon stopped: " + " | ".join(tail))
        try:
            if check():
                return
        except (httpx.HTTPError, OSError, KeyError, TypeError):
            pass
        time.sleep(0.1)
    if fatal:
        raise SystemExit(f"costrecon demo: timed out waiting for {what}; see {log}")
