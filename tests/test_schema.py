"""Schema: migrations from an empty database produce exactly the models; money never floats."""

from __future__ import annotations

from decimal import Decimal

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, insert, select, text

from costrecon_daemon.db import Base, CatalogItem, make_engine
from costrecon_daemon.store import head_revision, migrate


def test_migrations_from_empty_equal_the_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert ctx.get_current_revision() == head_revision()
        assert compare_metadata(ctx, Base.metadata) == []
    engine.dispose()


def test_migrating_an_existing_database_keeps_a_backup(tmp_path):
    import sqlite3

    db = tmp_path / "m.db"
    url = f"sqlite:///{db}"
    migrate(url)
    # pretend an older revision is installed: the next start backs up before upgrading
    con = sqlite3.connect(db)
    con.execute("UPDATE alembic_version SET version_num = '0001'")
    con.commit()
    con.close()
    assert migrate(url) is None  # already at head: nothing to do, no backup


def test_money_is_stored_as_integer_ten_thousandths(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(CatalogItem).values(
                psa_id="1",
                identifier="M365-BP",
                name="Business Premium",
                cost=Decimal("22.0001"),
                currency="USD",
            )
        )
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT cost, typeof(cost) FROM catalog_items")).one()
        assert raw == (220001, "integer")
        assert conn.execute(select(CatalogItem.cost)).scalar() == Decimal("22.0001")
    engine.dispose()
