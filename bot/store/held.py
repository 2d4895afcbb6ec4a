"""The store's flood-guard half: new summaries held back from the social channels, and their release.

A mixin of ``Store`` (every method one transaction, errors as ``StoreError``).
A held summary is stored like any other (feeds, digest); it only has no
deliveries until the operator releases it (``python -m bot release``).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.records import DeliveryState
from bot.store import schema as t


@dataclass(frozen=True, slots=True)
class Release:
    """What one `release` did."""

    #: summaries no longer held
    summaries: int
    #: deliveries queued for them (0 when discarded)
    deliveries: int
    #: summaries still held afterwards (other sources, or beyond the limit)
    still_held: int


class HeldStore:
    """Held summaries (mixed into ``bot.store.Store``)."""

    if TYPE_CHECKING:

        def tx(self) -> AbstractContextManager[Connection]: ...

    def held_counts(self) -> dict[str, int]:
        """Source URL → how many of its summaries the flood guard holds."""
        with self.tx() as conn:
            rows = conn.execute(
                sa.select(t.sources.c.url, sa.func.count())
                .select_from(t.summaries.join(t.sources, t.sources.c.id == t.summaries.c.source_id))
                .where(t.summaries.c.held.is_(True))
                .group_by(t.sources.c.url)
            )
            return {url: int(n) for url, n in rows}

    def release_held(
        self,
        *,
        now: datetime,
        channels: Sequence[str],
        source: str | None = None,
        limit: int | None = None,
        discard: bool = False,
    ) -> Release:
        """Queue held summaries (the newest `limit`, of `source`) on `channels`, oldest first; or, with
        `discard`, let them go unposted. Either way they are no longer held."""
        query = sa.select(t.summaries.c.id).where(t.summaries.c.held.is_(True))
        if source is not None:
            query = query.where(t.summaries.c.source_id.in_(sa.select(t.sources.c.id).where(t.sources.c.url == source)))
        # FOR UPDATE (PostgreSQL): two releases at once must not queue the same summary twice.
        query = query.order_by(t.summaries.c.edited_at.desc(), t.summaries.c.id.desc()).limit(limit).with_for_update()
        with self.tx() as conn:
            ids = [row.id for row in conn.execute(query)]
            rows = [
                {
                    "summary_id": sid,
                    "channel": channel,
                    "revision": 0,
                    "state": DeliveryState.PENDING.value,
                    "attempts": 0,
                    "due_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                # Oldest first, so the channels publish in the order the site did.
                for sid in reversed(ids)
                for channel in ([] if discard else channels)
            ]
            for i in range(0, len(ids), 500):
                conn.execute(t.summaries.update().where(t.summaries.c.id.in_(ids[i : i + 500])).values(held=False))
            if rows:
                conn.execute(t.deliveries.insert(), rows)
            left = conn.execute(
                sa.select(sa.func.count()).select_from(t.summaries).where(t.summaries.c.held.is_(True))
            ).scalar()
        return Release(summaries=len(ids), deliveries=len(rows), still_held=int(left or 0))
