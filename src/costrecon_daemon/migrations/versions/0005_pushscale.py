"""MSP-size change sets: approval request ids, push start time, the value a step found

Revision ID: pushscale
Revises: 0002

``change_sets.request_id`` makes an approval idempotent per actor (a retried POST with the same
id returns the change set it created); ``started_at`` with ``finished_at`` gives the actual push
time the preview's estimate is compared with; ``change_steps.value`` keeps what the PSA held
when a step finished, so a conflict can be served line by line without an activity entry each.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import costrecon_daemon.db

revision = "pushscale"
down_revision = "vendorpull"
branch_labels = None
depends_on = None


def _has(table: str, column: str) -> bool:
    return column in {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    # Each addition checks first: a database restored from a backup that was labelled at an
    # older revision may already have them (and the upgrade must not fail on it).
    if not _has("change_sets", "request_id"):
        with op.batch_alter_table("change_sets", schema=None) as batch_op:
            batch_op.add_column(sa.Column("request_id", sa.String(length=64), nullable=True))
            batch_op.add_column(
                sa.Column("started_at", costrecon_daemon.db.UTCDateTime(length=32), nullable=True)
            )
            batch_op.create_index("ix_change_sets_request", ["actor", "request_id"], unique=True)
    if not _has("change_steps", "value"):
        with op.batch_alter_table("change_steps", schema=None) as batch_op:
            batch_op.add_column(sa.Column("value", costrecon_daemon.db.MoneyType(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("change_steps", schema=None) as batch_op:
        batch_op.drop_column("value")
    with op.batch_alter_table("change_sets", schema=None) as batch_op:
        batch_op.drop_index("ix_change_sets_request")
        batch_op.drop_column("started_at")
        batch_op.drop_column("request_id")
