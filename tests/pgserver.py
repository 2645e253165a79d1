"""A throwaway PostgreSQL server for tests and benchmarks: initdb on a temporary directory, a
free loopback port, started as a child of the calling process (so it dies with it), deleted at
stop. Used by tests/conftest.py's fixtures and by ``benchmarks/* --database postgresql``.

The server is the Debian ``postgresql`` package's binaries (``.ci/run`` installs them). initdb
refuses to run as root, so under root the server runs as the unprivileged ``postgres`` user the
package creates.
"""

from __future__ import annotations

import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PG_USER = "postgres"  # the OS user that owns the server process when the tests run as root
PG_ROLE = "costrecon"  # the database superuser initdb creates for the tests


def pg_bindir() -> Path | None:
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


def sweep_stale_clusters() -> None:
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

    def start(self, *, durable: bool = False) -> None:
        subprocess.run(
            [*self.as_user, str(self.bindir / "initdb"), "-D", str(self.data), "-U", PG_ROLE]
            + ["--auth=trust", "--encoding=UTF8", "--no-locale"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        # Durability is pointless for a throwaway cluster; turning it off keeps the suite fast.
        options = ["-p", str(self.port), "-k", str(self.root), "-c", "listen_addresses=127.0.0.1"]
        if not durable:  # benchmarks ask for durability, to compare with SQLite's fairly
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


@contextmanager
def running_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """A started server, stopped and deleted on exit; RuntimeError when PostgreSQL is missing.
    ``durable``: fsync and synchronous commit on, as a production server runs."""
    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError(
            "PostgreSQL binaries (initdb, pg_ctl) are not installed: apt-get install postgresql"
        )
    sweep_stale_clusters()
    server = PostgresServer(bindir)
    try:
        server.start(durable=durable)
        yield server
    finally:
        server.stop()
