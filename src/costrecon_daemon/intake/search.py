"""The vendor-row search table (issue 15 item 4): candidates for a catalogue item, and what a
person types in the Mappings view, found through an index whatever the number of vendor rows.

One row per ``vendor_costs`` row: ``keys`` holds its normalised SKU and MPN, ``name`` its
description. On SQLite it is an FTS5 table with the ``trigram`` tokenizer (substring search by
index; ``rowid`` is the vendor-cost id), pruned by a delete trigger on ``vendor_costs``. On
PostgreSQL it is a plain table (``id`` references ``vendor_costs`` with ``ON DELETE CASCADE``)
indexed by ``pg_trgm`` GIN indexes when that extension could be created, else by prefix b-tree
indexes: the search then finds prefixes only (it degrades, it never fails).

Queries never rank the whole match set in SQL: each asks the index for at most ``POOL`` rows and
ranks those here, so an item whose words occur in 200,000 rows costs no more than a rare one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.engine import Connection

from ..vendors.normalise import normalise_mpn, normalise_sku

TABLE = "vendor_search"
POOL = 200  # rows fetched from the index per query, ranked in Python
NAME_CHARS = 160  # enough of a description to find it by; keeps the index lean
MIN_TERM = 3  # a trigram index cannot look up anything shorter
_WORD = re.compile(r"\w+")
_STOP = frozenset({"the", "and", "for", "with", "per", "user", "users", "license", "licence"})


def keys_of(sku: str | None, mpn: str | None) -> str:
    parts = [normalise_sku(sku), normalise_mpn(mpn)]
    return " ".join(dict.fromkeys(p for p in parts if p))


def words_of(text_: str | None, most: int = 6) -> list[str]:
    """The searchable words of a name, longest first (the rarer ones, usually)."""
    words = [w for w in _WORD.findall((text_ or "").casefold()) if len(w) >= MIN_TERM]
    words = [w for w in dict.fromkeys(words) if w not in _STOP] or words
    return sorted(words, key=len, reverse=True)[:most]


# ---------------------------------------------------------------------------- schema


def pg_mode(conn: Connection) -> str:
    """ "trgm" when pg_trgm is installed, else "prefix"."""
    found = conn.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").first()
    return "trgm" if found else "prefix"


def create(conn: Connection) -> None:
    """Create the table, its indexes and (SQLite) the prune trigger. Idempotent."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING fts5(keys, name, tokenize='trigram')"
        )
        conn.exec_driver_sql(
            f"CREATE TRIGGER IF NOT EXISTS {TABLE}_prune AFTER DELETE ON vendor_costs "
            f"BEGIN DELETE FROM {TABLE} WHERE rowid = old.id; END"
        )
        return
    conn.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (id BIGINT PRIMARY KEY REFERENCES vendor_costs(id) "
        "ON DELETE CASCADE, keys TEXT NOT NULL, name TEXT NOT NULL)"
    )
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception:  # noqa: BLE001 - not allowed or not installed: prefix search instead
        pass
    if pg_mode(conn) == "trgm":
        conn.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_keys ON {TABLE} USING gin (keys gin_trgm_ops)"
        )
        conn.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_name ON {TABLE} "
            "USING gin (lower(name) gin_trgm_ops)"
        )
    else:
        conn.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_keys ON {TABLE} (keys text_pattern_ops)"
        )
        conn.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_name ON {TABLE} (lower(name) text_pattern_ops)"
        )


def drop(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {TABLE}_prune")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")


# ---------------------------------------------------------------------------- filling


def _insert(conn: Connection, rows: Iterable[Any]) -> int:
    id_col = "rowid" if conn.dialect.name == "sqlite" else "id"
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    values = [(r[0], keys_of(r[1], r[2]), (r[3] or "")[:NAME_CHARS]) for r in rows]
    if values:
        conn.exec_driver_sql(
            f"INSERT INTO {TABLE} ({id_col}, keys, name) VALUES ({mark}, {mark}, {mark})", values
        )
    return len(values)


def index_new(conn: Connection, import_id: int) -> int:
    """Index the rows of ``import_id`` written since the last call, in the caller's transaction
    (the importer calls it once per chunk). Ids only grow and rows are indexed as they are
    written, so the new rows are the ones above the highest indexed id."""
    id_col = "rowid" if conn.dialect.name == "sqlite" else "id"
    top = conn.exec_driver_sql(f"SELECT max({id_col}) FROM {TABLE}").scalar() or 0
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    rows = conn.exec_driver_sql(
        "SELECT id, sku, mpn, description FROM vendor_costs "
        f"WHERE id > {mark} AND import_id = {mark} ORDER BY id",
        (top, import_id),
    ).all()
    return _insert(conn, rows)


def backfill(conn: Connection, batch: int = 20_000) -> int:
    """Index every vendor row (the migration, for databases that already hold some)."""
    done = 0
    last = 0
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    while True:
        rows = conn.exec_driver_sql(
            f"SELECT id, sku, mpn, description FROM vendor_costs WHERE id > {mark} "
            f"ORDER BY id LIMIT {int(batch)}",
            (last,),
        ).all()
        if not rows:
            return done
        done += _insert(conn, rows)
        last = rows[-1][0]


# ---------------------------------------------------------------------------- searching


def _fts_phrase(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def _like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def key_hits(conn: Connection, terms: Sequence[str], limit: int = POOL) -> list[int]:
    """Ids of rows whose SKU or MPN contains one of ``terms`` (normalised), exact ones first."""
    terms = [t for t in dict.fromkeys(terms) if len(t) >= MIN_TERM]
    if not terms:
        return []
    if conn.dialect.name == "sqlite":
        query = " OR ".join(f"keys : {_fts_phrase(t)}" for t in terms)
        rows = conn.exec_driver_sql(
            f"SELECT rowid, keys FROM {TABLE} WHERE {TABLE} MATCH ? LIMIT {int(limit)}", (query,)
        ).all()
    else:
        trgm = pg_mode(conn) == "trgm"
        conds = " OR ".join(["keys LIKE %s"] * len(terms))
        params = tuple((f"%{_like(t)}%" if trgm else f"{_like(t)}%") for t in terms)
        rows = conn.exec_driver_sql(
            f"SELECT id, keys FROM {TABLE} WHERE {conds} LIMIT {int(limit)}", params
        ).all()
    wanted = set(terms)
    exact = [r[0] for r in rows if wanted & set(r[1].split())]
    rest = [r[0] for r in rows if not wanted & set(r[1].split())]
    return exact + rest


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


def _name_query(conn: Connection, words: Sequence[str], joiner: str, limit: int) -> list[int]:
    if conn.dialect.name == "sqlite":
        query = "name : (" + joiner.join(_fts_phrase(w) for w in words) + ")"
        return [
            r[0]
            for r in conn.exec_driver_sql(
                f"SELECT rowid FROM {TABLE} WHERE {TABLE} MATCH ? LIMIT {int(limit)}", (query,)
            )
        ]
    if pg_mode(conn) == "trgm":
        conds = joiner.join(["lower(name) LIKE %s"] * len(words))
        params: tuple[str, ...] = tuple(f"%{_like(w)}%" for w in words)
    else:  # prefix index: the description's first word only
        conds = joiner.join(["lower(name) LIKE %s"] * len(words))
        params = tuple(f"{_like(w)}%" for w in words)
    return [
        r[0]
        for r in conn.exec_driver_sql(
            f"SELECT id FROM {TABLE} WHERE {conds} LIMIT {int(limit)}", params
        )
    ]
