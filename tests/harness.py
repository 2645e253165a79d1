"""Real parts for integration tests: a daemon process on a temp state dir and socket, and
simulators served from a background thread so both sync tests and daemon subprocesses reach them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
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


class DaemonProcess:
    """``costrecond run`` as a real child process on a temp state dir, config and socket.

    Every started process is in ``live`` until it is stopped, so conftest's autouse fixture can
    kill whatever a failing test left running."""

    live: ClassVar[set[DaemonProcess]] = set()

    def __init__(self, tmp: Path, extra: dict[str, dict[str, Any]] | None = None):
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
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)),
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
