"""Distributor-scale intake (issue 15): the vendor-cost item index covers matched rows only

Revision ID: intakescale
Revises: vendorsearch

``ix_vendor_costs_item_id`` becomes a partial index (``WHERE item_id IS NOT NULL``): a
distributor's whole catalogue, a million rows no catalogue item matches, no longer pays for index
entries nobody reads, and the unmatched-rows page walks the primary key. SQLite and PostgreSQL
both have partial indexes. The name index (``vendor_search``) is unchanged; the daemon now fills
it after each import instead of inside it.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "intakescale"
down_revision = "vendorsearch"
branch_labels = None
depends_on = None

WHERE = "item_id IS NOT NULL"


def upgrade() -> None:
    op.drop_index("ix_vendor_costs_item_id", table_name="vendor_costs")
    op.create_index(
        "ix_vendor_costs_item_id",
        "vendor_costs",
        ["item_id"],
        sqlite_where=text(WHERE),
        postgresql_where=text(WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_vendor_costs_item_id", table_name="vendor_costs")
    op.create_index("ix_vendor_costs_item_id", "vendor_costs", ["item_id"])
