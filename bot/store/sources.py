"""The store's sources: what each feed said last, and applying one poll's plan.

A plan's new and edited summaries are written with their deliveries in one transaction.

A mixin of ``Store`` (every method one transaction, errors as ``StoreError``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.decide import PollPlan, first_published
from bot.records import DeliveryState, FetchResult, SourceState
from bot.store import schema as t


class SourceStore:
    """Sources and polls (mixed into ``bot.store.Store``)."""

    if TYPE_CHECKING:

        def tx(self) -> AbstractContextManager[Connection]: ...

    # ------------------------------------------------------------------ sources

    def source_state(self, url: str) -> SourceState:
        with self.tx() as conn:
            row = conn.execute(sa.select(t.sources).where(t.sources.c.url == url)).first()
        if row is None:
            return SourceState(url=url)
        m = row._mapping
        return SourceState(**{k: m[k] for k in SourceState.__dataclass_fields__})

    def all_sources(self) -> list[SourceState]:
        with self.tx() as conn:
            rows = conn.execute(sa.select(t.sources).order_by(t.sources.c.id)).all()
        return [SourceState(**{k: r._mapping[k] for k in SourceState.__dataclass_fields__}) for r in rows]

    def _source_id(self, conn: Connection, url: str) -> int:
        sid = conn.execute(sa.select(t.sources.c.id).where(t.sources.c.url == url)).scalar()
        if sid is None:
            sid = conn.execute(t.sources.insert().values(url=url, failures=0, items_seen=0)).inserted_primary_key[0]  # type: ignore[index]
        return int(sid)

    def record_not_modified(self, url: str, *, now: datetime, fetch: FetchResult, next_poll_at: datetime) -> None:
        """A 304: remember the poll, nothing else."""
        with self.tx() as conn:
            sid = self._source_id(conn, url)
            conn.execute(
                t.sources.update()
                .where(t.sources.c.id == sid)
                .values(
                    last_poll_at=now,
                    last_ok_at=now,
                    last_status=fetch.status,
                    last_error=None,
                    failures=0,
                    fresh_until=fetch.fresh_until,
                    next_poll_at=next_poll_at,
                )
            )

    def record_poll_error(
        self, url: str, *, now: datetime, error: str, status: int | None, next_poll_at: datetime
    ) -> int:
        """A failed poll: count it and schedule the next; returns the failure count."""
        with self.tx() as conn:
            sid = self._source_id(conn, url)
            failures = int(conn.execute(sa.select(t.sources.c.failures).where(t.sources.c.id == sid)).scalar() or 0) + 1
            conn.execute(
                t.sources.update()
                .where(t.sources.c.id == sid)
                .values(
                    last_poll_at=now, last_status=status, last_error=error, failures=failures, next_poll_at=next_poll_at
                )
            )
        return failures

    def known_versions(self, guids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """guid → (content hash, version) for the guids the store has."""
        out: dict[str, tuple[str, int]] = {}
        with self.tx() as conn:
            for i in range(0, len(guids), 500):
                chunk = guids[i : i + 500]
                rows = conn.execute(
                    sa.select(t.summaries.c.guid, t.summaries.c.content_hash, t.summaries.c.version).where(
                        t.summaries.c.guid.in_(chunk)
                    )
                )
                for guid, h, v in rows:
                    out[guid] = (h, v)
        return out

    # long: one poll is one transaction (new, edited, held summaries and their deliveries); moved verbatim
    def apply_poll(
        self,
        url: str,
        plan: PollPlan,
        *,
        now: datetime,
        fetch: FetchResult,
        next_poll_at: datetime,
        problems: Sequence[str] = (),
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]:
        """Write a poll's outcome in ONE transaction: summaries, versions, deliveries, source state.

        Either all of it is stored or none: a crash never leaves a summary
        without its deliveries. Returns guid → summary id of new summaries.
        """
        ids: dict[str, int] = {}
        with self.tx() as conn:
            sid = self._source_id(conn, url)
            first = conn.execute(sa.select(t.sources.c.first_polled_at).where(t.sources.c.id == sid)).scalar() is None
            if plan.new:
                rows = [
                    {
                        "source_id": sid,
                        "guid": s.guid,
                        "title": s.title,
                        "author": s.author,
                        "text": s.text,
                        "link": s.link,
                        "votes": s.votes,
                        "arxiv_id": s.arxiv_id,
                        "bibtex_key": s.bibtex_key,
                        "categories": list(s.categories),
                        "content_hash": s.content_hash,
                        "version": 1,
                        "edited_at": s.edited_at,
                        "first_seen_at": now,
                        "published_at": first_published(s.edited_at, now),
                        "changed_at": now,
                        "backfilled": s.guid in plan.backfilled,
                        "held": s.guid in plan.held,
                    }
                    for s in plan.new
                ]
                for i in range(0, len(rows), 200):
                    conn.execute(t.summaries.insert(), rows[i : i + 200])
                    if progress:
                        progress(len(rows[i : i + 200]))
                for guid, rid in conn.execute(
                    sa.select(t.summaries.c.guid, t.summaries.c.id).where(
                        t.summaries.c.guid.in_([s.guid for s in plan.new])
                    )
                ):
                    ids[guid] = rid
                conn.execute(
                    t.summary_versions.insert(),
                    [
                        {
                            "summary_id": ids[s.guid],
                            "version": 1,
                            "title": s.title,
                            "author": s.author,
                            "text": s.text,
                            "content_hash": s.content_hash,
                            "edited_at": s.edited_at,
                            "seen_at": now,
                        }
                        for s in plan.new
                    ],
                )
            edited_ids: dict[str, int] = {}
            for s in plan.edited:
                row = conn.execute(
                    sa.select(
                        t.summaries.c.id, t.summaries.c.version, t.summaries.c.published_at, t.summaries.c.first_seen_at
                    ).where(t.summaries.c.guid == s.guid)
                ).one()
                version = row.version + 1
                edited_ids[s.guid] = row.id
                conn.execute(
                    t.summaries.update()
                    .where(t.summaries.c.id == row.id)
                    .values(
                        title=s.title,
                        author=s.author,
                        text=s.text,
                        link=s.link,
                        votes=s.votes,
                        arxiv_id=s.arxiv_id,
                        bibtex_key=s.bibtex_key,
                        categories=list(s.categories),
                        content_hash=s.content_hash,
                        version=version,
                        edited_at=s.edited_at,
                        published_at=first_published(s.edited_at, row.published_at or row.first_seen_at),
                        changed_at=now,
                    )
                )
                conn.execute(
                    t.summary_versions.insert().values(
                        summary_id=row.id,
                        version=version,
                        title=s.title,
                        author=s.author,
                        text=s.text,
                        content_hash=s.content_hash,
                        edited_at=s.edited_at,
                        seen_at=now,
                    )
                )
            if plan.queue:
                all_ids = {**ids, **edited_ids}
                conn.execute(
                    t.deliveries.insert(),
                    [
                        {
                            "summary_id": all_ids[guid],
                            "channel": channel,
                            "revision": revision,
                            "state": DeliveryState.PENDING.value,
                            "attempts": 0,
                            "due_at": now,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for guid, channel, revision in plan.queue
                    ],
                )
            values: dict[str, Any] = {
                "etag": fetch.etag,
                "last_modified": fetch.last_modified,
                "fresh_until": fetch.fresh_until,
                "last_poll_at": now,
                "last_ok_at": now,
                "last_status": fetch.status,
                "last_error": "; ".join(problems)[:2000] if problems else None,
                "failures": 0,
                "next_poll_at": next_poll_at,
                "items_seen": t.sources.c.items_seen + len(plan.new),
            }
            if first:
                values["first_polled_at"] = now
            conn.execute(t.sources.update().where(t.sources.c.id == sid).values(**values))
        return ids
