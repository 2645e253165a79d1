"""Real parts for integration tests: a daemon process on a temp state dir and socket, and
simulators served from a background thread so both sync tests and daemon subprocesses reach them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    """``costrecond run`` as a real child process on a temp state dir, config and socket."""

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
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.proc = None

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.stop()
