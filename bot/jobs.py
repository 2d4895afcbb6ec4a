"""Jobs that join the store to the feeds builder and the web app.

The feeds builder and the web app take plain data; this module reads the
store and the render cache and hands them over.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bot import content

if TYPE_CHECKING:
    from bot.app import App
    from bot.feeds import FeedEntry
    from bot.web import HealthInfo

log = logging.getLogger(__name__)


def feed_entries(app: App, *, force: bool = False) -> list[FeedEntry]:
    """Every stored summary as a feed entry; content only for the entries the next build serialises.

    Fingerprints ignore content, so the files that must be written are known
    from a text-free listing; only their entries are loaded and rendered (from
    the render cache). A rebuild after one new summary thus touches a few
    dozen entries, not the whole store.
    """
    import dataclasses

    from bot.arxiv import paper_url
    from bot.feeds import FeedEntry, stale_entries

    listing = app.store.latest_summaries(with_text=False)
    newest = listing[: app.settings.feeds.size]
    # Fetch missing paper details only for the main feed's entries; older ones use the cache.
    details = content.paper_details(app, newest)
    details.update(content.paper_details(app, listing[len(newest):], fetch=False))
    light: dict[int, FeedEntry] = {}
    for s in listing:
        d = details.get(s.summary.arxiv_id or "")
        light[s.id] = FeedEntry(
            guid=s.summary.guid,
            title=s.summary.title,
            author=s.summary.author,
            link=s.summary.link,
            content_html="",
            summary_text="",
            published=s.first_seen_at,
            updated=max(s.summary.edited_at, s.first_seen_at),
            categories=tuple(dict.fromkeys((*(d.categories if d else ()), *s.summary.categories))),
            paper_url=paper_url(s.summary.arxiv_id) if s.summary.arxiv_id else None,
        )
    need = stale_entries(light.values(), app.settings, force=force)
    wanted = [sid for sid, e in light.items() if e.guid in need]
    full = app.store.summaries_by_ids(wanted)
    renders = content.renders(app, full)
    for s in full:
        html, text = renders[s.id]
        d = details.get(s.summary.arxiv_id or "")
        light[s.id] = dataclasses.replace(
            light[s.id], content_html=app.renderer.feed_entry_html(s.summary, d, html=html), summary_text=text
        )
    return list(light.values())


def build_feeds(app: App, *, force: bool = False) -> str:
    """`feeds build`: write every feed; ping the WebSub hub for the ones that changed."""
    from bot.feeds import build_feeds as write_feeds
    from bot.feeds import ping_websub

    report = write_feeds(feed_entries(app, force=force), app.settings, cache=app.feed_cache, force=force)
    hub = app.settings.feeds.websub_hub
    if hub and report.hub_topics:
        import httpx

        with httpx.Client(timeout=10) as client:
            for problem in ping_websub(hub, report.hub_topics, client):
                log.warning("websub: %s", problem)
    parts = [f"{len(report.changed)} files written", f"{report.unchanged} unchanged"]
    if report.removed:
        parts.append(f"{len(report.removed)} removed")
    if hub and report.hub_topics:
        parts.append(f"{len(report.hub_topics)} pinged at {hub}")
    return f"{', '.join(parts)} in {app.settings.public_dir}"


def health(app: App) -> HealthInfo:
    from bot.web import HealthInfo

    ok = app.store.ping()
    last = None
    if ok:
        sources = app.store.all_sources()
        times = [s.last_ok_at for s in sources if s.last_ok_at]
        last = max(times) if times else None
    return HealthInfo(database_ok=ok, last_good_poll=last, now=app.clock())


def serve_web(app: App) -> None:
    """`web`: the feeds, the subscription pages and /healthz, with uvicorn on $PORT."""
    import uvicorn

    from bot.web import create_app

    web_app = create_app(app.settings, health=lambda: health(app), extra_routes=web_routes(app))
    uvicorn.run(web_app, host="0.0.0.0", port=app.settings.env.port, log_level="info", proxy_headers=True, forwarded_allow_ips="*")


def web_routes(app: App) -> list[Any]:
    """Routes other parts add to the web app (the subscription pages)."""
    try:
        from bot.subscribe import routes
    except ImportError:
        return []
    return routes(app)
