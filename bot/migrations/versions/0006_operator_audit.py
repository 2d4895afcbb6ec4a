"""operator audit: every login to the console and every action taken there; deliveries.post_url

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.store.schema

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operator_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", bot.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_audit")),
    )
    op.create_index("ix_operator_audit_action_at", "operator_audit", ["action", "at"], unique=False)
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("post_url", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("post_url")
    op.drop_index("ix_operator_audit_action_at", table_name="operator_audit")
    op.drop_table("operator_audit")
