"""Jobs that join the store to the feeds builder and the web app.

The feeds builder and the web app take plain data; this module reads the
store and the render cache and hands them over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from bot import content
from bot.errors import BotError
from bot.wording import plural

if TYPE_CHECKING:
    from bot.app import App
    from bot.feeds import FeedEntry
    from bot.records import StoredSummary
    from bot.render_pool import RenderPool
    from bot.web import HealthInfo

log = logging.getLogger(__name__)


# long: the text-free listing and the closure that fills it share the store's rows
def feed_entries(
    app: App, *, fetch: bool = True, pool: RenderPool | None = None
) -> tuple[list[FeedEntry], Callable[[Sequence[FeedEntry]], list[FeedEntry]], Callable[[Sequence[FeedEntry]], None]]:
    """Every stored summary as a feed entry without content, the function that fills in the content of some, and
    the one told which entries will be filled next.

    Fingerprints ignore content, so which files must be written is known from
    a text-free listing; the builder then fills in one file's entries at a
    time (loaded, rendered through the render cache, dropped after the file):
    a rebuild after one new summary renders a few dozen entries, and a first
    build of 10,000 holds one archive page in memory, not the whole store.
    `pool`: renders a file's missing renderings on every core when there are many, the next file's while
    this one is written.
    """
    import dataclasses

    from bot.decide import entry_dates
    from bot.feeds import FeedEntry
    from bot.render.posts import paper_url

    listing = app.store.latest_summaries(with_text=False)
    newest = listing[: app.settings.feeds.size]
    # Fetch missing paper details only for the main feed's entries; older ones use the cache.
    details = content.paper_details(app, newest, fetch=fetch)
    details.update(content.paper_details(app, listing[len(newest) :], fetch=False))
    ids: dict[str, int] = {}
    light: list[FeedEntry] = []
    for s in listing:
        d = details.get(s.summary.arxiv_id or "")
        published, updated = entry_dates(s.published_at, s.first_seen_at, s.summary.edited_at)
        ids[s.summary.guid] = s.id
        light.append(
            FeedEntry(
                guid=s.summary.guid,
                title=s.summary.title,
                author=s.summary.author,
                link=s.summary.link,
                content_html="",
                summary_text="",
                published=published,
                updated=updated,
                categories=content.categories(s, d),
                paper_url=paper_url(d, s.summary.arxiv_id),
                first_seen=s.first_seen_at,
            )
        )
    del listing, newest
    # The rows `ahead` read for the next file, which `fill` then takes instead of reading them again.
    read_ahead: dict[tuple[int, ...], list[StoredSummary]] = {}

    def rows(entries: Sequence[FeedEntry]) -> list[StoredSummary]:
        wanted = tuple(ids[e.guid] for e in entries)
        found = read_ahead.pop(wanted, None)
        return found if found is not None else app.store.summaries_by_ids(list(wanted))

    def fill(entries: Sequence[FeedEntry]) -> list[FeedEntry]:
        full = {s.id: s for s in rows(entries)}
        renders = content.renders(app, list(full.values()), pool=pool)
        out = []
        for e in entries:
            s = full[ids[e.guid]]
            html, text = renders[s.id]
            d = details.get(s.summary.arxiv_id or "")
            out.append(
                dataclasses.replace(
                    e, content_html=app.renderer.feed_entry_html(s.summary, d, html=html), summary_text=text
                )
            )
        return out

    def ahead(entries: Sequence[FeedEntry]) -> None:
        # The next file's missing renderings start on the pool's workers while this file is written.
        if pool is not None and pool.takes(len(entries)):
            read_ahead.clear()  # at most one file's rows wait: memory stays flat
            full = read_ahead[tuple(ids[e.guid] for e in entries)] = rows(entries)
            cached = app.store.cached_renders({s.id: s.summary.content_hash for s in full})
            pool.prefetch([s.summary for s in full if s.id not in cached])

    return light, fill, ahead


def build_feeds(app: App, *, force: bool = False, mirror: bool = False, pool: RenderPool | None = None) -> str:
    """`feeds build`: write every feed; ping the WebSub hub for the ones that changed.

    `mirror`: only reflect the database (the web process's copy): no arXiv request, no WebSub ping.
    `pool`: where many missing renderings are made (default: one for this build, per render.workers); closed at
    the end of the build.
    """
    from filelock import FileLock

    from bot.feeds import build_feeds as write_feeds
    from bot.feeds import ping_websub
    from bot.render_pool import RenderPool

    out = app.settings.public_dir
    out.mkdir(parents=True, exist_ok=True)
    # One build at a time per folder: the worker and a web process on one machine may share it,
    # and two builds from different database snapshots could leave a file older than the
    # manifest says it is. (A dotfile: the web process never serves it.)
    with FileLock(str(out / ".feeds-build.lock")), pool or RenderPool(app.settings) as renderers:
        entries, fill, ahead = feed_entries(app, fetch=not mirror, pool=renderers)
        report = write_feeds(entries, app.settings, cache=app.feed_cache, force=force, fill=fill, ahead=ahead)
    hub = "" if mirror else app.settings.feeds.websub_hub
    if hub and report.hub_topics:
        import httpx

        with httpx.Client(timeout=10) as client:
            for problem in ping_websub(hub, report.hub_topics, client):
                log.warning("websub: %s", problem)
    parts = [f"{plural(len(report.changed), 'file')} written", f"{report.unchanged} unchanged"]
    if report.removed:
        parts.append(f"{len(report.removed)} removed")
    if hub and report.hub_topics:
        parts.append(f"{len(report.hub_topics)} pinged at {hub}")
    return f"{', '.join(parts)} in {out}"


class FeedMirror:
    """Keeps the web process's feed files in step with the database.

    Where web and worker run on separate machines (Heroku-style dynos, each
    with its own disk), the files the worker writes never reach the web
    process: it builds its own copy from the shared database. Builds are
    deterministic and incremental, so the copies are byte-identical and a
    check with nothing new costs one listing query. Only the worker asks
    arXiv and pings WebSub; the mirror uses what the database holds.
    """

    def __init__(self, app: App, stop: threading.Event) -> None:
        self.app = app
        self.stop = stop

    def refresh(self) -> str | None:
        """One build; None when it failed (logged; the files already there keep being served)."""
        try:
            result = build_feeds(self.app, mirror=True)
        except (BotError, OSError) as exc:  # OSError: the folder itself (its lock) cannot be made
            log.warning("feeds mirror: %s; serving the files already there", exc)
            return None
        log.debug("feeds mirror: %s", result)
        return result

    def run(self) -> None:
        while not self.stop.is_set():
            self.refresh()
            self.stop.wait(self.app.settings.web.feeds_refresh_seconds)


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
    """`web`: the feeds, the subscription pages and /healthz, with uvicorn on $HOST:$PORT.

    Refuses to start (ConfigError, exit 2) when subscription links cannot be signed.
    SIGTERM and SIGINT stop it cleanly with exit 0, as they stop `run`.
    """
    import signal

    import uvicorn

    from bot.admin import routes as console_routes
    from bot.mail.tokens import require_signing_key
    from bot.subscribe import routes
    from bot.web import create_app
    from bot.webguard import TokenRedactingFilter

    require_signing_key(app.settings)
    web_app = create_app(app.settings, health=lambda: health(app), extra_routes=[*routes(app), *console_routes(app)])
    # Client addresses come from bot.webguard.ProxyHeaders (FORWARDED_ALLOW_IPS), not uvicorn's own.
    config = uvicorn.Config(
        web_app, host=app.settings.env.host, port=app.settings.env.port, log_level="info", proxy_headers=False
    )
    logging.getLogger("uvicorn.access").addFilter(TokenRedactingFilter())  # after Config set logging up
    server = uvicorn.Server(config)
    # uvicorn re-raises the stop signal once it has shut down; with the default handler
    # that kills the process (exit 143). These handlers make that re-raise a no-op.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    stop = threading.Event()
    if app.settings.web.feeds_refresh_seconds:
        threading.Thread(target=FeedMirror(app, stop).run, name="feeds-mirror", daemon=True).start()
    try:
        server.run()
    finally:
        stop.set()
