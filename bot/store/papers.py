"""The store's papers: arXiv details cached per paper, and which papers still lack them.

A mixin of ``Store`` (every method one transaction, errors as ``StoreError``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.records import PaperDetails
from bot.store import schema as t
from bot.store.engine import _upsert
from bot.store.rows import _SELECT_PAPERS, _paper_from_row


class PaperStore:
    """Paper details (mixed into ``bot.store.Store``)."""

    if TYPE_CHECKING:

        def tx(self) -> AbstractContextManager[Connection]: ...

    # ------------------------------------------------------------------ papers

    def papers(self, arxiv_ids: Sequence[str]) -> dict[str, PaperDetails | None]:
        """Cached arXiv details; None for ids arXiv said it does not know."""
        if not arxiv_ids:
            return {}
        with self.tx() as conn:
            rows = conn.execute(_SELECT_PAPERS.where(t.papers.c.arxiv_id.in_(list(arxiv_ids))))
            return dict(_paper_from_row(r) for r in rows)

    def papers_without_details(self) -> list[str]:
        """arXiv ids of stored summaries whose paper details were never fetched (arXiv failed or was off)."""
        query = (
            sa.select(t.summaries.c.arxiv_id)
            .distinct()
            .outerjoin(t.papers, t.papers.c.arxiv_id == t.summaries.c.arxiv_id)
            .where(t.summaries.c.arxiv_id.is_not(None), t.papers.c.arxiv_id.is_(None))
            .order_by(t.summaries.c.arxiv_id)
        )
        with self.tx() as conn:
            return [r[0] for r in conn.execute(query)]

    def put_papers(self, found: Mapping[str, PaperDetails], missing: Sequence[str], *, now: datetime) -> None:
        keys = list(found) + [m for m in missing if m not in found]
        if not keys:
            return
        with self.tx() as conn:
            rows = [
                {
                    "arxiv_id": k,
                    "title": d.title,
                    "authors": list(d.authors),
                    "published": d.published,
                    "categories": list(d.categories),
                    "found": True,
                    "fetched_at": now,
                }
                for k, d in found.items()
            ] + [
                {
                    "arxiv_id": k,
                    "title": None,
                    "authors": [],
                    "published": None,
                    "categories": [],
                    "found": False,
                    "fetched_at": now,
                }
                for k in missing
                if k not in found
            ]
            _upsert(conn, t.papers, ["arxiv_id"], rows)
