"""poll log: one row per poll and its result, for the operator's charts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 09:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.store.schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "poll_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("at", bot.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_poll_log")),
    )
    op.create_index("ix_poll_log_at", "poll_log", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_poll_log_at", table_name="poll_log")
    op.drop_table("poll_log")
