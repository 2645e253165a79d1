"""The vendor-row search table behind Mappings' candidates and search (issue 15 item 4)

Revision ID: vendorsearch
Revises: pushscale

SQLite: an FTS5 table with the trigram tokenizer and a trigger pruning it with ``vendor_costs``.
PostgreSQL: a plain table with pg_trgm GIN indexes when the extension can be created, else prefix
b-tree indexes (see ``intake/search.py``). Existing vendor rows are indexed here.
"""

from __future__ import annotations

from alembic import op

from costrecon_daemon.intake import search

revision = "vendorsearch"
down_revision = "effective"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    search.create(conn)
    search.backfill(conn)


def downgrade() -> None:
    search.drop(op.get_bind())
