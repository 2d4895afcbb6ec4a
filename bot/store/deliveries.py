"""The store's deliveries: one row per (summary, channel), claimed, sent and retried by the dispatcher; paused channels.

A mixin of ``Store`` (every method one transaction, errors as ``StoreError``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.decide import day_start, month_start
from bot.errors import StoreError
from bot.records import Attempt, Delivery, DeliveryClaim, DeliveryState, Post, Published
from bot.store import schema as t
from bot.store.rows import (
    _attempt_row,
    _delivery_from_row,
    _paper_from_row,
    _stored_from_row,
    post_from_json,
    post_to_json,
)
from bot.store.statements import (
    _ATTEMPT,
    _CLAIM,
    _DELIVERY_BY_ID,
    _DUE,
    _DUE_COUNT,
    _MARK_SENT,
    _SELECT_DELIVERY,
    _START_SENDING,
    _START_SENDING_WITH_POST,
    _SUMMARY_FOR_POST,
)


class DeliveryStore:
    """Deliveries and channel pauses (mixed into ``bot.store.Store``)."""

    if TYPE_CHECKING:

        def tx(self) -> AbstractContextManager[Connection]: ...

    # -------------------------------------------------------------- deliveries

    def delivery(self, delivery_id: int) -> Delivery:
        with self.tx() as conn:
            row = conn.execute(_DELIVERY_BY_ID, {"p_id": delivery_id}).first()
        if row is None:
            raise StoreError(f"no delivery with id {delivery_id}")
        return _delivery_from_row(row)

    def deliveries(
        self, *, states: Sequence[str] | None = None, channel: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        q = _SELECT_DELIVERY.order_by(t.deliveries.c.id)
        if states:
            q = q.where(t.deliveries.c.state.in_(list(states)))
        if channel:
            q = q.where(t.deliveries.c.channel == channel)
        with self.tx() as conn:
            return [_delivery_from_row(r) for r in conn.execute(q.limit(limit))]

    def stored_post(self, delivery_id: int) -> Post | None:
        with self.tx() as conn:
            data = conn.execute(sa.select(t.deliveries.c.post).where(t.deliveries.c.id == delivery_id)).scalar()
        return post_from_json(data) if data else None

    def expire_in_flight(self, *, now: datetime, dead_workers: Callable[[str], bool]) -> list[int]:
        """In-flight rows whose worker is gone become `uncertain` (never blindly retried).

        A row counts as abandoned when its lease ran out, or when its worker
        ran on this host and that process no longer exists. A reservation
        (pending) or a reconciliation (uncertain) of a worker that died is
        freed too: its lease would hold the row back otherwise.
        """
        held = (DeliveryState.PENDING.value, DeliveryState.UNCERTAIN.value)
        with self.tx() as conn:
            rows = conn.execute(
                sa.select(
                    t.deliveries.c.id, t.deliveries.c.state, t.deliveries.c.claimed_by, t.deliveries.c.lease_until
                ).where(
                    sa.or_(
                        t.deliveries.c.state == DeliveryState.IN_FLIGHT.value,
                        sa.and_(t.deliveries.c.state.in_(held), t.deliveries.c.lease_until >= now),
                    )
                )
            ).all()
            freed = [r.id for r in rows if r.state in held and dead_workers(r.claimed_by or "")]
            if freed:
                conn.execute(
                    t.deliveries.update()
                    .where(t.deliveries.c.id.in_(freed), t.deliveries.c.state.in_(held))
                    .values(lease_until=None)
                )
            gone = [
                r.id
                for r in rows
                if r.state == DeliveryState.IN_FLIGHT.value
                and ((r.lease_until is not None and r.lease_until < now) or dead_workers(r.claimed_by or ""))
            ]
            if gone:
                conn.execute(
                    t.deliveries.update()
                    .where(t.deliveries.c.id.in_(gone), t.deliveries.c.state == DeliveryState.IN_FLIGHT.value)
                    .values(
                        state=DeliveryState.UNCERTAIN.value,
                        updated_at=now,
                        lease_until=None,
                        last_error="the worker stopped during the network call; reconciling",
                    )
                )
        return gone

    def reserve(self, *, now: datetime, channels: Sequence[str], worker: str, lease: timedelta) -> DeliveryClaim | None:
        """Reserve the oldest due pending delivery of the given channels, with its stored post and summary.

        The row stays pending (nothing can be on the network yet) but other
        workers leave it alone while this one renders its post; `start_sending`
        then marks it in flight. A reservation of a worker that died is freed
        by `expire_in_flight`, or when its lease runs out.
        """
        if not channels:
            return None
        with self.tx() as conn:
            did = conn.execute(_DUE, {"p_now": now, "p_channels": list(channels)}).scalar()
            if did is None:
                return None
            conn.execute(_CLAIM, {"p_id": did, "p_worker": worker, "p_lease_until": now + lease})
            row = conn.execute(_DELIVERY_BY_ID, {"p_id": did}).one()
            # With its cached plain text and paper details: rendering the post then needs no query.
            summary = conn.execute(_SUMMARY_FOR_POST, {"p_id": row.summary_id}).one()
        post = row._mapping["post"]
        return DeliveryClaim(
            _delivery_from_row(row),
            post_from_json(post) if post else None,
            _stored_from_row(summary),
            text=summary.render_text,
            papers=dict([_paper_from_row(summary)]) if summary.paper_arxiv_id is not None else {},
        )

    def due_count(self, *, now: datetime, channels: Sequence[str], limit: int) -> int:
        """How many pending deliveries of `channels` are due and not reserved, counted up to `limit`."""
        if not channels:
            return 0
        with self.tx() as conn:
            return int(
                conn.execute(_DUE_COUNT, {"p_now": now, "p_channels": list(channels), "p_limit": limit}).scalar_one()
            )

    def start_sending(
        self, delivery_id: int, *, worker: str, post: Post | None, now: datetime, lease: timedelta
    ) -> bool:
        """Mark a reserved delivery in_flight with the exact post it sends, and COMMIT.

        From this commit on the post may be on the network (a crash is
        reconciled). `post` None keeps the post fixed on an earlier attempt.
        False when the reservation was lost (it ran out and another worker took the row).
        """
        params = {"p_id": delivery_id, "p_worker": worker, "p_lease_until": now + lease, "p_now": now}
        with self.tx() as conn:
            if post is None:
                return bool(conn.execute(_START_SENDING, params).rowcount)
            return bool(conn.execute(_START_SENDING_WITH_POST, {**params, "p_post": post_to_json(post)}).rowcount)

    def unreserve(self, delivery_id: int, *, worker: str) -> None:
        """Give back a reservation (the worker stops, or the channel got paused or capped meanwhile)."""
        with self.tx() as conn:
            conn.execute(
                t.deliveries.update()
                .where(
                    t.deliveries.c.id == delivery_id,
                    t.deliveries.c.state == DeliveryState.PENDING.value,
                    t.deliveries.c.claimed_by == worker,
                )
                .values(lease_until=None)
            )

    def claim_uncertain(
        self, *, now: datetime, channels: Sequence[str], worker: str, lease: timedelta
    ) -> Delivery | None:
        """Claim an uncertain delivery for reconciliation (it stays uncertain, with a lease)."""
        with self.tx() as conn:
            q = (
                sa.select(t.deliveries.c.id)
                .where(
                    t.deliveries.c.state == DeliveryState.UNCERTAIN.value,
                    t.deliveries.c.channel.in_(list(channels)),
                    t.deliveries.c.due_at <= now,
                    sa.or_(t.deliveries.c.lease_until.is_(None), t.deliveries.c.lease_until < now),
                )
                .order_by(t.deliveries.c.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            did = conn.execute(q).scalar()
            if did is None:
                return None
            conn.execute(
                t.deliveries.update().where(t.deliveries.c.id == did).values(claimed_by=worker, lease_until=now + lease)
            )
            row = conn.execute(_DELIVERY_BY_ID, {"p_id": did}).one()
        return _delivery_from_row(row)

    def _finish(self, conn: Connection, delivery_id: int, attempt: Attempt, **values: Any) -> None:
        conn.execute(
            t.deliveries.update()
            .where(t.deliveries.c.id == delivery_id)
            .values(lease_until=None, updated_at=attempt.at, **values)
        )
        conn.execute(_ATTEMPT, _attempt_row(attempt))

    def mark_sent(self, delivery_id: int, published: Published, *, now: datetime, outcome: str = "sent") -> None:
        with self.tx() as conn:
            conn.execute(
                _MARK_SENT,
                {"p_id": delivery_id, "p_now": now, "p_post_id": published.post_id, "p_post_url": published.url},
            )
            conn.execute(
                _ATTEMPT, _attempt_row(Attempt(delivery_id, now, outcome, message=f"post id {published.post_id}"))
            )

    def mark_retry(
        self, delivery_id: int, *, due_at: datetime, attempt: Attempt, state: str = DeliveryState.PENDING.value
    ) -> None:
        with self.tx() as conn:
            self._finish(
                conn,
                delivery_id,
                attempt,
                state=state,
                due_at=due_at,
                last_error=f"{attempt.outcome}: {attempt.message}",
            )

    def mark_final(self, delivery_id: int, *, state: DeliveryState, attempt: Attempt) -> None:
        with self.tx() as conn:
            self._finish(
                conn, delivery_id, attempt, state=state.value, last_error=f"{attempt.outcome}: {attempt.message}"
            )

    def release(self, delivery_id: int, *, now: datetime, due_at: datetime, reason: str) -> None:
        """Give back a claim without an attempt (the channel got paused or capped meanwhile)."""
        with self.tx() as conn:
            conn.execute(
                t.deliveries.update()
                .where(t.deliveries.c.id == delivery_id)
                .values(
                    state=DeliveryState.PENDING.value,
                    attempts=sa.case((t.deliveries.c.attempts > 0, t.deliveries.c.attempts - 1), else_=0),
                    lease_until=None,
                    due_at=due_at,
                    updated_at=now,
                    last_error=reason,
                )
            )

    def attempts(self, delivery_id: int) -> list[Attempt]:
        with self.tx() as conn:
            rows = conn.execute(
                sa.select(t.attempts).where(t.attempts.c.delivery_id == delivery_id).order_by(t.attempts.c.id)
            ).all()
        return [Attempt(r.delivery_id, r.at, r.outcome, r.http_status, r.code, r.message) for r in rows]

    def operator_retry(self, delivery_id: int, *, now: datetime) -> Delivery:
        """`retry ID`: an uncertain, failed or dead delivery goes back to pending."""
        d = self.delivery(delivery_id)
        if d.state not in (DeliveryState.UNCERTAIN, DeliveryState.FAILED, DeliveryState.DEAD, DeliveryState.SKIPPED):
            raise StoreError(
                f"delivery {delivery_id} is {d.state.value}; "
                "only uncertain, failed, dead or skipped ones can be retried"
            )
        with self.tx() as conn:
            self._finish(
                conn,
                delivery_id,
                Attempt(delivery_id, now, "operator", message="retry requested by the operator"),
                state=DeliveryState.PENDING.value,
                due_at=now,
                attempts=0,
            )
        return self.delivery(delivery_id)

    def operator_skip(self, delivery_id: int, *, now: datetime) -> Delivery:
        """`skip ID`: the delivery is closed without (re)publishing."""
        d = self.delivery(delivery_id)
        if d.state in (DeliveryState.SENT, DeliveryState.IN_FLIGHT):
            raise StoreError(f"delivery {delivery_id} is {d.state.value}; it cannot be skipped")
        with self.tx() as conn:
            self._finish(
                conn,
                delivery_id,
                Attempt(delivery_id, now, "operator", message="skipped by the operator"),
                state=DeliveryState.SKIPPED.value,
            )
        return self.delivery(delivery_id)

    def sent_counts(self, channel: str, *, now: datetime) -> tuple[int, int, datetime | None]:
        """(posts today, posts this month, last post time) for pacing and cost."""
        with self.tx() as conn:
            base = (
                sa.select(sa.func.count())
                .select_from(t.deliveries)
                .where(t.deliveries.c.channel == channel, t.deliveries.c.state == DeliveryState.SENT.value)
            )
            today = conn.execute(base.where(t.deliveries.c.sent_at >= day_start(now))).scalar() or 0
            month = conn.execute(base.where(t.deliveries.c.sent_at >= month_start(now))).scalar() or 0
            last = conn.execute(
                sa.select(sa.func.max(t.deliveries.c.sent_at)).where(
                    t.deliveries.c.channel == channel, t.deliveries.c.state == DeliveryState.SENT.value
                )
            ).scalar()
        return int(today), int(month), last

    def delivery_counts(self) -> dict[str, dict[str, int]]:
        with self.tx() as conn:
            rows = conn.execute(
                sa.select(t.deliveries.c.channel, t.deliveries.c.state, sa.func.count()).group_by(
                    t.deliveries.c.channel, t.deliveries.c.state
                )
            ).all()
        out: dict[str, dict[str, int]] = {}
        for channel, state, n in rows:
            out.setdefault(channel, {})[state] = int(n)
        return out

    def next_due(self, channel: str) -> datetime | None:
        with self.tx() as conn:
            return conn.execute(
                sa.select(sa.func.min(t.deliveries.c.due_at)).where(
                    t.deliveries.c.channel == channel, t.deliveries.c.state == DeliveryState.PENDING.value
                )
            ).scalar()

    # ---------------------------------------------------------------- channels

    def paused_channels(self) -> dict[str, str]:
        with self.tx() as conn:
            rows = conn.execute(
                sa.select(t.channels.c.name, t.channels.c.paused_reason).where(t.channels.c.paused.is_(True))
            )
            return {name: reason or "" for name, reason in rows}

    def pause_channel(self, name: str, reason: str, *, now: datetime) -> None:
        with self.tx() as conn:
            updated = conn.execute(
                t.channels.update()
                .where(t.channels.c.name == name)
                .values(paused=True, paused_reason=reason, paused_at=now)
            ).rowcount
            if not updated:
                conn.execute(t.channels.insert().values(name=name, paused=True, paused_reason=reason, paused_at=now))

    def resume_channel(self, name: str) -> bool:
        with self.tx() as conn:
            return bool(
                conn.execute(
                    t.channels.update()
                    .where(t.channels.c.name == name, t.channels.c.paused.is_(True))
                    .values(paused=False, paused_reason=None)
                ).rowcount
            )
