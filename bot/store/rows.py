"""Rows to records and back: the store's one mapping of each table's columns to a typed record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from bot.records import Attempt, Delivery, DeliveryState, PaperDetails, Post, StoredSummary, Summary
from bot.store import schema as t


def _summary_from_row(row: Row[Any]) -> Summary:
    m = row._mapping
    return Summary(
        guid=m["guid"],
        title=m["title"],
        author=m["author"],
        text=m["text"],
        link=m["link"],
        edited_at=m["edited_at"],
        votes=m["votes"],
        arxiv_id=m["arxiv_id"],
        bibtex_key=m["bibtex_key"],
        categories=tuple(m["categories"] or ()),
        content_hash=m["content_hash"],
    )


def _stored_from_row(row: Row[Any]) -> StoredSummary:
    m = row._mapping
    return StoredSummary(
        id=m["id"],
        summary=_summary_from_row(row),
        first_seen_at=m["first_seen_at"],
        version=m["version"],
        changed_at=m["changed_at"],
        backfilled=m["backfilled"],
        published_at=m.get("published_at"),
    )


#: a paper's cached columns, named apart from the summaries' (reserve reads both at once)
_PAPER_COLUMNS = (
    t.papers.c.arxiv_id.label("paper_arxiv_id"),
    t.papers.c.title.label("paper_title"),
    t.papers.c.authors.label("paper_authors"),
    t.papers.c.published.label("paper_published"),
    t.papers.c.categories.label("paper_categories"),
    t.papers.c.found.label("paper_found"),
)


_SELECT_PAPERS: sa.Select[Any] = sa.select(*_PAPER_COLUMNS)


def _paper_from_row(row: Row[Any]) -> tuple[str, PaperDetails | None]:
    m = row._mapping
    details = PaperDetails(
        arxiv_id=m["paper_arxiv_id"],
        title=m["paper_title"] or "",
        authors=tuple(m["paper_authors"] or ()),
        published=m["paper_published"],
        categories=tuple(m["paper_categories"] or ()),
    )
    return m["paper_arxiv_id"], details if m["paper_found"] else None


def _attempt_row(attempt: Attempt) -> dict[str, Any]:
    return {
        "delivery_id": attempt.delivery_id,
        "at": attempt.at,
        "outcome": attempt.outcome,
        "http_status": attempt.http_status,
        "code": attempt.code,
        "message": attempt.message[:1000],
    }


def _delivery_from_row(row: Row[Any]) -> Delivery:
    m = row._mapping
    post = m["post"]
    return Delivery(
        id=m["id"],
        summary_id=m["summary_id"],
        guid=m["guid"],
        channel=m["channel"],
        state=DeliveryState(m["state"]),
        attempts=m["attempts"],
        due_at=m["due_at"],
        post_id=m["post_id"],
        last_error=m["last_error"],
        text=post.get("text") if isinstance(post, dict) else None,
        created_at=m["created_at"],
    )


def post_to_json(post: Post) -> dict[str, Any]:
    data = asdict(post)
    data["replies"] = list(post.replies)
    return data


def post_from_json(data: Mapping[str, Any]) -> Post:
    return Post(
        channel=data["channel"],
        summary_guid=data["summary_guid"],
        text=data["text"],
        link=data["link"],
        replies=tuple(data.get("replies") or ()),
        image_url=data.get("image_url"),
    )


_DELIVERY_COLUMNS = (
    t.deliveries.c.id,
    t.deliveries.c.summary_id,
    t.summaries.c.guid,
    t.deliveries.c.channel,
    t.deliveries.c.state,
    t.deliveries.c.attempts,
    t.deliveries.c.due_at,
    t.deliveries.c.post_id,
    t.deliveries.c.last_error,
    t.deliveries.c.post,
    t.deliveries.c.created_at,
)
