"""Database fixtures: a real PostgreSQL server started by the test run itself, and a
``database_url`` parametrized over SQLite and PostgreSQL so store-level tests run on both.

The server is the Debian ``postgresql`` package's binaries (``.ci/run`` installs them), on a
temporary data directory and a free loopback port, torn down at the end of the session even when
tests fail. initdb refuses to run as root, so under root (CI) the server runs as the unprivileged
``postgres`` user the package creates. Without the binaries the PostgreSQL half is skipped with
the reason — except in CI (``CI=true``), where a missing server is a failure, never a silent skip.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .pgserver import PostgresServer, pg_bindir, sweep_stale_clusters


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    bindir = pg_bindir()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must test on PostgreSQL but no PostgreSQL binaries are installed")
        pytest.skip(
            "PostgreSQL binaries (initdb, pg_ctl) are not installed: apt-get install postgresql"
        )
    sweep_stale_clusters()
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
