"""The store's subscribers: the digest's list (double opt-in, unsubscribes, bounces, CSV import) and rate limits.

A mixin of ``Store`` (every method one transaction, errors as ``StoreError``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError

from bot.decide import rate_window
from bot.records import Subscriber, SubscriberState
from bot.store import schema as t
from bot.store.sending import CHUNK


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    """What importing one address did: "added", or why it was skipped."""

    address_key: str
    #: "added", "upgraded" (a pending address now confirmed), or "known:<state>" (left as it was)
    result: str


def address_key(address: str) -> str:
    """One key per mailbox: the address lower-cased (providers ignore case in practice)."""
    return address.casefold()


def _subscriber(row: Row[Any]) -> Subscriber:
    m = row._mapping
    requested = m["requested_categories"]
    return Subscriber(
        id=m["id"],
        address=m["address"],
        state=SubscriberState(m["state"]),
        categories=tuple(m["categories"] or ()),
        consent_source=m["consent_source"],
        created_at=m["created_at"],
        confirmed_at=m["confirmed_at"],
        unsubscribed_at=m["unsubscribed_at"],
        bounced_at=m["bounced_at"],
        permanent_failures=m["permanent_failures"],
        last_error=m["last_error"],
        requested_categories=tuple(requested) if requested is not None else None,
    )


class SubscriberStore:
    """Subscribers and rate limits (mixed into ``bot.store.Store``)."""

    if TYPE_CHECKING:
        engine: Engine

        @property
        def dialect(self) -> str: ...

        def tx(self) -> AbstractContextManager[Connection]: ...

    # ------------------------------------------------------------ subscribers

    def subscriber(self, address: str) -> Subscriber | None:
        with self.tx() as conn:
            row = conn.execute(
                sa.select(t.subscribers).where(t.subscribers.c.address_key == address_key(address))
            ).first()
        return _subscriber(row) if row else None

    def add_subscriber(
        self, address: str, *, now: datetime, confirmed: bool, categories: Sequence[str], source: str
    ) -> tuple[str, Subscriber]:
        """The operator adds an address: ("added" | "confirmed" | "pending" | "already", subscriber).

        An unsubscribed or bounced address is left alone ("unsubscribed" /
        "bounced"): only the subscriber's own confirmation brings it back.
        """
        key = address_key(address)
        with self.tx() as conn:
            row = conn.execute(sa.select(t.subscribers).where(t.subscribers.c.address_key == key)).first()
            if row is None:
                state = SubscriberState.CONFIRMED if confirmed else SubscriberState.PENDING
                conn.execute(
                    t.subscribers.insert().values(
                        address=address,
                        address_key=key,
                        state=state.value,
                        categories=list(categories),
                        consent_source=source,
                        created_at=now,
                        confirmed_at=now if confirmed else None,
                        updated_at=now,
                        permanent_failures=0,
                    )
                )
                result = "added"
            else:
                current = SubscriberState(row.state)
                if current in (SubscriberState.UNSUBSCRIBED, SubscriberState.BOUNCED):
                    result = current.value
                elif current is SubscriberState.CONFIRMED:
                    result = "already"
                elif confirmed:
                    values: dict[str, Any] = {
                        "state": SubscriberState.CONFIRMED.value,
                        "confirmed_at": now,
                        "updated_at": now,
                        "consent_source": source,
                    }
                    if categories:
                        values["categories"] = list(categories)
                    conn.execute(t.subscribers.update().where(t.subscribers.c.id == row.id).values(**values))
                    result = "confirmed"
                else:
                    result = "pending"
            fresh = conn.execute(sa.select(t.subscribers).where(t.subscribers.c.address_key == key)).one()
        return result, _subscriber(fresh)

    def request_subscription(
        self, address: str, *, categories: Sequence[str], now: datetime, source: str
    ) -> Subscriber:
        """Someone asked on /subscribe: a new address becomes pending; a known one only remembers the
        categories asked for, applied if the confirmation link is followed (nothing else changes)."""
        key = address_key(address)
        with self.tx() as conn:
            row = conn.execute(sa.select(t.subscribers.c.id).where(t.subscribers.c.address_key == key)).first()
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            t.subscribers.insert().values(
                                address=address,
                                address_key=key,
                                state=SubscriberState.PENDING.value,
                                categories=list(categories),
                                requested_categories=list(categories),
                                consent_source=source,
                                created_at=now,
                                updated_at=now,
                                permanent_failures=0,
                            )
                        )
                except IntegrityError:
                    pass  # the same address asked twice at once: the other request made the row
                else:
                    return _subscriber(
                        conn.execute(sa.select(t.subscribers).where(t.subscribers.c.address_key == key)).one()
                    )
            conn.execute(
                t.subscribers.update()
                .where(t.subscribers.c.address_key == key)
                .values(requested_categories=list(categories), updated_at=now)
            )
            return _subscriber(conn.execute(sa.select(t.subscribers).where(t.subscribers.c.address_key == key)).one())

    def confirmation_sent(self, subscriber_id: int, *, now: datetime) -> None:
        with self.tx() as conn:
            conn.execute(
                t.subscribers.update().where(t.subscribers.c.id == subscriber_id).values(last_confirmation_sent_at=now)
            )

    def confirm_subscriber(self, address: str, *, now: datetime, source: str) -> Subscriber | None:
        """The subscriber followed their confirmation link: confirmed, whatever the state before.

        This is the one way back for an unsubscribed or bounced address. The
        categories asked for with the link's request take effect now.
        """
        key = address_key(address)
        with self.tx() as conn:
            row = conn.execute(sa.select(t.subscribers).where(t.subscribers.c.address_key == key)).first()
            if row is None:
                return None
            values: dict[str, Any] = {"requested_categories": None, "updated_at": now}
            if row.requested_categories is not None:
                values["categories"] = list(row.requested_categories)
            if row.state != SubscriberState.CONFIRMED.value:
                values.update(
                    state=SubscriberState.CONFIRMED.value,
                    confirmed_at=now,
                    permanent_failures=0,
                    consent_source=source,
                    last_error=None,
                )
            conn.execute(t.subscribers.update().where(t.subscribers.c.id == row.id).values(**values))
            return _subscriber(conn.execute(sa.select(t.subscribers).where(t.subscribers.c.id == row.id)).one())

    def unsubscribe(self, address: str, *, now: datetime) -> Subscriber | None:
        """Never mail this address again (idempotent; a bounced address stays bounced)."""
        key = address_key(address)
        with self.tx() as conn:
            conn.execute(
                t.subscribers.update()
                .where(
                    t.subscribers.c.address_key == key,
                    t.subscribers.c.state.in_([SubscriberState.PENDING.value, SubscriberState.CONFIRMED.value]),
                )
                .values(
                    state=SubscriberState.UNSUBSCRIBED.value,
                    unsubscribed_at=now,
                    updated_at=now,
                    requested_categories=None,
                )
            )
            row = conn.execute(sa.select(t.subscribers).where(t.subscribers.c.address_key == key)).first()
        return _subscriber(row) if row else None

    def set_categories(self, address: str, categories: Sequence[str], *, now: datetime) -> Subscriber | None:
        key = address_key(address)
        with self.tx() as conn:
            conn.execute(
                t.subscribers.update()
                .where(t.subscribers.c.address_key == key)
                .values(categories=list(categories), updated_at=now)
            )
            row = conn.execute(sa.select(t.subscribers).where(t.subscribers.c.address_key == key)).first()
        return _subscriber(row) if row else None

    def iter_subscribers(self, *, state: str | None = None, chunk: int = CHUNK) -> Iterator[Subscriber]:
        """Every subscriber (of one state), by id, a chunk per transaction: never all in memory."""
        last = 0
        while True:
            q = sa.select(t.subscribers).where(t.subscribers.c.id > last).order_by(t.subscribers.c.id).limit(chunk)
            if state:
                q = q.where(t.subscribers.c.state == state)
            with self.tx() as conn:
                rows = conn.execute(q).all()
            if not rows:
                return
            for row in rows:
                yield _subscriber(row)
            last = rows[-1].id

    def subscriber_counts(self) -> dict[str, int]:
        with self.tx() as conn:
            rows = conn.execute(sa.select(t.subscribers.c.state, sa.func.count()).group_by(t.subscribers.c.state)).all()
        return {state: int(n) for state, n in rows}

    def import_subscribers(
        self, rows: Sequence[tuple[str, Sequence[str]]], *, now: datetime, confirmed: bool, source: str
    ) -> list[ImportOutcome]:
        """Add a chunk of (address, categories) in one transaction; known addresses are left as they are.

        A pending address imported with `confirmed` becomes confirmed; an
        unsubscribed or bounced one is never touched.
        """
        by_key = {address_key(a): (a, cats) for a, cats in rows}
        out: list[ImportOutcome] = []
        with self.tx() as conn:
            known = {
                r.address_key: r
                for r in conn.execute(
                    sa.select(t.subscribers.c.id, t.subscribers.c.address_key, t.subscribers.c.state).where(
                        t.subscribers.c.address_key.in_(list(by_key))
                    )
                )
            }
            fresh = []
            for key, (address, cats) in by_key.items():
                row = known.get(key)
                if row is None:
                    fresh.append(
                        {
                            "address": address,
                            "address_key": key,
                            "state": (SubscriberState.CONFIRMED if confirmed else SubscriberState.PENDING).value,
                            "categories": list(cats),
                            "requested_categories": None,
                            "consent_source": source,
                            "created_at": now,
                            "confirmed_at": now if confirmed else None,
                            "updated_at": now,
                            "permanent_failures": 0,
                        }
                    )
                    out.append(ImportOutcome(key, "added"))
                elif confirmed and row.state == SubscriberState.PENDING.value:
                    conn.execute(
                        t.subscribers.update()
                        .where(t.subscribers.c.id == row.id)
                        .values(
                            state=SubscriberState.CONFIRMED.value,
                            confirmed_at=now,
                            updated_at=now,
                            consent_source=source,
                        )
                    )
                    out.append(ImportOutcome(key, "upgraded"))
                else:
                    out.append(ImportOutcome(key, f"known:{row.state}"))
            if fresh:
                conn.execute(t.subscribers.insert(), fresh)
        return out

    # ------------------------------------------------------------ rate limits

    def rate_limit(self, key: str, *, now: datetime, window: timedelta, limit: int) -> bool:
        """Count one request under `key`; False when the window's limit is already reached.

        Keys are stored hashed: the table never holds an address or an IP in clear.
        """
        digest_key = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        rl = t.rate_limits
        with self.tx() as conn:
            q = sa.select(rl.c.window_start, rl.c.count).where(rl.c.key == digest_key)
            if self.dialect == "postgresql":
                q = q.with_for_update()
            row = conn.execute(q).first()
            # (row[1], not row.count: a Row is a tuple, and tuple.count is a method)
            allowed, start, count = rate_window(
                now, row[0] if row else None, row[1] if row else 0, window=window, limit=limit
            )
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(rl.insert().values(key=digest_key, window_start=start, count=count))
                    return allowed
                except IntegrityError:
                    # Another request made the row meanwhile: count this one on it.
                    row = conn.execute(q).one()
                    allowed, start, count = rate_window(now, row[0], row[1], window=window, limit=limit)
            if allowed:
                conn.execute(rl.update().where(rl.c.key == digest_key).values(window_start=start, count=count))
            # Old windows are of no use: drop some now and then, so the table stays small.
            if int(now.timestamp()) % 97 == 0:
                conn.execute(rl.delete().where(rl.c.window_start < now - timedelta(days=2)))
        return allowed
