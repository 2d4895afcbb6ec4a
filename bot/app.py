"""The one factory that wires the bot: settings in, store, source, publishers, renderer out.

Nothing else constructs these; tests build the same App with fakes passed in.
Parts are built lazily, so a command only pays for what it touches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from bot.clock import utc_now
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.arxiv import PaperSource
    from bot.channels.base import Publisher
    from bot.channels.spec import SessionStore
    from bot.feeds import FragmentCache
    from bot.mail import DigestComposer, Mailer
    from bot.render import Renderer
    from bot.sources.fetch import Source
    from bot.store import Store


class App:
    """Everything a command needs, built once from the settings."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        source: Source | None = None,
        publishers: Mapping[str, Publisher] | None = None,
        arxiv: PaperSource | bool | None = True,
        mailer: Mailer | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._publishers: dict[str, Publisher] = dict(publishers or {})
        self._overrides: dict[str, Any] = {"store": store, "source": source, "mailer": mailer}
        # arxiv: True = build from settings, False/None = no enrichment, or a client (PaperSource).
        self._arxiv = arxiv
        #: set after an arXiv failure: enrichment is skipped until then (bot.content)
        self.arxiv_down_until: datetime | None = None

    @cached_property
    def store(self) -> Store:
        from bot.store import Store

        return self._overrides["store"] or Store.open(
            self.settings.database_url, pool_size=self.settings.database.pool_size
        )

    @cached_property
    def source(self) -> Source:
        from bot.sources.fetch import make_source

        if self._overrides["source"] is not None:
            return self._overrides["source"]  # type: ignore[no-any-return,unused-ignore]
        s = self.settings.source
        return make_source(
            self.settings.feed_url,
            timeout=s.timeout_seconds,
            max_bytes=s.max_bytes,
            user_agent=s.user_agent,
            deadline=s.download_deadline_seconds,
        )

    def publisher(self, channel: str) -> Publisher:
        if channel not in self._publishers:
            from bot.channels import build_publisher

            self._publishers[channel] = build_publisher(
                self.settings, channel, now=self.clock, sessions=self.sessions(channel)
            )
        return self._publishers[channel]

    def sessions(self, channel: str) -> SessionStore:
        """Where `channel`'s publisher keeps its login session: the database, encrypted under SECRET_KEY (made on first
        use)."""
        from bot.store.sessions import LazySessionVault, StoreSessionVault

        return LazySessionVault(
            lambda: StoreSessionVault(self.store.engine, channel, self.settings.env.secret_key, now=self.clock)
        )

    def post_limit(self, channel: str) -> int | None:
        """The network's own length limit when the channel's live publisher reads one (a Mastodon instance's), else
        None."""
        publisher = self.publisher(channel)
        read = getattr(publisher, "post_limit", None)
        return read() if publisher.live and callable(read) else None

    @cached_property
    def renderer(self) -> Renderer:
        from bot.render import Renderer

        return Renderer(self.settings)

    @cached_property
    def arxiv(self) -> PaperSource | None:
        """Where paper details come from: arXiv, or for the bundled sample feed its bundled details (no network)."""
        if self._arxiv is True:
            if not self.settings.arxiv.enabled:
                return None
            from bot.arxiv import ArxivClient, BundledPapers

            if self.settings.polls_bundled_sample:
                return BundledPapers()
            return ArxivClient(self.settings)
        return self._arxiv or None

    @cached_property
    def feed_cache(self) -> FragmentCache:
        """Serialised feed entries kept across rebuilds of a long-lived process."""
        from bot.feeds import FragmentCache

        return FragmentCache()

    @cached_property
    def composer(self) -> DigestComposer:
        """Renders digests and confirmation e-mails (its Jinja environment, CSS inliner and cache are reused)."""
        from bot.mail import DigestComposer

        return DigestComposer(self.settings)

    @cached_property
    def mailer(self) -> Mailer:
        if self._overrides["mailer"] is not None:
            return self._overrides["mailer"]  # type: ignore[no-any-return,unused-ignore]
        from bot.mail import make_mailer

        return make_mailer(self.settings)

    def close(self) -> None:
        for name in ("store", "source", "arxiv", "mailer"):
            part = self.__dict__.get(name)
            close = getattr(part, "close", None)
            if callable(close):
                close()


def build_app(settings: Settings, **overrides: Any) -> App:
    """The factory every command and test goes through."""
    return App(settings, **overrides)
