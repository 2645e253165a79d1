"""vendor_pull_rows: the provenance of rows imported from distributor APIs (issue 16)

Revision ID: vendorpull
Revises: 0002
Create Date: 2026-12-06 23:00:00

One row per price row an API pull imported: product id, billing and commitment terms, quantity,
the cost as the distributor sent it, when it was pulled, and every rate band.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import costrecon_daemon.db

revision = "vendorpull"
down_revision = "prices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("vendor_pull_rows"):
        return  # a database whose revision was set back by hand: the table is there already
    op.create_table(
        "vendor_pull_rows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("product_id", sa.String(length=128), nullable=False),
        sa.Column("sku", sa.String(length=128), nullable=False),
        sa.Column("billing_term", sa.String(length=32), nullable=True),
        sa.Column("commitment_term", sa.String(length=32), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("cost", costrecon_daemon.db.MoneyType(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("pulled_at", costrecon_daemon.db.UTCDateTime(length=32), nullable=False),
        sa.Column("bands", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["price_imports.id"],
            name=op.f("fk_vendor_pull_rows_import_id_price_imports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vendor_pull_rows")),
    )
    with op.batch_alter_table("vendor_pull_rows", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_vendor_pull_rows_import_id"), ["import_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("vendor_pull_rows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vendor_pull_rows_import_id"))
    op.drop_table("vendor_pull_rows")
