"""The database schema (SQLAlchemy Core), the single source for Alembic migrations.

Datetimes are stored as timezone-aware UTC (`UtcDateTime`) so SQLite and
PostgreSQL give back the same values.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC in, aware UTC out, on both databases (SQLite drops tzinfo)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


sources = Table(
    "sources",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("url", Text, nullable=False, unique=True),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("fresh_until", UtcDateTime),
    Column("last_poll_at", UtcDateTime),
    Column("last_ok_at", UtcDateTime),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("failures", Integer, nullable=False, default=0),
    Column("next_poll_at", UtcDateTime),
    # Set by the first successful poll: what it found is "seen", not new.
    Column("first_polled_at", UtcDateTime),
    Column("items_seen", Integer, nullable=False, default=0),
)

summaries = Table(
    "summaries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source_id", ForeignKey("sources.id"), nullable=False),
    Column("guid", Text, nullable=False, unique=True),
    Column("title", Text, nullable=False),
    Column("author", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("link", Text, nullable=False),
    Column("votes", Integer),
    Column("arxiv_id", String(64)),
    Column("bibtex_key", Text),
    Column("categories", JSON, nullable=False, default=list),
    Column("content_hash", String(64), nullable=False),
    Column("version", Integer, nullable=False, default=1),
    Column("edited_at", UtcDateTime, nullable=False),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("changed_at", UtcDateTime, nullable=False),
    # True when the first poll of its source only marked it as seen (not news).
    Column("backfilled", Boolean, nullable=False, default=False),
    # The feeds' published date: the earliest time known for the summary (its first source date or the
    # bot's first sight, whichever came first). Nullable only so migration 0002 could add it in place on
    # SQLite (a table rebuild there would cascade-delete); the migration and every poll fill it.
    # (Columns are declared in the order the migrations leave them: a new SQLite file is made from here.)
    Column("published_at", UtcDateTime),
    # True while the flood guard holds it (more new summaries in one poll than source.max_new_per_poll):
    # in the feeds and the digest, but no social delivery until `release` queues it.
    Column("held", Boolean, nullable=False, default=False, server_default=false()),
    Index("ix_summaries_first_seen", "first_seen_at"),
    Index("ix_summaries_edited", "edited_at"),
)

summary_versions = Table(
    "summary_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("summary_id", ForeignKey("summaries.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("title", Text, nullable=False),
    Column("author", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("edited_at", UtcDateTime, nullable=False),
    Column("seen_at", UtcDateTime, nullable=False),
    UniqueConstraint("summary_id", "version", name="uq_summary_versions_summary_version"),
)

# Rendered HTML and text per summary version, so feeds and digests never render twice.
renders = Table(
    "renders",
    metadata,
    Column("summary_id", ForeignKey("summaries.id", ondelete="CASCADE"), primary_key=True),
    Column("content_hash", String(64), nullable=False),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("rendered_at", UtcDateTime, nullable=False),
)

papers = Table(
    "papers",
    metadata,
    Column("arxiv_id", String(64), primary_key=True),
    Column("title", Text),
    Column("authors", JSON, nullable=False, default=list),
    Column("published", UtcDateTime),
    Column("categories", JSON, nullable=False, default=list),
    Column("found", Boolean, nullable=False, default=True),
    Column("fetched_at", UtcDateTime, nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("summary_id", ForeignKey("summaries.id"), nullable=False),
    Column("channel", String(32), nullable=False),
    # 0 for the first post of a summary; the version number when an edit is republished.
    Column("revision", Integer, nullable=False, default=0),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("due_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("claimed_by", Text),
    Column("lease_until", UtcDateTime),
    # The post exactly as sent (JSON of Post), fixed before the network call.
    Column("post", JSON),
    Column("post_id", Text),
    Column("sent_at", UtcDateTime),
    Column("last_error", Text),
    # Where the published post can be seen (the channel's answer), for the operator console.
    Column("post_url", Text),
    UniqueConstraint("summary_id", "channel", "revision", name="uq_deliveries_summary_channel_revision"),
    Index("ix_deliveries_due", "state", "due_at"),
    Index("ix_deliveries_sent", "channel", "sent_at"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("delivery_id", ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", UtcDateTime, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("http_status", Integer),
    Column("code", BigInteger),
    Column("message", Text, nullable=False, default=""),
)

channels = Table(
    "channels",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("paused", Boolean, nullable=False, default=False),
    Column("paused_reason", Text),
    Column("paused_at", UtcDateTime),
)

# What the scheduler's jobs last did (for `status` and /healthz).
jobs = Table(
    "jobs",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("last_run_at", UtcDateTime),
    Column("last_ok_at", UtcDateTime),
    Column("last_error", Text),
    Column("info", JSON),
)

# The digest's readers. A row is never deleted: an unsubscribed or bounced
# address stays, so no import or operator command can mail it again.
subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    # As given (normalised by email-validator): the address mail goes to.
    Column("address", Text, nullable=False),
    # Lower-cased: one row per mailbox, however the address is capitalised.
    Column("address_key", Text, nullable=False, unique=True),
    # pending | confirmed | unsubscribed | bounced
    Column("state", String(16), nullable=False),
    # The categories wanted; empty: every summary.
    Column("categories", JSON, nullable=False, default=list),
    # Categories asked for on /subscribe, applied when the confirmation link is followed.
    Column("requested_categories", JSON),
    # Where the consent came from: web, cli, import:<file>.
    Column("consent_source", Text, nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Column("confirmed_at", UtcDateTime),
    Column("unsubscribed_at", UtcDateTime),
    Column("bounced_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    # Permanent (5xx) refusals in a row; digest.bounce_after of them make the address bounced.
    Column("permanent_failures", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("last_confirmation_sent_at", UtcDateTime),
    Index("ix_subscribers_state", "state", "id"),
)

# One row per issue; the issue number is the row's rank, the period its identity.
digests = Table(
    "digests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue", Integer, nullable=False, unique=True),
    Column("period_start", UtcDateTime, nullable=False),
    Column("period_end", UtcDateTime, nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime),
    # The items exactly as sent (a re-send after a crash is the same message).
    Column("items", JSON, nullable=False, default=list),
    # Distinct item selections (lists of indexes into items); each send names one.
    Column("variants", JSON, nullable=False, default=list),
    # Random per digest, part of every Message-ID (see bot.mail.message.digest_message_id).
    Column("nonce", String(32), nullable=False),
    Column("recipients", Integer, nullable=False, default=0),
    # sending | sent
    Column("state", String(16), nullable=False),
)

# One row per (digest, subscriber), created with the digest. States:
# pending → claimed (a worker's lease) → handing_over (committed before the final
# dot) → sent | failed | skipped; pending again for a retry.
digest_sends = Table(
    "digest_sends",
    metadata,
    Column("digest_id", ForeignKey("digests.id", ondelete="CASCADE"), primary_key=True),
    Column("subscriber_id", ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    Column("variant", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("due_at", UtcDateTime, nullable=False),
    Column("claimed_by", Text),
    Column("lease_until", UtcDateTime),
    Column("sent_at", UtcDateTime),
    Column("last_error", Text),
    Column("message_id", Text),
    # Sent again after a crash or a lost answer that came after the final dot:
    # the recipient may have two copies (with the same Message-ID).
    Column("possibly_duplicated", Boolean, nullable=False, default=False),
    # No index on state: every send changes state three times, and each index on it
    # costs a commit more pages than the row itself. Queries walk one issue's rows
    # in primary-key order instead (claims go forward from the last subscriber id).
)

rate_limits = Table(
    "rate_limits",
    metadata,
    Column("key", Text, primary_key=True),
    Column("window_start", UtcDateTime, nullable=False),
    Column("count", Integer, nullable=False, default=0),
)


# A channel's saved login session (Bluesky's), encrypted: it holds live tokens
# (bot.store.sessions). One row per channel, replaced at each login or refresh.
channel_sessions = Table(
    "channel_sessions",
    metadata,
    Column("channel", String(32), primary_key=True),
    Column("data", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# One row per poll of a source and its result, for the operator's charts (bot.charts).
# Bounded: each write deletes the rows older than POLL_LOG_DAYS (bot.store.charts).
poll_log = Table(
    "poll_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    # ok | not_modified | failed
    Column("result", String(16), nullable=False),
    Index("ix_poll_log_at", "at"),
)


# What the operator did in the console, and every login to it (bot.store.console).
# Rows are only ever added: the console shows them, nothing edits them.
operator_audit = Table(
    "operator_audit",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    # login, login_failed, login_refused, logout, retry, skip, pause, resume, …
    Column("action", String(32), nullable=False),
    # What it acted on, e.g. "delivery 12", "channel twitter"; "" for logins.
    Column("target", Text, nullable=False, default=""),
    # The client's address (bot.webguard's proxy rule).
    Column("client", String(64), nullable=False, default=""),
    Column("detail", Text, nullable=False, default=""),
    Index("ix_operator_audit_action_at", "action", "at"),
)
