"""The dispatch loop's prebuilt statements (SQLAlchemy, with bound parameters)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bot.records import DeliveryState
from bot.store import schema as t
from bot.store.rows import _DELIVERY_COLUMNS, _PAPER_COLUMNS

# The dispatch loop's statements, built once with parameters: building a statement
# costs more CPU than running it, several times per delivery.
_P = sa.bindparam
_PENDING = DeliveryState.PENDING.value
_SELECT_DELIVERY: sa.Select[Any] = sa.select(*_DELIVERY_COLUMNS).select_from(
    t.deliveries.join(t.summaries, t.summaries.c.id == t.deliveries.c.summary_id)
)
_DELIVERY_BY_ID = _SELECT_DELIVERY.where(t.deliveries.c.id == _P("p_id"))
#: due, unreserved pending deliveries of the given channels that are not paused
_DUE_WHERE = (
    t.deliveries.c.state == _PENDING,
    t.deliveries.c.due_at <= _P("p_now"),
    t.deliveries.c.channel.in_(_P("p_channels", expanding=True)),
    # Reserved by a worker that is rendering its post.
    sa.or_(t.deliveries.c.lease_until.is_(None), t.deliveries.c.lease_until < _P("p_now")),
    # A channel another worker paused a moment ago is skipped at once.
    t.deliveries.c.channel.not_in(sa.select(t.channels.c.name).where(t.channels.c.paused.is_(True))),
)
#: the oldest of them, locked (SKIP LOCKED)
_DUE = (
    sa.select(t.deliveries.c.id)
    .where(*_DUE_WHERE)
    .order_by(t.deliveries.c.due_at, t.deliveries.c.id)
    .limit(1)
    .with_for_update(skip_locked=True)
)
#: how many of them there are, counted up to p_limit (the dispatcher's lanes)
_DUE_COUNT = sa.select(sa.func.count()).select_from(
    sa.select(t.deliveries.c.id).where(*_DUE_WHERE).limit(_P("p_limit", type_=sa.Integer)).subquery()
)
_CLAIM = (
    t.deliveries.update()
    .where(t.deliveries.c.id == _P("p_id"))
    .values(claimed_by=_P("p_worker"), lease_until=_P("p_lease_until"))
)
#: a summary with what rendering its post reads from the caches: the plain text of its
#: current version, and its paper's details
_SUMMARY_FOR_POST = (
    sa.select(t.summaries, t.renders.c.text.label("render_text"), *_PAPER_COLUMNS)
    .select_from(
        t.summaries.outerjoin(
            t.renders,
            sa.and_(t.renders.c.summary_id == t.summaries.c.id, t.renders.c.content_hash == t.summaries.c.content_hash),
        ).outerjoin(t.papers, t.papers.c.arxiv_id == t.summaries.c.arxiv_id)
    )
    .where(t.summaries.c.id == _P("p_id"))
)
_START_SENDING = (
    t.deliveries.update()
    .where(
        t.deliveries.c.id == _P("p_id"), t.deliveries.c.state == _PENDING, t.deliveries.c.claimed_by == _P("p_worker")
    )
    .values(
        state=DeliveryState.IN_FLIGHT.value,
        attempts=t.deliveries.c.attempts + 1,
        lease_until=_P("p_lease_until"),
        updated_at=_P("p_now"),
    )
)
_START_SENDING_WITH_POST = _START_SENDING.values(post=_P("p_post"))
_MARK_SENT = (
    t.deliveries.update()
    .where(t.deliveries.c.id == _P("p_id"))
    .values(
        lease_until=None,
        updated_at=_P("p_now"),
        state=DeliveryState.SENT.value,
        post_id=_P("p_post_id"),
        post_url=_P("p_post_url"),
        sent_at=_P("p_now"),
        last_error=None,
    )
)
_ATTEMPT = t.attempts.insert()
