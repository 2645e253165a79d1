"""Distributor-scale intake (issue 15): SQLite keys vendor rows by SKU/MPN in a key table

Revision ID: intakekeys
Revises: intakescale

SQLite: the expression indexes ``ix_vendor_search_sku``/``_mpn`` on ``vendor_costs`` give way to
``vendor_search_keys`` (normalised SKU or MPN, vendor-row id; WITHOUT ROWID), which an import
fills in key order when it commits instead of row by row while its chunks go in; the prune
trigger removes a row's keys with it. Existing rows are keyed here. PostgreSQL is unchanged.
"""

from __future__ import annotations

from alembic import op

from costrecon_daemon.intake import search

revision = "intakekeys"
down_revision = "intakescale"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        search.create_keys(conn)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    table = search.TABLE
    conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_prune")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {search.KEYS}")
    for name, expr in (("sku", search.SKU_SQL), ("mpn", search.MPN_SQL)):
        conn.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS ix_{table}_{name} ON vendor_costs ({expr})"
        )
    conn.exec_driver_sql(
        f"CREATE TRIGGER {table}_prune AFTER DELETE ON vendor_costs "
        f"BEGIN DELETE FROM {table} WHERE rowid = old.id; END"
    )
