"""``--database postgresql`` for the benchmarks: run the same measurement on the embedded SQLite
and on a throwaway PostgreSQL server (tests/pgserver.py, as the test suite starts one), one after
the other in the same run, so both sets of figures print side by side.

    if __name__ == "__main__":
        backends.run_each(main)          # main() reads backends.database_settings()
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHOICES = ("sqlite", "postgresql")
_current: dict[str, Any] = {"url": None}
_numbers = itertools.count(1)


def requested(argv: list[str] | None = None) -> str:
    """The ``--database`` value on the command line (sqlite when absent)."""
    argv = sys.argv[1:] if argv is None else argv
    for i, arg in enumerate(argv):
        if arg == "--database" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--database="):
            return arg.split("=", 1)[1]
    return "sqlite"


def add_option(ap: Any) -> None:
    ap.add_argument(
        "--database",
        choices=CHOICES,
        default="sqlite",
        help="postgresql: run on SQLite and then on a throwaway PostgreSQL, printing both",
    )


def database_settings() -> dict[str, str]:
    """The ``[daemon]`` setting for the backend being measured ({} = the SQLite default)."""
    return {"database_url": _current["url"]} if _current["url"] else {}


def current_url(sqlite_path: Path) -> str:
    return _current["url"] or f"sqlite:///{sqlite_path}"


def label() -> str:
    return "PostgreSQL" if _current["url"] else "SQLite"


def run_each(main: Callable[[], None]) -> None:
    if requested() != "postgresql":
        main()
        return
    from tests.pgserver import running_server

    print("=== database: SQLite (embedded default) ===", flush=True)
    main()
    with running_server(durable=True) as server:
        _current["url"] = fresh_database(server)
        try:
            print(
                "\n=== database: PostgreSQL (throwaway local server, fsync on, port "
                f"{server.port}) ==="
            )
            main()
        finally:
            _current["url"] = None


def fresh_database(server: Any) -> str:
    name = f"bench{next(_numbers)}"
    server.admin(f'CREATE DATABASE "{name}"')
    return server.url(name)
