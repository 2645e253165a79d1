"""Database fixtures: a real PostgreSQL server started by the test run itself, and a
``database_url`` parametrized over SQLite and PostgreSQL so store-level tests run on both.

The server is the Debian ``postgresql`` package's binaries (``.ci/run`` installs them), on a
temporary data directory and a free loopback port, torn down at the end of the session even when
tests fail. initdb refuses to run as root, so under root (CI) the server runs as the unprivileged
``postgres`` user the package creates. Without the binaries the PostgreSQL half is skipped with
the reason — except in CI (``CI=true``), where a missing server is a failure, never a silent skip.
"""

from __future__ import annotations

import ctypes
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

PG_USER = "postgres"  # the OS user that owns the server process when the tests run as root
PG_ROLE = "costrecon"  # the database superuser initdb creates for the tests


def _pg_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (``COSTRECON_PG_BIN`` overrides)."""
    env = os.environ.get("COSTRECON_PG_BIN")
    candidates = [env] if env else []
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    which = shutil.which("initdb")
    if which:
        candidates.append(str(Path(which).resolve().parent))
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sweep_stale_clusters() -> None:
    """Remove clusters left by a test run that was killed: no live server, older than 10 min
    (a younger directory without a server may be another run's initdb in progress)."""
    for root in Path(tempfile.gettempdir()).glob("costrecon-pg-*"):
        try:
            if time.time() - root.stat().st_mtime < 600:
                continue
            pid_file = root / "data" / "postmaster.pid"
            if pid_file.exists():
                pid = int(pid_file.read_text().split()[0])
                if Path(f"/proc/{pid}").exists():
                    continue
        except (OSError, ValueError, IndexError):
            continue
        shutil.rmtree(root, ignore_errors=True)


def _die_with_parent(sig: int) -> Callable[[], None]:
    """For Popen: the server gets ``sig`` when the test run dies, even by SIGKILL (Linux)."""

    def prctl() -> None:
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
        except OSError:
            pass

    return prctl


class PostgresServer:
    """One throwaway PostgreSQL cluster: initdb, start, create databases, stop, delete.

    The postmaster is a child of the test run (through ``runuser`` under root, which passes a
    termination signal on), so a run that is killed does not leave a server behind.
    """

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="costrecon-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.as_user: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(PG_USER)
            except KeyError:
                raise RuntimeError(
                    f"the tests run as root and there is no '{PG_USER}' user to run PostgreSQL "
                    "as; install the postgresql package (it creates the user)"
                ) from None
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", PG_USER, "--"]

    def start(self) -> None:
        subprocess.run(
            [*self.as_user, str(self.bindir / "initdb"), "-D", str(self.data), "-U", PG_ROLE]
            + ["--auth=trust", "--encoding=UTF8", "--no-locale"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        # Durability is pointless for a throwaway cluster; turning it off keeps the suite fast.
        options = ["-p", str(self.port), "-k", str(self.root), "-c", "listen_addresses=127.0.0.1"]
        for setting in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
            options += ["-c", setting]
        options += ["-c", "max_connections=200"]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [*self.as_user, str(self.bindir / "postgres"), "-D", str(self.data), *options],
                stdout=log,
                stderr=subprocess.STDOUT,
                # runuser turns any termination signal into SIGTERM for the server; a server
                # started directly gets SIGINT, PostgreSQL's fast shutdown.
                preexec_fn=_die_with_parent(signal.SIGTERM if self.as_user else signal.SIGINT),
            )
        deadline = time.monotonic() + 60
        while not self._accepts_connections():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"PostgreSQL did not start:\n{text}")
            time.sleep(0.1)

    def _accepts_connections(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self._conninfo(), connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                subprocess.run(
                    [*self.as_user, str(self.bindir / "pg_ctl"), "stop", "-m", "fast", "-w"]
                    + ["-D", str(self.data)],
                    capture_output=True,
                    timeout=60,
                )
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _conninfo(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={PG_ROLE} dbname={database}"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{PG_ROLE}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self._conninfo(), autocommit=True) as conn:
            conn.execute(sql)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    bindir = _pg_bindir()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must test on PostgreSQL but no PostgreSQL binaries are installed")
        pytest.skip(
            "PostgreSQL binaries (initdb, pg_ctl) are not installed: apt-get install postgresql"
        )
    _sweep_stale_clusters()
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


_db_numbers = itertools.count(1)


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's server for this one test."""
    name = f"t{os.getpid()}_{next(_db_numbers)}_{int(time.time() * 1000) % 100000}"
    pg_server.admin(f'CREATE DATABASE "{name}"')
    try:
        yield pg_server.url(name)
    finally:
        pg_server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind the daemon supports (the test runs once per backend)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'costrecon.db'}"
    return request.getfixturevalue("pg_url")


# ---------------------------------------------------------------------------------------------
# Tiers (CONTRIBUTING.md): unit tests on a temporary SQLite store, API tests against the real
# Daemon wiring in this process, and subprocess tests (marked ``slow``) only where the process
# boundary is the point. Everything below is xdist-safe: temp dirs only, ports chosen by the OS.


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; registering here keeps `--strict-markers` happy when the
    # tests run from another directory.
    config.addinivalue_line(
        "markers", "slow: a subprocess test (kill -9, restart, socket permissions, demo, tmux)"
    )


@pytest.fixture(autouse=True)
def _no_daemon_left_behind() -> Iterator[None]:
    """A test that fails half-way must not leave a daemon process running: kill every
    ``DaemonProcess`` the test started and did not stop (module-scoped ones are older and stay)."""
    from .harness import DaemonProcess

    before = set(DaemonProcess.live)
    yield
    for d in list(DaemonProcess.live - before):
        d.kill_quietly()


@pytest.fixture(scope="session")
def migrated_sqlite() -> Path:
    """An empty database at the head revision, migrated once per test process (per xdist
    worker): Alembic takes seconds on a loaded machine, a copy takes milliseconds."""
    from .harness import migrated_template

    return migrated_template()


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_sqlite: Path) -> str:
    """A migrated, empty SQLite database of this test's own."""
    from .harness import copy_database

    return f"sqlite:///{copy_database(migrated_sqlite, tmp_path / 'costrecon.db')}"


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Any]:
    """A migrated, empty SQLite store in a temp dir (the daemon's own single-writer Store)."""
    from costrecon_daemon.store import Store

    s = Store(sqlite_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
async def cw_sim() -> AsyncIterator[Any]:
    """A ConnectWise simulator (the tiny dataset) served on a loopback port in this loop."""
    from costrecon_daemon.sim.connectwise import start_connectwise_sim
    from costrecon_daemon.sim.dataset import generate

    from .sims import CW_KEYS

    running = await start_connectwise_sim(generate("tiny"), **CW_KEYS)
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def synced_store(store: Any, cw_sim: Any) -> AsyncIterator[Any]:
    """The temp store mirrored from the ConnectWise sim by the real sync (no daemon)."""
    from costrecon_daemon.mirror.sync import run_sync

    from .sims import connectwise_connector

    connector = connectwise_connector(cw_sim)
    try:
        await connector.connect()
        await run_sync(store, connector, actor="test", full=True)
        yield store
    finally:
        await connector.aclose()


@pytest.fixture
async def daemon(tmp_path: Path, cw_sim: Any, migrated_sqlite: Path) -> AsyncIterator[Any]:
    """The real ``Daemon`` (composition root, API on a real Unix socket) run in this event loop
    against the ConnectWise sim, synced once, with the TUI's ``DaemonClient`` connected to it."""
    from .harness import InProcessDaemon, copy_database

    d = InProcessDaemon(tmp_path, cw_sim)
    copy_database(migrated_sqlite, d.cfg.state_dir / "costrecon.db")
    try:
        await d.start()
        yield d
    finally:
        await d.stop()
