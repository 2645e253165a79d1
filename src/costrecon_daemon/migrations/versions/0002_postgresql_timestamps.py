"""timestamps with time zone on PostgreSQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 22:00:00

0001 created every timestamp through :class:`costrecon_daemon.db.UTCDateTime`, which was ISO text on
every backend; it is now ``timestamp with time zone`` on PostgreSQL (a fresh PostgreSQL database
gets that type from 0001 already). A PostgreSQL database made by the earlier 0001 still holds
VARCHAR(32) text such as ``2026-12-06T21:47:01.123456Z``, which PostgreSQL casts losslessly. SQLite
keeps its text: nothing to do there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIMESTAMPS = {
    "activity": ["at"],
    "catalog_items": ["synced_at"],
    "change_sets": ["created_at", "finished_at"],
    "change_steps": ["updated_at"],
    "contract_lines": ["synced_at"],
    "contracts": ["synced_at"],
    "events": ["at"],
    "item_mappings": ["created_at"],
    "manual_costs": ["set_at"],
    "price_imports": ["received_at"],
    "sync_state": ["updated_at"],
    "vendor_costs": ["imported_at"],
}


def _text_columns(table: str) -> list[str]:
    inspector = sa.inspect(op.get_bind())
    types = {c["name"]: c["type"] for c in inspector.get_columns(table)}
    return [c for c in TIMESTAMPS[table] if isinstance(types[c], sa.String)]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TIMESTAMPS:
        for column in _text_columns(table):
            op.alter_column(
                table,
                column,
                type_=sa.TIMESTAMP(timezone=True),
                postgresql_using=f"{column}::timestamptz",
            )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in TIMESTAMPS.items():
        for column in columns:
            # Back to 0001's original text form, exactly as UTCDateTime used to write it.
            op.alter_column(
                table,
                column,
                type_=sa.String(32),
                postgresql_using=(
                    f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
                ),
            )
