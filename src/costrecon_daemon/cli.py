"""`costrecond`: run, start, stop and inspect the daemon; run a PSA simulator."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import logging.handlers
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlalchemy.exc

from . import __version__
from .config import Config, ConfigError, load_config
from .lifecycle import AlreadyRunning, is_locked, read_lock_pid, secure_state_dir
from .sockets import UntrustedSocket, trusted
from .store import sqlite_path
from .text import printable

EXIT_NOT_RUNNING = 3


class PrintableFormatter(logging.Formatter):
    """Escapes control characters in the message (file names, PSA text) so no log line can be
    forged or carry terminal escapes; the traceback of an exception is left as Python wrote it."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = printable(record.message)
        return super().formatMessage(record)


def _setup_logging(cfg: Config, *, to_stderr: bool) -> None:
    level = getattr(logging, cfg.daemon.log_level.upper())
    root = logging.getLogger()
    root.setLevel(level)
    fmt = PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg.log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fh = logging.handlers.RotatingFileHandler(cfg.log_file, maxBytes=5_000_000, backupCount=5)
    fh.setFormatter(fmt)
    root.addHandler(fh)
    if to_stderr:
        sh = logging.StreamHandler()
        sh.setFormatter(fmt)
        root.addHandler(sh)
    # httpx logs every request URL at INFO; a URL can carry a token (Syncro api_key), so keep it
    # quiet.
    for noisy in ("httpx", "httpcore", "aiohttp.access", "watchfiles", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_run(cfg: Config, args: argparse.Namespace) -> int:
    from .app import Daemon
    from .runtime import tune_daemon

    try:
        tightened = secure_state_dir(cfg.state_dir, cfg.daemon.socket_group)
    except PermissionError as exc:
        print(f"costrecond: {exc}", file=sys.stderr)
        return 1
    _setup_logging(cfg, to_stderr=True)
    for note in tightened:
        logging.getLogger("costrecond").warning("%s", note)
    tune_daemon()  # process-wide interpreter settings, each explained in runtime.py

    def ready() -> None:
        print(
            f"costrecond {__version__} ready on {cfg.socket_path} (pid {os.getpid()})", flush=True
        )
        _sd_notify("READY=1")

    try:
        asyncio.run(Daemon(cfg).run(ready=ready))
    except AlreadyRunning as exc:
        print(f"costrecond: {exc}", file=sys.stderr)
        return 1
    except (PermissionError, ConfigError) as exc:
        print(f"costrecond: {exc}", file=sys.stderr)
        return 1
    except (sqlalchemy.exc.DatabaseError, sqlite3.DatabaseError) as exc:
        logging.getLogger("costrecond").error("database refused: %s", exc)
        print(f"costrecond: {_database_problem(cfg, exc)}", file=sys.stderr)
        return 1
    return 0


def _database_problem(cfg: Config, exc: Exception) -> str:
    """One sentence for a database that cannot be opened (issue 13 item 9: not 130 lines)."""
    path = sqlite_path(cfg.database_url)
    if path is None:
        return (
            f"the database at daemon.database_url cannot be used ({type(exc).__name__}); "
            "check that the server is up and the role may connect, then start again."
        )
    backups = sorted(path.parent.glob(f"{path.name}.bak-*"))
    restore = f"restore {backups[-1]} over it" if backups else "restore it from your backup"
    return (
        f"{path} is damaged or is not a costrecon database; {restore}, or move it aside "
        "(with its -wal and -shm files) to start with an empty mirror that the next sync refills."
    )


def _sd_notify(message: str) -> None:
    """systemd Type=notify readiness, without a dependency (notes §4.3)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    import socket

    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(addr)
            s.sendall(message.encode())
        except OSError:
            pass


def _get(cfg: Config, path: str, timeout: float = 5.0) -> Any:
    # httpx (70 ms of imports) only for the commands that ask a running daemon, not for `run`.
    import httpx

    trusted(cfg.socket_path)  # raises UntrustedSocket: never believe a planted fake daemon
    # Plain HTTP over a Unix socket: no TLS, so no CA bundle to load (20 ms of CPU a call).
    transport = httpx.HTTPTransport(uds=str(cfg.socket_path), verify=False)
    with httpx.Client(transport=transport, base_url="http://costrecond", timeout=timeout) as client:
        resp = client.get(path)
        resp.raise_for_status()
        return resp.json()


def cmd_start(cfg: Config, args: argparse.Namespace) -> int:
    import httpx

    if is_locked(cfg.lock_path):
        print(f"costrecond is already running (pid {read_lock_pid(cfg.lock_path)}).")
        return 0
    cfg.log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    out_path = cfg.log_file.with_name("costrecond.out")
    cmd = [sys.executable, "-m", "costrecon_daemon.cli"]
    if cfg.path:
        cmd += ["--config", str(cfg.path)]
    cmd.append("run")
    with open(out_path, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = out_path.read_text(errors="replace").strip().splitlines()[-3:]
            print(
                "costrecond did not start: " + (" ".join(tail) or "see " + str(out_path)),
                file=sys.stderr,
            )
            return 1
        try:
            health = _get(cfg, "/v1/health", timeout=1.0)
            print(f"costrecond started (pid {health['pid']}), socket {cfg.socket_path}")
            return 0
        except (httpx.HTTPError, OSError):
            time.sleep(0.1)
    print(f"costrecond did not answer within 30 s; see {out_path}", file=sys.stderr)
    return 1


def cmd_stop(cfg: Config, args: argparse.Namespace) -> int:
    if not is_locked(cfg.lock_path):
        print("costrecond is not running.")
        return 0
    pid = read_lock_pid(cfg.lock_path)
    if not pid:
        print(
            "costrecond is running but its pid is unknown; stop it with systemctl or kill.",
            file=sys.stderr,
        )
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not is_locked(cfg.lock_path):
            print(f"costrecond stopped (pid {pid}).")
            return 0
        time.sleep(0.1)
    print(f"costrecond (pid {pid}) did not stop within {args.timeout:.0f} s.", file=sys.stderr)
    return 1


def cmd_status(cfg: Config, args: argparse.Namespace) -> int:
    import httpx

    try:
        status = _get(cfg, "/v1/status")
    except (httpx.HTTPError, OSError):
        if args.json:
            print(json.dumps({"running": False, "socket": str(cfg.socket_path)}))
        else:
            print(
                f"costrecond is not running (no answer on {cfg.socket_path}); start it with "
                "`costrecond start`."
            )
        return EXIT_NOT_RUNNING
    if args.json:
        print(json.dumps({"running": True, **status}, indent=2))
        return 0
    d, p, c = status["daemon"], status["psa"], status["counts"]
    lines = [
        f"costrecond {d['version']} running (pid {d['pid']}) as {d['user']} since "
        f"{d['started_at']}",
        f"  socket:    {d['socket']}",
        f"  state dir: {d['state_dir']}",
        f"  config:    {d['config'] or 'embedded defaults'}",
        f"  PSA:       {p['name']}"
        + (
            f" — {'connected' if p['connected'] else 'not connected'}"
            if p["kind"] != "none"
            else ""
        ),
    ]
    if p.get("error"):
        lines.append(f"  PSA error: {p['error']}")
    for prob in p.get("permission_problems") or []:
        lines.append(f"  permission: {prob['message']}")
    if p["kind"] != "none":
        lines.append(
            f"  last sync: {p.get('last_sync') or 'never'}; next: {p.get('next_sync') or '—'}"
        )
    lines.append(
        f"  mirror:    {c['items']} items, {c['contracts']} contracts, {c['lines']} contract lines"
    )
    inbox = status.get("inbox") or {}
    lines.append(f"  inbox:     {inbox.get('path')} ({inbox.get('pending', 0)} waiting)")
    print("\n".join(lines))
    return 0


def cmd_sim(cfg: Config | None, args: argparse.Namespace) -> int:
    kind = args.psa
    kwargs = {
        k: v
        for k, v in dict(
            company=args.company,
            public_key=args.public_key,
            private_key=args.private_key,
            client_id=args.client_id,
            username=args.username,
            secret=args.secret,
            integration_code=args.integration_code,
            api_token=args.api_token,
        ).items()
        if v is not None
    }
    mod: ModuleType
    if kind == "connectwise":
        from .sim import connectwise as mod
    elif kind == "autotask":
        from .sim import autotask as mod
    else:
        from .sim import syncro as mod
    import inspect

    accepted = set(inspect.signature(mod.run_standalone).parameters)
    if "knobs" in accepted:
        # The Autotask and Syncro sims pass **knobs on to their simulator class, whose parameters
        # are the credentials (--username/--secret/--integration-code, --api-token).
        sim_cls = mod.AutotaskSim if kind == "autotask" else mod.SyncroSim
        accepted |= set(inspect.signature(sim_cls).parameters)
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        print(
            f"costrecond sim {kind}: --{unknown[0].replace('_', '-')} does not apply to this PSA.",
            file=sys.stderr,
        )
        return 2
    try:
        mod.run_standalone(port=args.port, size=args.size, **kwargs)
    except KeyboardInterrupt:
        pass
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="costrecond",
        description="costrecon daemon: mirrors your PSA catalogue and contract lines, imports "
        "vendor price files from a watched folder, and applies approved cost changes to the PSA.",
    )
    p.add_argument("--version", action="version", version=f"costrecond {__version__}")
    p.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help="config file (default: $COSTRECON_CONFIG or "
        "~/.config/costrecon/config.toml; embedded defaults when absent)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("run", help="run in the foreground (for systemd and for trying it out)")
    sub.add_parser("start", help="start in the background and wait until it answers")
    stop = sub.add_parser("stop", help="stop a running daemon (SIGTERM) and wait for it to exit")
    stop.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
    st = sub.add_parser("status", help="show whether it runs, the PSA connection and the mirror")
    st.add_argument(
        "--json", action="store_true", help="machine-readable output; exit 3 when not running"
    )
    sim = sub.add_parser(
        "sim",
        help="run a faithful fake PSA server to try costrecon without a PSA account "
        "(or `sim pax8|ingram --port P` for a distributor API; --help there for its options)",
    )
    sim.add_argument("psa", choices=["connectwise", "autotask", "syncro"])
    sim.add_argument("--port", type=int, default=8765, help="loopback port (default 8765)")
    sim.add_argument(
        "--size", default="demo", choices=["tiny", "demo", "large"], help="data set (default demo)"
    )
    for flag in (
        "company",
        "public-key",
        "private-key",
        "client-id",
        "username",
        "secret",
        "integration-code",
        "api-token",
    ):
        sim.add_argument(
            f"--{flag}", help=f"credential the simulator accepts ({flag}); printed at start"
        )
    return p


def vendor_sim(argv: list[str]) -> int | None:
    """``costrecond sim pax8|ingram ...``: the distributor simulators own their options, so the
    rest of the command line goes to their ``main`` (None: not a distributor sim)."""
    if "sim" not in argv:
        return None
    at = argv.index("sim")
    kind = argv[at + 1] if at + 1 < len(argv) else ""
    if kind not in ("pax8", "ingram"):
        return None
    if kind == "pax8":
        from .sim import pax8 as mod
    else:
        from .sim import ingram as mod  # type: ignore[no-redef]
    try:
        return mod.main(argv[at + 2 :])
    except KeyboardInterrupt:
        return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    forwarded = vendor_sim(argv)
    if forwarded is not None:
        return forwarded
    args = build_parser().parse_args(argv)
    if args.command == "sim":
        return cmd_sim(None, args)
    try:
        cfg = load_config(Path(args.config) if args.config else None)
    except ConfigError as exc:
        print(f"costrecond: {exc}", file=sys.stderr)
        return 2
    handler = {"run": cmd_run, "start": cmd_start, "stop": cmd_stop, "status": cmd_status}[
        args.command
    ]
    try:
        return handler(cfg, args)
    except UntrustedSocket as exc:
        print(f"costrecond: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
