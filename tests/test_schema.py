"""Schema: migrations from an empty database produce exactly the models, on SQLite and on
PostgreSQL; money never floats."""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, insert, select, text

from costrecon_daemon.db import Base, CatalogItem, make_engine
from costrecon_daemon.store import alembic_config, current_revision, head_revision, migrate

# The vendor search table (FTS5 on SQLite, pg_trgm on PostgreSQL) is kept by raw SQL, not a model.
MODELS_ONLY = {"include_name": lambda name, kind, _parent: "vendor_search" not in (name or "")}


def test_migrations_from_empty_equal_the_models(database_url):
    migrate(database_url)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts=MODELS_ONLY)
        assert ctx.get_current_revision() == head_revision()
        assert compare_metadata(ctx, Base.metadata) == []
    engine.dispose()


def test_the_start_up_schema_check_agrees_with_alembic(tmp_path):
    """A start reads the head from the migration files and the revision from its table without
    importing Alembic: both must be what Alembic itself says, or a daemon would skip a migration
    (or run one twice)."""
    from alembic.script import ScriptDirectory

    assert (
        head_revision()
        == ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    )
    engine = create_engine(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        assert current_revision(engine) is None  # an empty database
        migrate(str(engine.url))
        with engine.connect() as conn:
            assert (
                current_revision(engine) == MigrationContext.configure(conn).get_current_revision()
            )
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_migrating_an_existing_sqlite_database_keeps_a_backup(tmp_path):
    db = tmp_path / "m.db"
    url = f"sqlite:///{db}"
    assert migrate(url) is None  # a new database: nothing to back up
    assert migrate(url) is None  # already at head: nothing to do, no backup
    # pretend the first revision is installed: the next start backs up before upgrading
    con = sqlite3.connect(db)
    con.execute("UPDATE alembic_version SET version_num = '0001'")
    con.commit()
    con.close()
    backup = migrate(url)
    assert backup == str(tmp_path / "m.db.bak-0001")
    with sqlite3.connect(backup) as old:
        assert old.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
    with sqlite3.connect(db) as new:
        assert new.execute("SELECT version_num FROM alembic_version").fetchone() == (
            head_revision(),
        )


def test_money_is_stored_as_integer_ten_thousandths(database_url):
    migrate(database_url)
    engine = make_engine(database_url)
    big = Decimal("123456789012.3456")  # beyond a 32-bit integer of ten-thousandths
    with engine.begin() as conn:
        conn.execute(
            insert(CatalogItem),
            [
                dict(psa_id="1", identifier="M365-BP", name="Business Premium", currency="USD")
                | {"cost": Decimal("22.0001")},
                dict(psa_id="2", identifier="BIG", name="Datacentre", currency="USD")
                | {"cost": big},
            ],
        )
    type_of = "pg_typeof" if engine.dialect.name == "postgresql" else "typeof"
    with engine.connect() as conn:
        raw = conn.execute(
            text(f"SELECT cost, CAST({type_of}(cost) AS TEXT) FROM catalog_items ORDER BY psa_id")
        ).all()
        assert [tuple(r) for r in raw] == [
            (220001, "bigint" if type_of == "pg_typeof" else "integer"),
            (1234567890123456, "bigint" if type_of == "pg_typeof" else "integer"),
        ]
        costs = conn.execute(select(CatalogItem.cost).order_by(CatalogItem.psa_id)).scalars()
        assert list(costs) == [Decimal("22.0001"), big]
    engine.dispose()


def test_timestamps_read_back_as_the_same_utc_instant(database_url):
    migrate(database_url)
    engine = make_engine(database_url)
    at = dt.datetime(2026, 12, 6, 23, 59, 59, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with engine.begin() as conn:
        conn.execute(
            insert(CatalogItem).values(
                psa_id="1", identifier="X", name="X", currency="EUR", synced_at=at
            )
        )
    with engine.connect() as conn:
        got = conn.execute(select(CatalogItem.synced_at)).scalar_one()
    assert got == at and got.tzinfo == dt.UTC and got.microsecond == 123456
    engine.dispose()


def test_a_postgresql_database_made_by_the_text_timestamp_schema_is_converted(pg_url):
    """0001 once created text timestamps on PostgreSQL too; 0002 turns them into timestamptz."""
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
    # Build 0001's tables with the old text type, as the earlier release did, then upgrade.
    from alembic import command

    from costrecon_daemon.store import alembic_config

    with engine.begin() as conn:
        cfg = alembic_config(pg_url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text("ALTER TABLE events ALTER COLUMN at TYPE VARCHAR(32)"))
        conn.execute(
            text(
                "INSERT INTO events (at, kind, data) "
                "VALUES ('2026-12-06T21:47:01.123456Z', 'activity', '{}')"
            )
        )
    migrate(pg_url)
    with engine.connect() as conn:
        kind, value = conn.execute(text("SELECT CAST(pg_typeof(at) AS TEXT), at FROM events")).one()
        assert kind == "timestamp with time zone"
        assert value == dt.datetime(2026, 12, 6, 21, 47, 1, 123456, tzinfo=dt.UTC)
        ctx = MigrationContext.configure(conn, opts=MODELS_ONLY)
        assert compare_metadata(ctx, Base.metadata) == []
    engine.dispose()


def _search_indexes(conn) -> set[str]:
    """The SKU/MPN search indexes on vendor_costs (expression indexes before revision 0009)."""
    if conn.dialect.name == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'vendor_costs'"
    else:
        sql = "SELECT indexname FROM pg_indexes WHERE tablename = 'vendor_costs'"
    return {r[0] for r in conn.execute(text(sql))} & {
        "ix_vendor_search_sku",
        "ix_vendor_search_mpn",
    }


def test_search_keys_leave_vendor_costs_for_their_own_table_and_come_back_on_downgrade(
    database_url,
):
    """Revision 0009: a database whose vendor rows were searched through expression indexes on
    vendor_costs loses those (the import no longer keeps them up) and gets the key table, which
    the daemon's indexer fills from the rows already there; a downgrade puts them back."""
    from alembic import command

    from costrecon_daemon.db import PriceImport, VendorCost
    from costrecon_daemon.intake import search

    engine = create_engine(database_url)
    cfg = alembic_config(database_url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "intakescale")
        # As the release before 0009 left it: expression indexes, no key table.
        search.drop_keys(conn)
        search.create_expression_indexes(conn)
        iid = conn.execute(
            insert(PriceImport).values(
                file_name="old.csv", sha256="0" * 64, status="imported", final_path="", actor="t"
            )
        ).inserted_primary_key[0]
        conn.execute(
            insert(VendorCost),
            [
                dict(import_id=iid, row_number=n + 2, vendor="Old", sku=f"OLD SKU-{n}",
                     mpn=f"MP-{n}", description=f"Old widget {n}", cost=Decimal("1.50"),
                     currency="USD")
                for n in range(3)
            ],
        )  # fmt: skip
        assert _search_indexes(conn) == {"ix_vendor_search_sku", "ix_vendor_search_mpn"}
    migrate(database_url)
    with engine.begin() as conn:
        assert _search_indexes(conn) == set()
        assert search.key_hits(conn, ["oldsku-1"]) == []  # not indexed yet: the daemon does it
        assert search.ready(conn) is False
        search.index_new(conn)
        assert search.ready(conn) is True
        (hit,) = search.key_hits(conn, ["oldsku-1"])
        assert conn.execute(select(VendorCost.sku).where(VendorCost.id == hit)).scalar() == (
            "OLD SKU-1"
        )
        assert len(search.key_hits(conn, ["mp2"])) == 1  # by MPN, without its dash
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "intakescale")
        assert _search_indexes(conn) == {"ix_vendor_search_sku", "ix_vendor_search_mpn"}
        assert search.KEYS not in {
            r[0]
            for r in conn.execute(
                text(
                    "SELECT name FROM sqlite_master"
                    if conn.dialect.name == "sqlite"
                    else "SELECT tablename FROM pg_tables"
                )
            )
        }
    engine.dispose()
