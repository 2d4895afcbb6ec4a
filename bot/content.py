"""Stored summaries to renderings: the render cache, paper details from arXiv, posts.

Rendering is done once per summary version and kept in the store; arXiv
details are fetched once per paper and cached. Enrichment failing or slow
never blocks a post: it goes out without the details.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from bot.errors import SourceError
from bot.records import PaperDetails, Post, StoredSummary

if TYPE_CHECKING:
    from bot.app import App
    from bot.render_pool import RenderPool

log = logging.getLogger(__name__)

#: after an arXiv failure, how long this process publishes without trying arXiv again
ARXIV_PAUSE = timedelta(minutes=15)
#: the name arXiv fetches are recorded under in the store's jobs table (shown by `status`)
ARXIV_JOB = "arxiv"


def paper_details(
    app: App,
    summaries: Sequence[StoredSummary],
    *,
    fetch: bool = True,
    cached: Mapping[str, PaperDetails | None] | None = None,
) -> dict[str, PaperDetails]:
    """arXiv id → details for the summaries' papers: the store's cache (or `cached`, read from it already), then
    arXiv."""
    ids = sorted({s.summary.arxiv_id for s in summaries if s.summary.arxiv_id})
    if not ids:
        return {}
    if cached is None:
        cached = app.store.papers(ids)
    found = {k: v for k, v in cached.items() if v is not None}
    missing = [i for i in ids if i not in cached]
    client = app.arxiv if fetch else None
    now = app.clock()
    if missing and client is not None and not (app.arxiv_down_until and now < app.arxiv_down_until):
        try:
            fetched = client.fetch(missing)
        except SourceError as exc:
            # Posts go out without details; arXiv is left alone for a while instead of
            # costing every post of this pass the full wait.
            app.arxiv_down_until = now + ARXIV_PAUSE
            log.warning(
                "paper details unavailable, publishing without them (arXiv skipped for %s): %s", ARXIV_PAUSE, exc
            )
            # Kept for `status` (another process): the error, until a later fetch works.
            app.store.record_job(ARXIV_JOB, now=now, ok=False, error=str(exc))
            fetched = dict(getattr(exc, "found", {}) or {})
            if fetched:
                app.store.put_papers(fetched, [], now=now)
                found.update(fetched)
        else:
            app.store.put_papers(fetched, [m for m in missing if m not in fetched], now=app.clock())
            app.store.record_job(
                ARXIV_JOB, now=app.clock(), ok=True, info={"fetched": len(fetched), "asked": len(missing)}
            )
            found.update(fetched)
    return found


def categories(stored: StoredSummary, details: PaperDetails | None) -> tuple[str, ...]:
    """The summary's categories as feeds and digests show them: arXiv's (primary first), then the source's, each
    once."""
    return tuple(dict.fromkeys((*(details.categories if details else ()), *stored.summary.categories)))


def renders(
    app: App, summaries: Sequence[StoredSummary], *, pool: RenderPool | None = None, lookup: bool = True
) -> dict[int, tuple[str, str]]:
    """summary id → (html, text), rendered only for versions not in the cache (by `pool`'s workers when it takes
    them: many to render); `lookup` False: the caller read the cache already and found none of them."""
    cached = app.store.cached_renders({s.id: s.summary.content_hash for s in summaries}) if lookup else {}
    todo = [s for s in summaries if s.id not in cached]
    if todo:
        made = pool.render([s.summary for s in todo]) if pool is not None else None
        if made is None:
            made = [app.renderer.html_and_text(s.summary) for s in todo]
        fresh = []
        for s, (html, text) in zip(todo, made, strict=True):
            cached[s.id] = (html, text)
            fresh.append((s.id, s.summary.content_hash, html, text))
        app.store.put_renders(fresh, now=app.clock())
    return cached


def texts(app: App, summaries: Sequence[StoredSummary]) -> dict[int, str]:
    """summary id → plain text, from the render cache, else rendered as text only (not cached: the cache keeps
    HTML and text together, and a reader of text alone, the digest, should not pay for the MathML)."""
    cached = app.store.cached_renders({s.id: s.summary.content_hash for s in summaries})
    return {s.id: cached[s.id][1] if s.id in cached else app.renderer.text(s.summary) for s in summaries}


def post_for(
    app: App,
    channel: str,
    stored: StoredSummary,
    *,
    text: str | None = None,
    papers: Mapping[str, PaperDetails | None] | None = None,
    text_cached: bool | None = None,
) -> Post:
    """The post one channel will send for one summary (`text` and `papers`: what the caller read from the caches;
    `text_cached` False: the render cache holds no text for this version, read with them)."""
    details = paper_details(app, [stored], cached=papers).get(stored.summary.arxiv_id or "")
    if text is None:
        _, text = renders(app, [stored], lookup=text_cached is not False)[stored.id]
    return app.renderer.post(channel, stored.summary, details, text=text, limit=app.post_limit(channel))
