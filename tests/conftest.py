"""Database fixtures: a real PostgreSQL server started by the test run itself, and a
``database_url`` parametrized over SQLite and PostgreSQL so store-level tests run on both.

The server is the Debian ``postgresql`` package's binaries (``.ci/run`` installs them), on a
temporary data directory and a free loopback port, torn down at the end of the session even when
tests fail. initdb refuses to run as root, so under root (CI) the server runs as the unprivileged
``postgres`` user the package creates. Without the binaries the PostgreSQL half is skipped with
the reason — except in CI (``CI=true``), where a missing server is a failure, never a silent skip.
"""

from __future__ import annotations

import gc
import itertools
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from .pgserver import PostgresServer, pg_bindir, sweep_stale_clusters

# Bytecode is cached for the run even where the environment says not to (PYTHONDONTWRITEBYTECODE,
# set on the machines these tests run on): each xdist worker and each of the few hundred daemon,
# CLI and demo processes the suite starts would otherwise compile costrecon's sources again, a
# fifth of a daemon's start-up CPU and half of a worker's collection. The caches go where Python
# puts them by default (__pycache__, ignored by git).
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
    sys.dont_write_bytecode = False


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


COLLECTED = pytest.StashKey[frozenset[str]]()


# The longest tests, longest first (measured with --durations; the slow-marked rest follow).
LONG = (
    "test_the_estimate_comes_from_the_measured_pace",
    "test_every_key_of_every_view_and_every_palette_command_leaves_the_app_up",
    "test_kill_9_of_the_leader_mid_push_the_follower_takes_over_and_writes_each_line_once",
    "test_a_300k_row_file_is_imported_with_memory_bounded",
    "test_a_day_at_80x24_mark_30_approve_undo_edit_palette_and_quit",
    "test_injected_429_and_5xx_at_10_percent_still_finish_with_every_line_correct",
    "test_demo_filter_mark_edit_approve_reaches_the_psa_and_the_activity_log",
    "test_kill_9_five_times_during_a_big_push_ends_with_every_line_written_once",
    "test_two_daemons_watching_one_inbox_import_each_file_once",
    "test_a_client_of_either_daemon_sees_the_others_approvals_pushes_and_imports_live",
    "test_every_command_exits_quietly_when_the_reader_closes_the_pipe",
    "test_demo_with_its_tui_in_tmux_leaves_nothing_when_the_session_dies",
    "test_a_file_the_writer_reopens_and_appends_after_import_is_reported_loudly",
    "test_a_file_that_killed_the_daemon_mid_import_is_set_aside_at_the_next_start",
    "test_a_zip_bomb_in_the_inbox_fails_with_a_reason_and_the_daemon_lives",
)


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # optional: `-p no:xdist` still runs
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: two workers more than the cores. Many tests wait (on a daemon process, a
    simulator, a terminal, a rate limit) rather than compute, so extra workers fill those waits
    (measured: 10:40 -> 8:11 for the suite with a third worker on this 2-core machine; once the
    suite's CPU was cut, a full run with three workers left 29% of the two cores idle (237
    CPU-s in 167 s), and the slow tier ran in 59.6 s with four workers against 63.6 s with
    three)."""
    return (os.cpu_count() or 1) + 2


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Every test collected, before ``-k``/``-m`` deselect any: a test that checks what a whole
    # module recorded (test_connector_contract.py) learns whether all of it ran in this process.
    config.stash[COLLECTED] = frozenset(item.nodeid for item in items)

    # Long tests first, so that xdist hands them out while the short ones can still fill in
    # around them, instead of one worker finishing a long test alone at the end. Stable: the
    # order within each rank (and so within a module) is the file's.
    def rank(item: pytest.Item) -> int:
        name = getattr(item, "originalname", item.name)
        if name in LONG:
            return LONG.index(name)
        return len(LONG) + (0 if item.get_closest_marker("slow") is not None else 1)

    items.sort(key=rank)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Everything imported so far (Textual, SQLAlchemy, aiohttp, the test modules) lives until
    the end: out of the cyclic collector's reach (``gc.freeze``), or every full collection of
    every test rescans it. What a test makes is collected as ever."""
    gc.collect()
    gc.freeze()


_FREEZE_EVERY = 20
_tests_run = itertools.count(1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """And again every 20 tests, once the test's fixtures are gone: what is still alive then
    (caches, Textual's render objects that outlive their app, module-scoped parts) is set aside
    too. A worker's heap grows by thousands of objects a test, and every full collection after
    rescanned them all (the in-process daemons' own ``gc.collect`` after a sync, a preview or a
    push included). Measured on the TUI, API and reconcile tests: the collector's CPU 12.6 s ->
    6.0 s, the tests' 38.8 s -> 31-34 s. The cost: cyclic garbage among what is set aside is
    never freed, in a process that lives for one run."""
    yield
    if next(_tests_run) % _FREEZE_EVERY == 0:
        gc.collect()
        gc.freeze()


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


# ---------------------------------------------------------------------------------------------
# COSTRECON_TEST_CPU=<dir>: each test's CPU seconds (this process and the children it reaped:
# daemon, demo and CLI processes) and how many processes it started, one line per test in
# <dir>/cpu-<pid>.tsv. Off by default; `python tests/cpu_report.py <dir>` ranks them. What to cut
# when the suite is slow is the CPU it burns (2 cores), not the order it runs in.
_CPU_DIR = os.environ.get("COSTRECON_TEST_CPU")
_spawned = [0]

if _CPU_DIR:
    import resource
    import subprocess

    _Popen_init = subprocess.Popen.__init__

    def _counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        _spawned[0] += 1
        _Popen_init(self, *args, **kwargs)

    subprocess.Popen.__init__ = _counting_init  # type: ignore[method-assign]

    def _cpu() -> float:
        s = resource.getrusage(resource.RUSAGE_SELF)
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
        cpu0, wall0, spawned0 = _cpu(), time.monotonic(), _spawned[0]
        yield
        cpu, wall = _cpu() - cpu0, time.monotonic() - wall0
        out = Path(_CPU_DIR) / f"cpu-{os.getpid()}.tsv"
        with open(out, "a") as f:
            f.write(f"{cpu:.2f}\t{wall:.2f}\t{_spawned[0] - spawned0}\t{item.nodeid}\n")
