"""Real parts for integration tests: a daemon process on a temp state dir and socket, and
simulators served from a background thread so both sync tests and daemon subprocesses reach them."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import io
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import httpx

ROOT = Path(__file__).resolve().parent.parent


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        for k, v in table.items():
            lines.append(f"{k} = {toml_value(v)}")
        lines.append("")
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    return path


def kill_daemon_of(root: Path) -> None:
    """Teardown after a failure: SIGKILL a daemon still running on ``root`` (a demo's ``--keep``
    directory or a test's temp dir), found by the pid its lock file names. The demo starts its
    daemon in a session of its own, so killing the demo does not reach it."""
    from costrecon_daemon.lifecycle import read_lock_pid

    for lock in root.glob("**/costrecond.lock"):
        pid = read_lock_pid(lock)
        if not pid or pid == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue  # gone already
        # The pid may have been reused: kill only a costrecond whose config is under root.
        if b"costrecon_daemon" in cmdline and str(root).encode() in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class DaemonProcess:
    """``costrecond run`` as a real child process on a temp state dir, config and socket.

    Every started process is in ``live`` until it is stopped, so conftest's autouse fixture can
    kill whatever a failing test left running."""

    live: ClassVar[set[DaemonProcess]] = set()

    def __init__(
        self, tmp: Path, extra: dict[str, dict[str, Any]] | None = None, *, fresh: bool = False
    ):
        # A first start on SQLite finds a copy of the worker's migrated database, as
        # ThreadedDaemon's does (Alembic's import and the migration were a third of a start's
        # CPU); ``fresh=True`` starts on an empty state dir: the process creates and migrates
        # its database itself (test_daemon.py, test_hardening.py's umask test keep that path).
        self.fresh = fresh
        self.tmp = tmp
        self.state = tmp / "state"
        self.runtime = tmp / "run"
        sections: dict[str, dict[str, Any]] = {
            "daemon": {
                "state_dir": str(self.state),
                "runtime_dir": str(self.runtime),
                "log_level": "debug",
            },
            "sync": {"interval_minutes": 60, "on_start": True},
            "inbox": {"stable_seconds": 0.3, "rescan_seconds": 2},
        }
        for k, v in (extra or {}).items():
            sections.setdefault(k, {}).update(v)
        self.config = write_config(tmp / "config.toml", sections)
        self.proc: subprocess.Popen[bytes] | None = None
        self.out = tmp / "daemon.out"

    @property
    def socket(self) -> Path:
        return self.runtime / "costrecond.sock"

    @property
    def running(self) -> bool:
        return self.proc is not None

    def cli(
        self, *args: str, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "costrecon_daemon.cli", "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def tui_cli(
        self, *args: str, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, COSTRECON_CONFIG=str(self.config))
        return subprocess.run(
            [sys.executable, "-m", "costrecon_tui.cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            input=input,
        )

    def start(self, wait: bool = True) -> DaemonProcess:
        if not self.fresh:
            self._migrated_copy()
        with open(self.out, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "costrecon_daemon.cli", "-c", str(self.config), "run"],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
            )
        DaemonProcess.live.add(self)
        if wait:
            self.wait_ready()
        return self

    def _migrated_copy(self) -> None:
        from costrecon_daemon.config import load_config

        cfg = load_config(self.config)
        db = self.state / "costrecon.db"
        if cfg.database_url == f"sqlite:///{db}" and not db.exists():
            copy_database(migrated_template(), db).chmod(0o600)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited: {self.out.read_text()[-2000:]}")
            try:
                self.request("GET", "/v1/health", timeout=1)  # any answer (even 403) means it is up
                return
            except (httpx.HTTPError, OSError):
                time.sleep(0.05)
        raise RuntimeError(f"daemon not ready: {self.out.read_text()[-2000:]}")

    def http(self, timeout: float = 30) -> httpx.Client:
        # No TLS on a Unix socket: verify=False skips loading the CA bundle, 20 ms of CPU for
        # each client, and a test polls with a new one up to twenty times a second.
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket), verify=False),
            base_url="http://d",
            timeout=timeout,
        )

    def get(self, path: str, timeout: float = 30, **kw: Any) -> Any:
        with self.http(timeout) as c:
            r = c.get(path, **kw)
            r.raise_for_status()
            return r.json()

    def request(self, method: str, path: str, timeout: float = 30, **kw: Any) -> httpx.Response:
        with self.http(timeout) as c:
            return c.request(method, path, **kw)

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 60, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
            except (httpx.HTTPError, OSError):
                last = None
            if last:
                return last
            time.sleep(0.05)
        raise AssertionError(
            f"timed out waiting for {what}; daemon log tail:\n{self.out.read_text()[-3000:]}"
        )

    def wait_synced(self, timeout: float = 60) -> dict[str, Any]:
        return self.wait_for(
            lambda: (
                (s := self.get("/v1/status"))["psa"]["last_sync"] and not s["psa"]["syncing"] and s
            ),
            timeout,
            "first sync",
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        finally:
            # A daemon that does not stop in time fails the test, and is not left running.
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            self.proc = None
            DaemonProcess.live.discard(self)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None
        DaemonProcess.live.discard(self)

    def kill_quietly(self) -> None:
        """For teardown after a failure: SIGKILL, wait, forget (never raises)."""
        proc, self.proc = self.proc, None
        DaemonProcess.live.discard(self)
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.stop()


_template: Path | None = None


def migrated_template() -> Path:
    """An empty SQLite database at the head revision, migrated once per test process."""
    global _template
    if _template is None:
        from costrecon_daemon.store import migrate

        root = Path(tempfile.mkdtemp(prefix="costrecon-template-"))
        atexit.register(shutil.rmtree, root, True)
        migrate(f"sqlite:///{root / 'costrecon.db'}")
        _template = root / "costrecon.db"
    return _template


def migrated(url: str) -> str:
    """``url``'s database brought to head: a SQLite file not created yet becomes a copy of the
    migrated template (Alembic runs once a worker; tests/test_schema.py tests migrating from
    empty); any other database is migrated."""
    from costrecon_daemon.store import migrate, sqlite_path

    path = sqlite_path(url) if url.startswith("sqlite") else None
    if path is not None and not path.exists():
        copy_database(migrated_template(), path)
    else:
        migrate(url)
    return url


def copy_database(template: Path, dest: Path) -> Path:
    """A private copy of a migrated SQLite database (the sqlite3 backup API, so no WAL is lost)."""
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with sqlite3.connect(template) as src, sqlite3.connect(dest) as dst:
        src.backup(dst)
    return dest


class ThreadedDaemon(DaemonProcess):
    """``DaemonProcess``'s interface, but the real ``Daemon`` runs in a thread of the test process
    (its own event loop, the API on its Unix socket). It starts in a fraction of the time — no
    interpreter, no imports, no migration (a copy of a migrated database) — so tests whose point
    is not the process boundary use it. ``kill9`` needs a process: use ``DaemonProcess`` there."""

    def __init__(self, tmp: Path, extra: dict[str, dict[str, Any]] | None = None):
        super().__init__(tmp, extra)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._daemon: Any = None
        self._error: BaseException | None = None
        self._log: logging.Handler | None = None

    def start(self, wait: bool = True) -> ThreadedDaemon:
        from costrecon_daemon.app import Daemon
        from costrecon_daemon.config import load_config

        self._error = None
        cfg = load_config(self.config)
        if cfg.database_url.startswith("sqlite") and not (self.state / "costrecon.db").exists():
            copy_database(migrated_template(), self.state / "costrecon.db")
        self._log = logging.FileHandler(self.out)
        self._log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logging.getLogger("costrecon_daemon").addHandler(self._log)
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._daemon = Daemon(cfg)
                loop.run_until_complete(self._daemon.run(ready=started.set))
            except BaseException as exc:  # noqa: BLE001 - reported by wait_ready/stop
                self._error = exc
            finally:
                started.set()
                loop.close()

        self._thread = threading.Thread(target=run, name="costrecond", daemon=True)
        self._thread.start()
        DaemonProcess.live.add(self)
        if not started.wait(60):
            raise RuntimeError("the daemon thread did not start in 60 s")
        if self._error is not None:
            self._forget()
            raise RuntimeError(f"daemon exited: {self._error}")
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        if self._error is not None:
            raise RuntimeError(f"daemon exited: {self._error}")
        super().wait_ready(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        thread, loop = self._thread, self._loop
        try:
            if thread is not None and thread.is_alive() and loop is not None:
                loop.call_soon_threadsafe(self._daemon.request_stop)
                thread.join(timeout)
                if thread.is_alive():
                    raise AssertionError(f"the daemon did not stop within {timeout} s")
        finally:
            self._forget()
        return 0 if self._error is None else 1

    def _forget(self) -> None:
        self._thread = None
        DaemonProcess.live.discard(self)
        if self._log is not None:
            logging.getLogger("costrecon_daemon").removeHandler(self._log)
            self._log.close()
            self._log = None

    def tui_cli(
        self, *args: str, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``costrecon`` through its ``main()`` in this process, stdout and stderr captured and
        stdin not a terminal, as in ``DaemonProcess.tui_cli`` (a new interpreter a command cost a
        quarter second of CPU, more on a loaded machine). The same exit statuses and output; a
        test of the process itself (a pipe the reader closes) runs ``costrecon`` as a process."""
        from costrecon_tui.cli import main

        argv = ["--config", str(self.config), *args]
        result: list[Any] = []
        out, err = io.StringIO(), io.StringIO()

        def run() -> None:
            try:
                result.append(main(argv))
            except SystemExit as exc:  # argparse's usage errors and --help
                code = exc.code
                result.append(code if isinstance(code, int) else (0 if code is None else 2))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
                result.append(exc)

        # sys.std* are process-wide: the daemon thread logs to its file, never to them.
        saved = sys.stdin, sys.stdout, sys.stderr
        sys.stdin, sys.stdout, sys.stderr = io.StringIO(input or ""), out, err
        try:
            worker = threading.Thread(target=run, name="costrecon-cli", daemon=True)
            worker.start()
            worker.join(timeout)
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved
        if worker.is_alive():
            raise subprocess.TimeoutExpired(["costrecon", *args], timeout, out.getvalue())
        if isinstance(result[0], BaseException):
            raise result[0]
        return subprocess.CompletedProcess(
            ["costrecon", *args], result[0], out.getvalue(), err.getvalue()
        )

    def kill9(self) -> None:
        raise NotImplementedError("kill -9 needs a daemon process: use DaemonProcess")

    def kill_quietly(self) -> None:
        try:
            self.stop(timeout=10)
        except Exception:  # noqa: BLE001 - teardown after a failure: never raise
            pass

    def __exit__(self, *exc: object) -> None:
        if self.running:
            self.stop()


class InProcessDaemon:
    """The real ``Daemon`` — composition root, workers, API on a real Unix socket — run as a task
    in the test's event loop, wired to a running ConnectWise sim. Much cheaper than a process;
    use ``DaemonProcess`` only where the process boundary is the point."""

    def __init__(self, tmp: Path, sim: Any, extra: dict[str, dict[str, Any]] | None = None):
        from costrecon_daemon.config import load_config

        from .sims import connectwise_config

        self.tmp = tmp
        self.sim = sim
        sections: dict[str, dict[str, Any]] = {
            "daemon": {"state_dir": str(tmp / "state"), "runtime_dir": str(tmp / "run")},
            "sync": {"interval_minutes": 60, "on_start": True},
            "inbox": {"stable_seconds": 0.3, "rescan_seconds": 2},
            **connectwise_config(sim),
        }
        for k, v in (extra or {}).items():
            sections.setdefault(k, {}).update(v)
        self.config_path = write_config(tmp / "config.toml", sections)
        self.cfg = load_config(self.config_path)
        self.daemon: Any = None
        self.client: Any = None
        self._task: asyncio.Task[None] | None = None

    @property
    def socket(self) -> Path:
        return self.cfg.socket_path

    async def start(self, timeout: float = 30) -> InProcessDaemon:
        from costrecon_daemon.app import Daemon
        from costrecon_tui.client import DaemonClient

        self.daemon = Daemon(self.cfg)
        ready = asyncio.Event()
        self._task = asyncio.create_task(self.daemon.run(ready=ready.set))
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait(
            {waiter, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            waiter.cancel()
            if self._task in done:
                self._task.result()  # raises the daemon's own start-up error
            raise RuntimeError("the in-process daemon did not start in time")
        self.client = DaemonClient(self.socket)
        await self.wait_synced(timeout)
        return self

    async def wait_for(
        self, predicate: Callable[[], Awaitable[Any]], timeout: float = 30, what: str = "it"
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = await predicate()
            if last:
                return last
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    async def wait_synced(self, timeout: float = 30) -> dict[str, Any]:
        async def synced() -> Any:
            s = await self.daemon.status()
            return s["psa"]["last_sync"] and not s["psa"]["syncing"] and s["counts"]["table_rows"]

        await self.wait_for(synced, timeout, "the first sync")
        return await self.daemon.status()

    async def wait_change_set(self, cs_id: int, timeout: float = 30) -> dict[str, Any]:
        async def settled() -> Any:
            cs = await self.client.change_set(cs_id)
            return cs if cs["status"] not in ("pending", "pushing") else None

        return await self.wait_for(settled, timeout, f"change set #{cs_id} to finish")

    async def stop(self) -> None:
        try:
            if self.client is not None:
                await self.client.aclose()
        finally:
            if self._task is not None and not self._task.done():
                self.daemon.request_stop()
                try:
                    await asyncio.wait_for(self._task, 30)
                except (TimeoutError, asyncio.CancelledError):
                    self._task.cancel()
