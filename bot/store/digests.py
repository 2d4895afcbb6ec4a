"""The store's digests: digest issues and one send row per (issue, subscriber).

A mixin of ``Store`` (every method one transaction, errors as ``StoreError``).
It records what the digest job decides; it never renders or sends. Sends are
claimed like deliveries: a committed lease first (SKIP LOCKED on PostgreSQL,
BEGIN IMMEDIATE on SQLite), then ``handing_over`` committed before the SMTP
transaction, then the outcome, so several processes can send one issue at once
and a crash leaves exactly the possibly-delivered rows marked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError

from bot.errors import StoreError
from bot.records import DigestState, SendClaim, SendState, StoredDigest, SubscriberState
from bot.store import schema as t
from bot.store.sending import SendRecorder, _send_sql

_OPEN = (SendState.PENDING.value, SendState.CLAIMED.value, SendState.HANDING_OVER.value)


def _digest(row: Row[Any]) -> StoredDigest:
    m = row._mapping
    return StoredDigest(
        id=m["id"],
        issue=m["issue"],
        period_start=m["period_start"],
        period_end=m["period_end"],
        created_at=m["created_at"],
        completed_at=m["completed_at"],
        state=m["state"],
        nonce=m["nonce"],
        recipients=m["recipients"],
        items=tuple(m["items"] or ()),
        variants=tuple(tuple(v) for v in (m["variants"] or ())),
    )


def _categories(raw: Any, parsed: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """A subscriber's categories as the driver gives them (JSON text on SQLite, a list on PostgreSQL);
    `parsed` remembers each text seen (subscribers share a few sets)."""
    if isinstance(raw, str):
        found = parsed.get(raw)
        if found is None:
            found = parsed[raw] = tuple(json.loads(raw) or ())
        return found
    return tuple(raw or ())


class DigestStore:
    """Digests and their sends (mixed into ``bot.store.Store``)."""

    if TYPE_CHECKING:
        engine: Engine

        @property
        def dialect(self) -> str: ...

        def tx(self) -> AbstractContextManager[Connection]: ...

    # ---------------------------------------------------------------- digests

    def last_digest(self) -> StoredDigest | None:
        with self.tx() as conn:
            row = conn.execute(sa.select(t.digests).order_by(t.digests.c.issue.desc()).limit(1)).first()
        return _digest(row) if row else None

    def digest_by_period_end(self, end: datetime) -> StoredDigest | None:
        with self.tx() as conn:
            row = conn.execute(sa.select(t.digests).where(t.digests.c.period_end == end)).first()
        return _digest(row) if row else None

    def stored_digest(self, digest_id: int) -> StoredDigest:
        with self.tx() as conn:
            row = conn.execute(sa.select(t.digests).where(t.digests.c.id == digest_id)).first()
        if row is None:
            raise StoreError(f"no digest with id {digest_id}")
        return _digest(row)

    def unfinished_digests(self) -> list[StoredDigest]:
        """Issues with sends still open (pending, claimed or handing over), oldest first."""
        with self.tx() as conn:
            rows = conn.execute(
                sa.select(t.digests).where(t.digests.c.state == DigestState.SENDING).order_by(t.digests.c.issue)
            ).all()
        return [_digest(r) for r in rows]

    # long: making an issue is one transaction (the issue, its sends streamed per chunk); moved verbatim
    def create_digest(
        self,
        *,
        period_start: datetime,
        period_end: datetime,
        items: Sequence[Mapping[str, Any]],
        nonce: str,
        now: datetime,
        select: Callable[[tuple[str, ...]], tuple[int, ...] | None],
        message_id: Callable[[int, int], str],
    ) -> StoredDigest | None:
        """Make the issue and one pending send per confirmed subscriber `select` gives items to.

        `select(categories)` returns the subscriber's item indexes, or None to
        send them nothing; `message_id(issue, subscriber id)` names each send's
        message, fixed from here on. Subscribers are streamed in chunks. All of it is one
        transaction; None when another process made this period's issue first.
        """
        variants: dict[tuple[int, ...], int] = {}
        try:
            with self.tx() as conn:
                issue = (
                    int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(t.digests.c.issue), 0))).scalar() or 0) + 1
                )
                digest_id = conn.execute(
                    t.digests.insert().values(
                        issue=issue,
                        period_start=period_start,
                        period_end=period_end,
                        created_at=now,
                        items=[dict(i) for i in items],
                        variants=[],
                        nonce=nonce,
                        recipients=0,
                        state=DigestState.SENDING,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
                sql = _send_sql(conn.dialect)
                due = sql.time(now)
                wanted: dict[str, tuple[str, ...]] = {}
                last, recipients = 0, 0
                while True:
                    rows = conn.exec_driver_sql(sql.confirmed, {"after": last}).all()
                    if not rows:
                        break
                    last = rows[-1][0]
                    sends: list[dict[str, Any]] = []
                    for sid, cats in rows:
                        chosen = select(_categories(cats, wanted))
                        if chosen is None:
                            continue
                        variant = variants.setdefault(chosen, len(variants))
                        sends.append(
                            {
                                "digest_id": digest_id,
                                "subscriber_id": sid,
                                "variant": variant,
                                "due_at": due,
                                "possibly_duplicated": False,
                                "message_id": message_id(issue, sid),
                            }
                        )
                    if sends:
                        conn.exec_driver_sql(sql.insert, sends)
                        recipients += len(sends)
                ordered = sorted(variants, key=variants.__getitem__)
                conn.execute(
                    t.digests.update()
                    .where(t.digests.c.id == digest_id)
                    .values(
                        variants=[list(v) for v in ordered],
                        recipients=recipients,
                        **({"state": DigestState.SENT, "completed_at": now} if not recipients else {}),
                    )
                )
                row = conn.execute(sa.select(t.digests).where(t.digests.c.id == digest_id)).one()
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                return None
            raise
        return _digest(row)

    # ------------------------------------------------------------------ sends

    def release_abandoned_sends(self, *, now: datetime, dead_workers: Callable[[str], bool]) -> tuple[int, int]:
        """Sends held by a worker that is gone (lease out, or its process dead on this host).

        Claimed ones are simply pending again (nothing was handed over).
        Handing-over ones may have reached the server before the crash: they
        are pending again *and* marked possibly duplicated, so the re-send (same
        Message-ID) is on record. Returns (released, possibly duplicated).
        """
        ds = t.digest_sends
        # Only issues still sending can hold open sends (and their rows are found by primary key).
        sending = ds.c.digest_id.in_(sa.select(t.digests.c.id).where(t.digests.c.state == DigestState.SENDING))
        with self.tx() as conn:
            held = conn.execute(
                sa.select(ds.c.claimed_by, sa.func.min(ds.c.lease_until))
                .where(sending, ds.c.state.in_([SendState.CLAIMED.value, SendState.HANDING_OVER.value]))
                .group_by(ds.c.claimed_by)
            ).all()
            gone = [w for w, _ in held if dead_workers(w or "")]
            abandoned = sa.or_(ds.c.lease_until < now, ds.c.claimed_by.in_(gone)) if gone else ds.c.lease_until < now
            abandoned = sa.and_(sending, abandoned)
            released = conn.execute(
                ds.update()
                .where(ds.c.state == SendState.CLAIMED.value, abandoned)
                .values(
                    state=SendState.PENDING.value,
                    claimed_by=None,
                    lease_until=None,
                    due_at=now,
                    attempts=sa.case((ds.c.attempts > 0, ds.c.attempts - 1), else_=0),
                )
            ).rowcount
            doubtful = conn.execute(
                ds.update()
                .where(ds.c.state == SendState.HANDING_OVER.value, abandoned)
                .values(
                    state=SendState.PENDING.value,
                    claimed_by=None,
                    lease_until=None,
                    due_at=now,
                    possibly_duplicated=True,
                    last_error="possibly duplicated after a crash: the process stopped between handing the message "
                    "over and recording it; sent again with the same Message-ID",
                )
            ).rowcount
        return int(released or 0), int(doubtful or 0)

    def claim_sends(
        self, digest_id: int, *, now: datetime, worker: str, lease: timedelta, limit: int, after: int = 0
    ) -> list[SendClaim]:
        """Claim up to `limit` due sends of one issue (subscriber id > after), committed before any network call.

        A send whose subscriber is no longer confirmed (unsubscribed, bounced
        since the issue was built) is closed as skipped instead.
        """
        sql = _send_sql(self.engine.dialect)
        confirmed = SubscriberState.CONFIRMED.value
        with self.tx() as conn:
            rows = conn.exec_driver_sql(
                sql.due.format(limit=int(limit)), {"digest_id": digest_id, "now": sql.time(now), "after": after}
            ).all()
            skip = [r[0] for r in rows if r[5] != confirmed]
            take = [r for r in rows if r[5] == confirmed]
            if skip:
                marks, ids = sql.ids(skip)
                conn.exec_driver_sql(sql.skip.format(ids=marks), {"digest_id": digest_id, **ids})
            if take:
                marks, ids = sql.ids([r[0] for r in take])
                conn.exec_driver_sql(
                    sql.claim.format(ids=marks),
                    {"worker": worker, "lease_until": sql.time(now + lease), "digest_id": digest_id, **ids},
                )
        return [SendClaim(digest_id, r[0], r[4], r[1], r[2] + 1, bool(r[3]), r[6]) for r in take]

    def send_recorder(self, digest_id: int, *, worker: str, bounce_after: int) -> SendRecorder:
        """The writes of one sending thread (close it when done); see SendRecorder."""
        return SendRecorder(self.engine, digest_id, worker=worker, bounce_after=bounce_after)

    def fail_send(self, digest_id: int, subscriber_id: int, *, worker: str, error: str) -> None:
        """Close one claimed send as failed without trying it (its message could not be built)."""
        ds = t.digest_sends
        with self.tx() as conn:
            conn.execute(
                ds.update()
                .where(ds.c.digest_id == digest_id, ds.c.subscriber_id == subscriber_id, ds.c.claimed_by == worker)
                .values(state=SendState.FAILED.value, claimed_by=None, lease_until=None, last_error=error[:1000])
            )

    def finish_digest(self, digest_id: int, *, now: datetime) -> bool:
        """Mark the issue sent once no send is open; True when it is (now or already)."""
        ds = t.digest_sends
        with self.tx() as conn:
            open_ = conn.execute(
                sa.select(ds.c.subscriber_id).where(ds.c.digest_id == digest_id, ds.c.state.in_(_OPEN)).limit(1)
            ).first()
            if open_ is not None:
                return False
            conn.execute(
                t.digests.update()
                .where(t.digests.c.id == digest_id, t.digests.c.state == DigestState.SENDING)
                .values(state=DigestState.SENT, completed_at=now)
            )
        return True

    def digest_send_counts(self, digest_id: int) -> dict[str, int]:
        """Sends of one issue by state, plus "possibly_duplicated"."""
        ds = t.digest_sends
        with self.tx() as conn:
            rows = conn.execute(
                sa.select(ds.c.state, sa.func.count()).where(ds.c.digest_id == digest_id).group_by(ds.c.state)
            ).all()
            doubtful = conn.execute(
                sa.select(sa.func.count())
                .select_from(ds)
                .where(ds.c.digest_id == digest_id, ds.c.possibly_duplicated.is_(True))
            ).scalar()
        out = {state: int(n) for state, n in rows}
        out["possibly_duplicated"] = int(doubtful or 0)
        return out

    def next_send_due(self, digest_id: int | None = None) -> datetime | None:
        """The earliest due time of a pending send (of one issue, or of any)."""
        ds = t.digest_sends
        q = sa.select(sa.func.min(ds.c.due_at)).where(ds.c.state == SendState.PENDING.value)
        if digest_id is not None:
            q = q.where(ds.c.digest_id == digest_id)
        else:
            q = q.where(ds.c.digest_id.in_(sa.select(t.digests.c.id).where(t.digests.c.state == DigestState.SENDING)))
        with self.tx() as conn:
            return conn.execute(q).scalar()

    def open_send_counts(self) -> dict[str, int]:
        """Sends of every issue still open, by state (pending, claimed, handing_over)."""
        ds = t.digest_sends
        with self.tx() as conn:
            rows = conn.execute(
                sa.select(ds.c.state, sa.func.count())
                .where(
                    ds.c.digest_id.in_(sa.select(t.digests.c.id).where(t.digests.c.state == DigestState.SENDING)),
                    ds.c.state.in_(_OPEN),
                )
                .group_by(ds.c.state)
            ).all()
        return {state: int(n) for state, n in rows}
