"""The vendor-row search tables (issue 15 item 4): candidates for a catalogue item, and what a
person types in the Mappings view, found through an index whatever the number of vendor rows.

Two tables beside ``vendor_costs``, one row per vendor row (keyed by its id), both filled after an
import commits, in the background (:class:`SearchIndexer`), never inside the import:

- ``vendor_search_keys``: the normalised SKU and MPN, each with a b-tree index, so equal and
  starting-with are index lookups. They used to be expression indexes on ``vendor_costs`` itself;
  kept up row by row while a 2,000,000-row file went in they cost the import's writer about 30% of
  its time (1.5 of 5.5 µs per row, measured), and that writer bounds the import.
- ``vendor_search``, the names: on SQLite an FTS5 table with the ``trigram`` tokenizer (substring
  search by index; ``rowid`` is the vendor-cost id); on PostgreSQL a plain table with a
  ``pg_trgm`` GIN index when that extension could be created, else a prefix b-tree index: the name
  search then finds descriptions starting with a word only (it degrades, it never fails). Its
  trigram postings cost more than the vendor rows themselves.

Both are pruned with ``vendor_costs``: by delete triggers on SQLite, by ``ON DELETE CASCADE`` on
PostgreSQL. Until the indexer has caught up after an import, :func:`ready` says so, and searches
find the newest rows once their keys and names are in (the keys first: they take a third of the
names' time).

Queries never rank the whole match set in SQL: each asks the index for at most ``POOL`` rows and
ranks those here, so an item whose words occur in 200,000 rows costs no more than a rare one.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)

TABLE = "vendor_search"
KEYS = "vendor_search_keys"
POOL = 60  # rows fetched from the index per query, ranked in Python
NAME_BUDGET = 0.02  # seconds one name query may run (SQLite); see _name_query
NAME_CHARS = 160  # enough of a description to find it by; keeps the index lean
INDEX_CHUNK = 20_000  # rows per statement when indexing in the caller's transaction
WRITE_CHUNK = 5_000  # rows per background write transaction: ~30 ms of FTS5 work
MIN_TERM = 3  # a trigram index cannot look up anything shorter
_WORD = re.compile(r"\w+")
_STOP = frozenset({"the", "and", "for", "with", "per", "user", "users", "license", "licence"})


# normalise_sku / normalise_mpn in SQL, filling the key table from vendor_costs. They differ from
# the Python forms only in rare cases (a tab inside a SKU, an HP region suffix, non-ASCII case):
# such a row is then found by the prefix search or by its name instead.
SKU_SQL = "lower(replace(sku, ' ', ''))"
MPN_SQL = (
    "lower(replace(replace(replace(replace(replace(coalesce(mpn, ''), '-', ''), ' ', ''), "
    "'.', ''), '/', ''), '_', ''))"
)


def words_of(text_: str | None, most: int = 6) -> list[str]:
    """The searchable words of a name, longest first (the rarer ones, usually)."""
    # Bare numbers ("1tb" stays) are left out: a trigram of digits occurs in most rows.
    words = [
        w for w in _WORD.findall((text_ or "").casefold()) if len(w) >= MIN_TERM and not w.isdigit()
    ]
    words = [w for w in dict.fromkeys(words) if w not in _STOP] or words
    return sorted(words, key=len, reverse=True)[:most]


# ---------------------------------------------------------------------------- schema


def pg_mode(conn: Connection) -> str:
    """ "trgm" when pg_trgm is installed, else "prefix"."""
    found = conn.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").first()
    return "trgm" if found else "prefix"


def create(conn: Connection) -> None:
    """Create both tables, their indexes and (SQLite) the prune triggers. Idempotent."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING fts5(name, tokenize='trigram')"
        )
        conn.exec_driver_sql(
            f"CREATE TRIGGER IF NOT EXISTS {TABLE}_prune AFTER DELETE ON vendor_costs "
            f"BEGIN DELETE FROM {TABLE} WHERE rowid = old.id; END"
        )
        conn.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {KEYS} (id INTEGER PRIMARY KEY, sku TEXT NOT NULL, "
            "mpn TEXT)"
        )
        conn.exec_driver_sql(
            f"CREATE TRIGGER IF NOT EXISTS {KEYS}_prune AFTER DELETE ON vendor_costs "
            f"BEGIN DELETE FROM {KEYS} WHERE id = old.id; END"
        )
        for name in ("sku", "mpn"):
            conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS ix_{KEYS}_{name} ON {KEYS} ({name})")
        return
    conn.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (id BIGINT PRIMARY KEY REFERENCES vendor_costs(id) "
        "ON DELETE CASCADE, name TEXT NOT NULL)"
    )
    conn.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {KEYS} (id BIGINT PRIMARY KEY REFERENCES vendor_costs(id) "
        "ON DELETE CASCADE, sku TEXT NOT NULL, mpn TEXT)"
    )
    for name in ("sku", "mpn"):
        conn.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS ix_{KEYS}_{name} ON {KEYS} ({name} text_pattern_ops)"
        )
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception:  # noqa: BLE001 - not allowed or not installed: prefix search instead
        pass
    if pg_mode(conn) == "trgm":
        conn.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_name ON {TABLE} "
            "USING gin (lower(name) gin_trgm_ops)"
        )
    else:
        conn.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_name ON {TABLE} (lower(name) text_pattern_ops)"
        )


def drop_expression_indexes(conn: Connection) -> None:
    """The SKU/MPN expression indexes on ``vendor_costs`` the key table replaced."""
    for name in ("sku", "mpn"):
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS ix_{TABLE}_{name}")


def create_expression_indexes(conn: Connection) -> None:
    """Put them back (a downgrade)."""
    pattern = "" if conn.dialect.name == "sqlite" else " text_pattern_ops"
    for name, expr in (("sku", SKU_SQL), ("mpn", MPN_SQL)):
        conn.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_{name} ON vendor_costs ({expr}{pattern})"
        )


def drop_keys(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {KEYS}_prune")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {KEYS}")


def drop(conn: Connection) -> None:
    drop_expression_indexes(conn)
    drop_keys(conn)
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {TABLE}_prune")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")


# ---------------------------------------------------------------------------- filling


def _id_col(conn: Connection, table: str) -> str:
    return "rowid" if table == TABLE and conn.dialect.name == "sqlite" else "id"


def _top(conn: Connection, table: str = TABLE) -> int:
    """The highest vendor-row id in ``table``. ORDER BY … LIMIT 1, not max(): FTS5 answers that
    from its rowid order without a scan. Both tables are filled in id order and pruned with the
    vendor rows (so an id SQLite hands out again after a failed import's rows were taken back is
    above it again): the rows above it are the ones not yet indexed."""
    id_col = _id_col(conn, table)
    return int(
        conn.exec_driver_sql(
            f"SELECT {id_col} FROM {table} ORDER BY {id_col} DESC LIMIT 1"
        ).scalar()
        or 0
    )


def _staging(conn: Connection) -> bool:
    return (
        conn.exec_driver_sql(
            "SELECT 1 FROM price_imports WHERE status = 'importing' LIMIT 1"
        ).first()
        is not None
    )


def index_new(conn: Connection, import_id: int | None = None) -> int:
    """Index every vendor row written since the last call, in the caller's transaction (tests and
    tools; the daemon runs :class:`SearchIndexer`). Returns the number of rows, counted once."""
    while _fill(conn, KEYS, INDEX_CHUNK):
        pass
    done = 0
    while n := _fill(conn, TABLE, INDEX_CHUNK):
        done += n
    return done


# What each table takes from a vendor row, by the row's id.
_SELECTS = {
    TABLE: ("name", f"substr(coalesce(description, ''), 1, {NAME_CHARS})"),
    KEYS: ("sku, mpn", f"{SKU_SQL}, nullif({MPN_SQL}, '')"),
}


def _fill(conn: Connection, table: str, limit: int) -> int:
    """Index the next ``limit`` vendor rows (the lowest ids not yet in ``table``); 0 when none
    are left.

    One INSERT … SELECT: the rows never come into Python, so the database does the whole chunk
    without the GIL and the API's requests run beside it (row by row through Python, the chunks
    of a 2,000,000-row file held the GIL for about a third of their time)."""
    sqlite = conn.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    # Daemons sharing a PostgreSQL database each run an indexer: a row another one indexed a
    # moment ago is skipped, not an error.
    skip = "" if sqlite else " ON CONFLICT (id) DO NOTHING"
    top = _top(conn, table)
    last = conn.exec_driver_sql(
        f"SELECT max(id) FROM (SELECT id FROM vendor_costs WHERE id > {mark} "
        f"ORDER BY id LIMIT {int(limit)}) AS chunk",
        (top,),
    ).scalar()
    if last is None:
        return 0
    columns, values = _SELECTS[table]
    result = conn.exec_driver_sql(
        f"INSERT INTO {table} ({_id_col(conn, table)}, {columns}) "
        f"SELECT id, {values} FROM vendor_costs WHERE id > {mark} AND id <= {mark}{skip}",
        (top, last),
    )
    # Rows another daemon indexed meanwhile are not counted (PostgreSQL), yet the chunk is done.
    return max(int(result.rowcount or 0), 1)


def index_some(conn: Connection, limit: int = INDEX_CHUNK, *, wait_for_imports: bool = True) -> int:
    """Index up to ``limit`` not yet indexed vendor rows (the lowest ids first), their keys
    before their names; 0 when none are left, or (``wait_for_imports``) while a file is being
    imported: its staging chunks then keep the writer and the CPU, and its rows are indexed once
    it committed (issue 15: the search tables are built after the import, never inside it)."""
    if wait_for_imports and _staging(conn):
        return 0
    # A key costs about a third of a name: twice the rows for the same short transaction.
    return _fill(conn, KEYS, 2 * limit) or _fill(conn, TABLE, limit)


def caught_up(conn: Connection, table: str) -> bool:
    """Whether ``table`` (KEYS or TABLE) holds every vendor row outside a staged import."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    first = conn.exec_driver_sql(
        f"SELECT p.status FROM vendor_costs v JOIN price_imports p ON p.id = v.import_id "
        f"WHERE v.id > {mark} ORDER BY v.id LIMIT 1",
        (_top(conn, table),),
    ).first()
    return first is None or first[0] == "importing"


def ready(conn: Connection) -> bool:
    """Whether every vendor row outside an import still being written is in both search tables.
    Only the first row above the indexed ones is looked at (one primary-key step, whatever the
    number of rows): the inbox imports one file at a time, so rows above a staged import's are
    rare (an API pull meanwhile) and are indexed with it."""
    return caught_up(conn, KEYS) and caught_up(conn, TABLE)


class SearchIndexer:
    """Fills the search tables in the background after imports (issue 15): a chunk per short
    write transaction, so the writer is never held for long and the API keeps answering."""

    def __init__(self, store: Any, *, every: float = 2.0, chunk: int = WRITE_CHUNK):
        self.store = store
        self.every = every
        self.chunk = chunk
        self._kick = asyncio.Event()

    def kick(self) -> None:
        """New rows were committed: index them now rather than at the next poll."""
        self._kick.set()

    async def catch_up(self) -> int:
        """Index everything there is; returns the number of rows (and keys) written."""
        done = 0
        while n := await self.store.write(index_some, self.chunk):
            done += n
            await asyncio.sleep(0)  # queued API writes go between chunks
        return done

    async def run(self) -> None:
        """Forever: catch up, then wait for a kick or the next poll (rows written by an API pull
        or by another daemon on a shared database are found by the poll)."""
        while True:
            self._kick.clear()
            try:
                done = await self.catch_up()
                if done:
                    log.info("search index: %d vendor-row keys and names indexed", done)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - housekeeping: the next poll tries again
                log.warning("indexing vendor rows for search failed; retrying later", exc_info=True)
            try:
                await asyncio.wait_for(self._kick.wait(), self.every)
            except TimeoutError:
                pass


def backfill(conn: Connection) -> int:
    """Index every vendor row (the migration, for databases that already hold some)."""
    return index_new(conn)


# ---------------------------------------------------------------------------- searching


def _fts_phrase(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def _like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def key_hits(conn: Connection, terms: Sequence[str], limit: int = POOL) -> list[int]:
    """Ids of rows whose normalised SKU or MPN equals one of ``terms``, then those starting with
    one (b-tree lookups in the key table, whatever the number of rows)."""
    terms = [t for t in dict.fromkeys(terms) if t]
    if not terms:
        return []
    exact: dict[int, None] = {}
    prefix: dict[int, None] = {}
    sqlite = conn.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    for column in ("sku", "mpn"):
        for t in terms:
            for r in conn.exec_driver_sql(
                f"SELECT id FROM {KEYS} WHERE {column} = {mark} LIMIT {int(limit)}", (t,)
            ):
                exact.setdefault(r[0], None)
            if len(t) < MIN_TERM:
                continue
            params: tuple[str, ...]
            if sqlite:  # a range the index answers (SQLite's LIKE is case-blind: no index)
                cond, params = f"{column} > ? AND {column} < ?", (t, t + "\U0010ffff")
            else:
                cond, params = f"{column} LIKE %s", (_like(t) + "%",)
            for r in conn.exec_driver_sql(
                f"SELECT id FROM {KEYS} WHERE {cond} LIMIT {int(limit)}", params
            ):
                prefix.setdefault(r[0], None)
    return [*exact, *(i for i in prefix if i not in exact)]


def name_hits(conn: Connection, words: Sequence[str], limit: int = POOL) -> list[int]:
    """Ids of rows whose description contains all ``words``; if too few do, any of them."""
    words = [w for w in words if len(w) >= MIN_TERM]
    if not words:
        return []
    found: dict[int, None] = {}
    for joiner in (" AND ", " OR ") if len(words) > 1 else (" AND ",):
        for rid in _name_query(conn, words, joiner, limit):
            found.setdefault(rid, None)
        if len(found) >= limit // 4:
            break
    return list(found)


@contextmanager
def _budget(conn: Connection, seconds: float) -> Iterator[None]:
    """SQLite only: interrupt the statement once it has run ``seconds`` (checked every few
    thousand VM steps). A read statement interrupted leaves the transaction as it was."""
    raw = conn.connection.driver_connection
    deadline = time.perf_counter() + seconds
    raw.set_progress_handler(lambda: time.perf_counter() > deadline, 2_000)  # type: ignore[union-attr]
    try:
        yield
    finally:
        raw.set_progress_handler(None, 0)  # type: ignore[union-attr]


def _name_query(conn: Connection, words: Sequence[str], joiner: str, limit: int) -> list[int]:
    if conn.dialect.name == "sqlite":
        # Words that each occur in a large share of 2,000,000 descriptions but seldom together
        # make FTS5 walk their whole posting lists to prove it: such a query is cut off at
        # NAME_BUDGET with what it found so far (the caller then tries any of the words), so a
        # candidate list never waits on a name search (issue 15: < 100 ms per item).
        query = "name : (" + joiner.join(_fts_phrase(w) for w in words) + ")"
        found: list[int] = []
        try:
            with _budget(conn, NAME_BUDGET):
                for r in conn.exec_driver_sql(
                    f"SELECT rowid FROM {TABLE} WHERE {TABLE} MATCH ? LIMIT {int(limit)}", (query,)
                ):
                    found.append(r[0])
        except OperationalError as exc:
            if "interrupt" not in str(exc).lower():
                raise
        return found
    if pg_mode(conn) == "trgm":
        conds = joiner.join(["lower(name) LIKE %s"] * len(words))
        params: tuple[str, ...] = tuple(f"%{_like(w)}%" for w in words)
    else:  # prefix index: the description's first word only
        conds = joiner.join(["lower(name) LIKE %s"] * len(words))
        params = tuple(f"{_like(w)}%" for w in words)
    # The same budget as on SQLite, as a statement timeout inside a savepoint: a cancelled
    # statement then takes back only the savepoint, not the caller's transaction.
    # A savepoint released keeps its SET LOCAL: the previous timeout is put back after.
    previous = conn.exec_driver_sql("SHOW statement_timeout").scalar()
    try:
        with conn.begin_nested():
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(NAME_BUDGET * 1000)}")
            found = [
                r[0]
                for r in conn.exec_driver_sql(
                    f"SELECT id FROM {TABLE} WHERE {conds} LIMIT {int(limit)}", params
                )
            ]
            conn.exec_driver_sql("SELECT set_config('statement_timeout', %s, true)", (previous,))
            return found
    except OperationalError as exc:
        if "statement timeout" not in str(exc).lower():
            raise
        return []
