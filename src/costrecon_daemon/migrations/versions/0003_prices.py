"""sell prices of catalogue items and contract lines (for margins)

Revision ID: prices
Revises: 0002
Create Date: 2026-12-06 22:45:00

Both columns are nullable BIGINT ten-thousandths (MoneyType): a mirror synced before this
revision has no prices until its next sync, and a PSA user that cannot read prices leaves them
empty. costrecon reads prices to show margins and never writes them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "prices"
down_revision = "0002"
branch_labels = None
depends_on = None


def _has(table: str, column: str) -> bool:
    return column in {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    # Idempotent: a database restored from a backup with an older version stamp may have them.
    for table, column in (("catalog_items", "price"), ("contract_lines", "unit_price")):
        if not _has(table, column):
            with op.batch_alter_table(table) as batch:
                batch.add_column(sa.Column(column, sa.BigInteger(), nullable=True))
    # An incremental pull only re-reads what changed in the PSA, so existing rows would never get
    # their prices: forget the cursor and the next sync is a full one.
    op.execute(sa.text("DELETE FROM sync_state WHERE key = 'cursor'"))


def downgrade() -> None:
    with op.batch_alter_table("contract_lines") as batch:
        batch.drop_column("unit_price")
    with op.batch_alter_table("catalog_items") as batch:
        batch.drop_column("price")
