"""summaries.published_at: the feeds' published date

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 08:45:00

Until now the feeds dated an entry by the poll that first found it, so every
summary of a first poll shared one date. Existing rows get the earliest time
known of them: the source date of their first stored version, or the poll that
found them, whichever is earlier (bot.decide.first_published).

The render cache is emptied: it is keyed by the summary's text only, and the
renderer of this revision writes different HTML and text (images from other
hosts become links, no alt text in plain text, no empty paragraphs).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.store.schema

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column: SQLite adds it in place (no table rebuild, which with
    # foreign keys on would cascade-delete the versions, renders and deliveries).
    op.add_column("summaries", sa.Column("published_at", bot.store.schema.UtcDateTime(timezone=True), nullable=True))
    # Plain SQL that reads the same on SQLite (timestamps stored as sortable text) and PostgreSQL.
    op.execute(
        "UPDATE summaries SET published_at ="
        " (SELECT MIN(v.edited_at) FROM summary_versions v WHERE v.summary_id = summaries.id)"
    )
    op.execute(
        "UPDATE summaries SET published_at = first_seen_at WHERE published_at IS NULL OR published_at > first_seen_at"
    )
    # Rendered again on next use, by the renderer of this revision.
    op.execute("DELETE FROM renders")


def downgrade() -> None:
    with op.batch_alter_table("summaries", schema=None) as batch_op:
        batch_op.drop_column("published_at")
