"""The mirror's schema, engine set-up, and the one upsert helper (DESIGN.md §3).

SQLite is the embedded default; PostgreSQL (``postgresql+psycopg://``) serves a team. Money
columns hold integer ten-thousandths in a BIGINT (:class:`MoneyType`), each beside a currency
column. Timestamps (:class:`UTCDateTime`) are aware UTC datetimes in Python: ISO-8601 text on
SQLite (sortable, microseconds kept) and ``timestamp with time zone`` on PostgreSQL.
The schema is created and changed only by the Alembic migrations in ``migrations/``; a test
checks that migrating an empty database yields exactly these models.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

from .money import from_units, to_units

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class MoneyType(TypeDecorator):
    """Decimal in Python, BIGINT ten-thousandths in the database. Never float."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Any) -> int | None:
        return None if value is None else to_units(value)

    def process_result_value(self, value: int | None, dialect: Any) -> Decimal | None:
        return from_units(value)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes: ISO text on SQLite, ``timestamp with time zone`` on PostgreSQL.

    Both keep microseconds, so a value reads back exactly as written (the activity log's hash
    covers the time as text and must recompute identically on either backend).
    """

    impl = String(32)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(TIMESTAMP(timezone=True))
        return dialect.type_descriptor(self.impl)

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: store UTC")
        if dialect.name == "postgresql":
            return value.astimezone(dt.UTC)
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def process_result_value(self, value: Any, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, dt.datetime):
            # psycopg returns the session's time zone; callers format as UTC "Z" text.
            return value.astimezone(dt.UTC)
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def new_id(result: CursorResult[Any]) -> Any:
    """The primary key of the row a single-row INSERT made."""
    # SQLAlchemy types it Optional, for statements that made no row; a single-row INSERT has one.
    key = result.inserted_primary_key
    assert key is not None
    return key[0]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)

    if TYPE_CHECKING:
        # SQLAlchemy declares `__table__` as any FromClause; every model here is a plain Table.
        __table__: ClassVar[Table]


# ---------------------------------------------------------------- PSA mirror


class CatalogItem(Base):
    __tablename__ = "catalog_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    psa_id: Mapped[str] = mapped_column(String(64), unique=True)
    identifier: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(512))
    kind: Mapped[str] = mapped_column(String(32), default="item")
    cost: Mapped[Decimal | None] = mapped_column(MoneyType)
    # the sell price, mirrored for margins only: costrecon never writes a price
    price: Mapped[Decimal | None] = mapped_column(MoneyType)
    currency: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    gone: Mapped[bool] = mapped_column(Boolean, default=False)  # vanished from the PSA
    vendor_sku: Mapped[str | None] = mapped_column(String(128))
    mpn: Mapped[str | None] = mapped_column(String(128))
    manufacturer: Mapped[str | None] = mapped_column(String(128))
    vendor_name: Mapped[str | None] = mapped_column(String(128))
    psa_updated_at: Mapped[str | None] = mapped_column(String(40))
    synced_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Contract(Base):
    __tablename__ = "contracts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    psa_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(512))
    company: Mapped[str] = mapped_column(String(256), default="")
    status: Mapped[str] = mapped_column(String(32), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    gone: Mapped[bool] = mapped_column(Boolean, default=False)
    currency: Mapped[str] = mapped_column(String(3))
    psa_updated_at: Mapped[str | None] = mapped_column(String(40))
    synced_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContractLine(Base):
    __tablename__ = "contract_lines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    psa_id: Mapped[str] = mapped_column(String(64), unique=True)
    contract_psa_id: Mapped[str] = mapped_column(String(64), index=True)
    item_psa_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(String(512), default="")
    quantity: Mapped[Decimal] = mapped_column(MoneyType)  # same fixed scale as money
    unit_cost: Mapped[Decimal | None] = mapped_column(MoneyType)
    unit_price: Mapped[Decimal | None] = mapped_column(MoneyType)  # read for margins, never written
    currency: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    gone: Mapped[bool] = mapped_column(Boolean, default=False)
    psa_updated_at: Mapped[str | None] = mapped_column(String(40))
    synced_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SyncState(Base):
    __tablename__ = "sync_state"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# ---------------------------------------------------------------- vendor costs


class PriceImport(Base):
    """One price file taken from the inbox (or one API fetch)."""

    __tablename__ = "price_imports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_name: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16))  # imported | failed | duplicate
    profile: Mapped[str | None] = mapped_column(String(64))
    vendor: Mapped[str | None] = mapped_column(String(128))
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_imported: Mapped[int] = mapped_column(Integer, default=0)
    rows_matched: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[Any] | None] = mapped_column(JSON)  # [{row, column, message}]
    message: Mapped[str | None] = mapped_column(Text)
    final_path: Mapped[str | None] = mapped_column(String(1024))
    actor: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class VendorCost(Base):
    __tablename__ = "vendor_costs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    import_id: Mapped[int] = mapped_column(
        ForeignKey("price_imports.id", ondelete="CASCADE"), index=True
    )
    row_number: Mapped[int] = mapped_column(Integer)
    vendor: Mapped[str] = mapped_column(String(128))
    sku: Mapped[str] = mapped_column(String(128))
    mpn: Mapped[str | None] = mapped_column(String(128))
    manufacturer: Mapped[str | None] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(512), default="")
    term: Mapped[str | None] = mapped_column(String(16))
    cost: Mapped[Decimal] = mapped_column(MoneyType)
    currency: Mapped[str] = mapped_column(String(3))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("catalog_items.id"))
    match_method: Mapped[str | None] = mapped_column(String(16))
    imported_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_vendor_costs_vendor_sku", "vendor", "sku", "term"),
        # Partial (issue 15): the million unmatched rows of a distributor file are never looked
        # up by item, so they cost this index nothing to write, and /v1/unmatched walks the
        # primary key instead of every NULL entry here.
        Index(
            "ix_vendor_costs_item_id",
            "item_id",
            sqlite_where=text("item_id IS NOT NULL"),
            postgresql_where=text("item_id IS NOT NULL"),
        ),
    )


class VendorPullRow(Base):
    """The provenance of one price row a distributor API pull imported (issue 16), beside its
    ``vendor_costs`` row (same import, same row number): what the distributor said, whole."""

    __tablename__ = "vendor_pull_rows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    import_id: Mapped[int] = mapped_column(
        ForeignKey("price_imports.id", ondelete="CASCADE"), index=True
    )
    row_number: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))  # pax8 | ingram
    product_id: Mapped[str] = mapped_column(String(128))  # Pax8 product id / Ingram part number
    sku: Mapped[str] = mapped_column(String(128))
    billing_term: Mapped[str | None] = mapped_column(String(32))
    commitment_term: Mapped[str | None] = mapped_column(String(32))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    cost: Mapped[Decimal] = mapped_column(MoneyType)  # per unit per billing period, as sent
    currency: Mapped[str] = mapped_column(String(3))
    pulled_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    bands: Mapped[list[Any] | None] = mapped_column(JSON)  # every rate band, amounts as text


class ItemMapping(Base):
    """A person's decision: this vendor SKU (and term) is that catalogue item."""

    __tablename__ = "item_mappings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vendor: Mapped[str] = mapped_column(String(128))
    sku: Mapped[str] = mapped_column(String(128))
    term: Mapped[str] = mapped_column(String(16), default="")  # "" = any/none
    item_id: Mapped[int] = mapped_column(ForeignKey("catalog_items.id"), index=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("vendor", "sku", "term", name="uq_item_mappings_key"),)


class ManualCost(Base):
    """A technician's typed vendor cost; beats any import until reverted."""

    __tablename__ = "manual_costs"
    item_id: Mapped[int] = mapped_column(ForeignKey("catalog_items.id"), primary_key=True)
    cost: Mapped[Decimal] = mapped_column(MoneyType)
    currency: Mapped[str] = mapped_column(String(3))
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    note: Mapped[str | None] = mapped_column(Text)


# ---------------------------------------------------------------- change journal


class ChangeSet(Base):
    __tablename__ = "change_sets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default="apply")  # apply | undo
    undo_of: Mapped[int | None] = mapped_column(ForeignKey("change_sets.id"))
    policy: Mapped[str] = mapped_column(String(16), default="all")  # all | matching
    status: Mapped[str] = mapped_column(String(16), default="pending")
    preview: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    message: Mapped[str | None] = mapped_column(Text)
    # The client's id for this approval: a retry with the same id returns this change set.
    request_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # first push began
    # The day the approval takes effect (None: at once); a future one makes the set scheduled.
    effective_date: Mapped[dt.date | None] = mapped_column(Date)

    __table_args__ = (Index("ix_change_sets_request", "actor", "request_id", unique=True),)


class ChangeStep(Base):
    """One target of a change set: the catalogue item or one contract line.

    Written with before/after *before* anything is sent (crash safety, DESIGN.md §3).
    """

    __tablename__ = "change_steps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    change_set_id: Mapped[int] = mapped_column(ForeignKey("change_sets.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("catalog_items.id"), index=True)
    target: Mapped[str] = mapped_column(String(8))  # item | line
    target_psa_id: Mapped[str] = mapped_column(String(64))
    contract_psa_id: Mapped[str | None] = mapped_column(String(64))
    line_kind: Mapped[str | None] = mapped_column(String(32))
    before: Mapped[Decimal | None] = mapped_column(MoneyType)
    after: Mapped[Decimal] = mapped_column(MoneyType)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(Text)
    value: Mapped[Decimal | None] = mapped_column(MoneyType)  # what the PSA held when finished
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_change_steps_status", "change_set_id", "status"),)


# ---------------------------------------------------------------- activity + events


class ActivityEntry(Base):
    """Append-only, hash-chained (activity.py). No code path updates or deletes rows."""

    __tablename__ = "activity"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(48), index=True)
    subject: Mapped[str] = mapped_column(String(256), default="")
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)
    details: Mapped[str | None] = mapped_column(Text)  # canonical JSON text (hashed as stored)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


# ---------------------------------------------------------------- engine


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for a PostgreSQL advisory lock, from a readable name."""
    digest = hashlib.sha256(f"costrecon:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


WRITER_LOCK = lock_key("writer")


def serialize_writers(conn: Connection) -> None:
    """Make this write transaction the only one in flight, on any daemon sharing the database.

    SQLite gets this from ``BEGIN IMMEDIATE`` (one writer per file). On PostgreSQL the code still
    relies on a single writer in places (the activity chain reads the last hash then appends; the
    events table must become visible in id order for ``?since=N`` readers), so each write
    transaction first takes a transaction-scoped advisory lock: held until COMMIT/ROLLBACK, never
    leaked by a crash, re-entrant within one transaction. Under READ COMMITTED every statement
    after the lock sees everything the previous holder committed.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(WRITER_LOCK)))


# SQLite page cache per connection, in KiB (``PRAGMA cache_size`` takes a negative KiB figure).
# The writer gets more than SQLite's 2 MB default: a push's journal updates walk the steps' and
# lines' indexes. A job that wants more for one transaction (an import of millions of rows) may
# raise it there; it is set back to this bound when the connection returns to the pool, since a
# PRAGMA outlives the transaction and the writer connection lives as long as the daemon: a 64 MB
# cache left from a price file would fill during the next push (issue 14 item 5).
CACHE_KIB_WRITER = 8192
CACHE_KIB_READER = 2048


def make_engine(url: str, *, writer: bool = True, busy_timeout_ms: int = 5000) -> Engine:
    """An engine with the settings the daemon relies on (notes §6.1).

    SQLite: Python 3.11's sqlite3 never issues BEGIN for SELECT and breaks SAVEPOINT in its legacy
    transaction mode, so the driver is put in autocommit and SQLAlchemy emits BEGIN IMMEDIATE
    itself: a deferred read-then-write transaction can fail with SQLITE_BUSY without waiting.

    PostgreSQL: writers run READ COMMITTED transactions that start with :func:`serialize_writers`
    (the equivalent of BEGIN IMMEDIATE across every daemon on the database); readers run
    REPEATABLE READ, the consistent snapshot a deferred SQLite read transaction gives.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})
        cache_kib = CACHE_KIB_WRITER if writer else CACHE_KIB_READER

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA cache_size=-{cache_kib}")
            cur.close()

        @event.listens_for(engine, "checkin")
        def _on_checkin(dbapi_conn: Any, _record: Any) -> None:
            # Lowering cache_size frees the pages above the bound at once (not at next use).
            if dbapi_conn is None:
                return
            try:
                dbapi_conn.execute(f"PRAGMA cache_size=-{cache_kib}")
            except sqlite3.Error:  # a connection being discarded: its cache goes with it
                pass

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Readers take a plain deferred transaction: a consistent snapshot, no write lock.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

        return engine
    if url.startswith("postgresql"):
        engine = create_engine(
            url,
            pool_pre_ping=True,
            isolation_level="READ COMMITTED" if writer else "REPEATABLE READ",
            connect_args={"application_name": "costrecond", "connect_timeout": 10},
        )
        if writer:

            @event.listens_for(engine, "begin")
            def _on_pg_begin(conn: Connection) -> None:
                serialize_writers(conn)

        return engine
    return create_engine(url, pool_pre_ping=True)


def upsert(
    conn: Connection,
    model: type[Base],
    rows: Sequence[dict[str, Any]],
    *,
    key: Iterable[str],
    update: Iterable[str] | None = None,
    only_if_changed: Iterable[str] | None = None,
) -> None:
    """Insert or update ``rows`` by the unique ``key`` columns, for SQLite or PostgreSQL.

    ``only_if_changed`` names the columns compared before an update is written, so unchanged rows
    are left alone (their ``synced_at`` is still refreshed when it is in ``update``).
    """
    if not rows:
        return
    table = model.__table__
    stmt: postgresql.Insert | sqlite.Insert
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
    key = list(key)
    cols = list(update) if update is not None else [c for c in rows[0] if c not in key]
    set_ = {c: stmt.excluded[c] for c in cols}
    where = None
    if only_if_changed:
        from sqlalchemy import or_

        where = or_(*[table.c[c].is_distinct_from(stmt.excluded[c]) for c in only_if_changed])
    stmt = stmt.on_conflict_do_update(index_elements=key, set_=set_, where=where)
    for start in range(0, len(rows), 2000):
        conn.execute(stmt, list(rows[start : start + 2000]))
