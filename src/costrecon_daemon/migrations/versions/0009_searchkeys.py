"""Vendor-row SKU/MPN search keys move to their own table, filled after each import (issue 15)

Revision ID: searchkeys
Revises: intakescale

The expression indexes on ``vendor_costs`` (``ix_vendor_search_sku``/``_mpn``) were kept up row
by row inside every import: about 30% of the writer's time on a 2,000,000-row distributor file,
and that writer bounds the import. ``vendor_search_keys`` holds the same normalised keys, one row
per vendor row, filled in the background after the import commits, as the name index already is
(see ``intake/search.py``). The table starts empty here: the daemon's indexer fills it from the
existing rows after start, in short transactions, instead of holding the migration for minutes
on a database of several million rows; until then ``ready`` says the search is catching up.
"""

from __future__ import annotations

from alembic import op

from costrecon_daemon.intake import search

revision = "searchkeys"
down_revision = "intakescale"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    search.create(conn)
    search.drop_expression_indexes(conn)


def downgrade() -> None:
    conn = op.get_bind()
    search.drop_keys(conn)
    search.create_expression_indexes(conn)
