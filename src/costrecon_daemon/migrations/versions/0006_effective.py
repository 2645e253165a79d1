"""Effective dates on approvals: a change set can wait for its day (issue 18 item 4)

Revision ID: effective
Revises: pushscale

``change_sets.effective_date`` is the day an approval takes effect; NULL (every set before this
revision) means at once. A set with a future date is journaled ``scheduled`` and pushed that day.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "effective"
down_revision = "pushscale"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Checked first, as in pushscale: a restored database may already have the column.
    if "effective_date" not in {
        c["name"] for c in sa.inspect(op.get_bind()).get_columns("change_sets")
    }:
        with op.batch_alter_table("change_sets", schema=None) as batch_op:
            batch_op.add_column(sa.Column("effective_date", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("change_sets", schema=None) as batch_op:
        batch_op.drop_column("effective_date")
