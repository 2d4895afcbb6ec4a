"""The store's side of the operator's charts: the poll log, and the raw rows the charts count.

It reads what other parts of the store wrote (deliveries, attempts, subscribers)
and writes only the poll log; the counting per day is bot.charts' business.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.records import POLL_FAILED, POLL_LOG_DAYS, POLL_NOT_MODIFIED, POLL_OK, DeliveryState
from bot.store import schema as t

__all__ = [
    "POLL_FAILED",
    "POLL_LOG_DAYS",
    "POLL_NOT_MODIFIED",
    "POLL_OK",
    "AttemptRow",
    "ChartStore",
    "SubscriberDates",
]


@dataclass(frozen=True, slots=True)
class SubscriberDates:
    """The times one subscriber's state last changed, from which its state on any day is rebuilt."""

    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    bounced_at: datetime | None


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """One try at publishing, as the failures chart counts it."""

    at: datetime
    #: as in bot.records.Attempt: "transient", "permanent", "duplicate", "auth", ...
    outcome: str
    #: the last try of a delivery that is now dead (retries ran out)
    final_of_dead: bool


class ChartStore:
    """The poll log and the charts' queries (mixed into ``bot.store.Store``)."""

    if TYPE_CHECKING:

        def tx(self) -> AbstractContextManager[Connection]: ...

    def log_poll(self, source: str, *, now: datetime, result: str) -> None:
        """Remember one poll's result; rows older than POLL_LOG_DAYS go at the same time."""
        with self.tx() as conn:
            conn.execute(t.poll_log.insert().values(source=source, at=now, result=result))
            conn.execute(t.poll_log.delete().where(t.poll_log.c.at < now - timedelta(days=POLL_LOG_DAYS)))

    def polls_between(self, start: datetime, end: datetime) -> list[tuple[str, datetime]]:
        """(result, time) of every poll in [start, end]."""
        q = sa.select(t.poll_log.c.result, t.poll_log.c.at).where(t.poll_log.c.at >= start, t.poll_log.c.at <= end)
        with self.tx() as conn:
            return [(r.result, r.at) for r in conn.execute(q)]

    def posts_between(self, start: datetime, end: datetime) -> list[tuple[str, datetime]]:
        """(channel, sent time) of every delivery sent in [start, end]."""
        d = t.deliveries.c
        q = sa.select(d.channel, d.sent_at).where(
            d.state == DeliveryState.SENT.value, d.sent_at >= start, d.sent_at <= end
        )
        with self.tx() as conn:
            return [(r.channel, r.sent_at) for r in conn.execute(q)]

    def attempts_between(self, start: datetime, end: datetime) -> list[AttemptRow]:
        """Every publishing attempt in [start, end], with whether it was a dead delivery's last."""
        a, d = t.attempts.c, t.deliveries.c
        later = t.attempts.alias("later")
        last_id = sa.select(sa.func.max(later.c.id)).where(later.c.delivery_id == a.delivery_id).scalar_subquery()
        final_of_dead = sa.case((sa.and_(d.state == DeliveryState.DEAD.value, a.id == last_id), 1), else_=0)
        q = (
            sa.select(a.at, a.outcome, final_of_dead.label("final_of_dead"))
            .select_from(t.attempts.join(t.deliveries, d.id == a.delivery_id))
            .where(a.at >= start, a.at <= end)
        )
        with self.tx() as conn:
            return [AttemptRow(r.at, r.outcome, bool(r.final_of_dead)) for r in conn.execute(q)]

    def subscriber_dates(self, end: datetime) -> list[SubscriberDates]:
        """The state-change times of every subscriber created by `end`."""
        s = t.subscribers.c
        q = sa.select(s.created_at, s.confirmed_at, s.unsubscribed_at, s.bounced_at).where(s.created_at <= end)
        with self.tx() as conn:
            return [
                SubscriberDates(r.created_at, r.confirmed_at, r.unsubscribed_at, r.bounced_at) for r in conn.execute(q)
            ]
