"""The store's summaries: reading them and their versions, and the render cache.

A mixin of ``Store`` (every method one transaction, errors as ``StoreError``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.errors import StoreError
from bot.records import StoredSummary
from bot.store import schema as t
from bot.store.engine import _upsert
from bot.store.rows import _stored_from_row


class SummaryStore:
    """Summaries and their renders (mixed into ``bot.store.Store``)."""

    if TYPE_CHECKING:

        def tx(self) -> AbstractContextManager[Connection]: ...

    # ---------------------------------------------------------------- summaries

    def summary(self, summary_id: int) -> StoredSummary:
        with self.tx() as conn:
            row = conn.execute(sa.select(t.summaries).where(t.summaries.c.id == summary_id)).first()
        if row is None:
            raise StoreError(f"no summary with id {summary_id}")
        return _stored_from_row(row)

    def summary_by_guid(self, guid: str) -> StoredSummary | None:
        with self.tx() as conn:
            row = conn.execute(sa.select(t.summaries).where(t.summaries.c.guid == guid)).first()
        return _stored_from_row(row) if row else None

    def latest_summaries(self, limit: int | None = None, *, with_text: bool = True) -> list[StoredSummary]:
        """Newest edit first. `with_text=False` leaves `text` empty: a cheap listing for feeds."""
        columns: list[Any] = [c for c in t.summaries.c if with_text or c.name != "text"]
        if not with_text:
            columns.append(sa.literal("").label("text"))
        q = sa.select(*columns).order_by(t.summaries.c.edited_at.desc(), t.summaries.c.id.desc())
        if limit:
            q = q.limit(limit)
        with self.tx() as conn:
            return [_stored_from_row(r) for r in conn.execute(q)]

    def summaries_by_ids(self, ids: Sequence[int]) -> list[StoredSummary]:
        out: list[StoredSummary] = []
        with self.tx() as conn:
            for i in range(0, len(ids), 500):
                rows = conn.execute(sa.select(t.summaries).where(t.summaries.c.id.in_(list(ids[i : i + 500]))))
                out.extend(_stored_from_row(r) for r in rows)
        return out

    def summaries_first_seen_between(self, start: datetime, end: datetime) -> list[StoredSummary]:
        """Summaries a poll found as news in [start, end) (backfilled ones excluded)."""
        q = (
            sa.select(t.summaries)
            .where(
                t.summaries.c.first_seen_at >= start,
                t.summaries.c.first_seen_at < end,
                t.summaries.c.backfilled.is_(False),
            )
            .order_by(t.summaries.c.votes.desc(), t.summaries.c.edited_at.desc())
        )
        with self.tx() as conn:
            return [_stored_from_row(r) for r in conn.execute(q)]

    def versions(self, summary_id: int) -> list[tuple[int, str, datetime]]:
        with self.tx() as conn:
            rows = conn.execute(
                sa.select(
                    t.summary_versions.c.version, t.summary_versions.c.content_hash, t.summary_versions.c.edited_at
                )
                .where(t.summary_versions.c.summary_id == summary_id)
                .order_by(t.summary_versions.c.version)
            ).all()
        return [(r[0], r[1], r[2]) for r in rows]

    def count_summaries(self) -> int:
        with self.tx() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t.summaries)).scalar() or 0)

    # ------------------------------------------------------------ render cache

    def cached_renders(self, ids_hashes: Mapping[int, str]) -> dict[int, tuple[str, str]]:
        """summary id → (html, text) for those whose cached render matches the current hash."""
        out: dict[int, tuple[str, str]] = {}
        ids = list(ids_hashes)
        with self.tx() as conn:
            for i in range(0, len(ids), 500):
                rows = conn.execute(
                    sa.select(
                        t.renders.c.summary_id, t.renders.c.content_hash, t.renders.c.html, t.renders.c.text
                    ).where(t.renders.c.summary_id.in_(ids[i : i + 500]))
                )
                for sid, h, html, text in rows:
                    if ids_hashes.get(sid) == h:
                        out[sid] = (html, text)
        return out

    def put_renders(self, items: Sequence[tuple[int, str, str, str]], *, now: datetime) -> None:
        """Store (summary id, content hash, html, text), replacing older versions' renders."""
        if not items:
            return
        with self.tx() as conn:
            _upsert(
                conn,
                t.renders,
                ["summary_id"],
                [
                    {"summary_id": s, "content_hash": h, "html": html, "text": text, "rendered_at": now}
                    for s, h, html, text in items
                ],
            )
