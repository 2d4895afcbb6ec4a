"""What a channel is: the typed spec each package under bot/channels/ hands the registry.

Everything outside a channel's package learns about it from its ``Channel``
(settings section, environment variables, rendering, publisher, length
measure, outbox); nothing else names a channel. Imports here stay light
(records and settings only) because the registry is read while settings load.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bot.records import PaperDetails, Post, Summary
from bot.settings import ChannelSettings, Env, Settings

if TYPE_CHECKING:
    from bot.channels.base import Publisher
    from bot.render.templates import Templates


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One environment variable a channel reads (credentials, hosts)."""

    #: the variable's name, upper case, e.g. "TWITTER_API_KEY"
    name: str
    #: one line of help (docs/settings.md)
    help: str
    #: value when unset
    default: str = ""
    #: never shown: redacted from logs, `status` and error messages
    secret: bool = False
    #: must be an absolute http(s) URL (checked when settings load)
    url: bool = False

    @property
    def field(self) -> str:
        """The attribute of ``settings.env`` holding the value (the name lower-cased)."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class RenderedPost:
    """A post and what had to give for it to fit."""

    post: Post
    #: human-readable, e.g. "teaser shortened to fit 280 weighted characters"
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PostContext:
    """What a channel's render() gets: the summary, its cleaned fields and the means to render a template."""

    summary: Summary
    details: PaperDetails | None
    #: the summary's plain text (the teaser's source: see teaser)
    plain: str
    #: the cleaned template variables every post template gets: title, author, credit, authors,
    #: link, hashtags (list), summary, details, paper_url
    variables: Mapping[str, Any]
    settings: Settings
    templates: Templates
    #: the first allowed image of the summary when the channel's `images` setting is on
    image_url: str | None
    #: the network's own length limit when a live publisher read it (a Mastodon instance's); None: the
    #: channel's default (dry-run, preview). Passed in, so rendering stays pure.
    limit: int | None = None

    @property
    def title(self) -> str:
        return str(self.variables["title"])

    @property
    def author(self) -> str:
        return str(self.variables["author"])

    @property
    def credit(self) -> str:
        """'Wu & He' or 'Zhang et al.'; '' without paper details."""
        return str(self.variables["credit"])

    @property
    def authors(self) -> str:
        """The paper's authors in full ('A, B and C'); '' without paper details."""
        return str(self.variables["authors"])

    @property
    def link(self) -> str:
        return str(self.variables["link"])

    @property
    def hashtags(self) -> tuple[str, ...]:
        return tuple(self.variables["hashtags"])

    @property
    def teaser_source(self) -> str:
        """The prose a teaser is cut from: the plain text as one line, code blocks left out (not yet cleaned)."""
        from bot.render.text import teaser_source

        return teaser_source(self.plain)

    def render(self, template: str, **values: Any) -> str:
        """Render one of the channel's templates with the common variables plus `values`."""
        return self.templates.render(template, {**self.variables, **values})


@dataclass(frozen=True, slots=True)
class Measure:
    """A post's length as its network counts it, for `preview` (and the post's own warnings)."""

    #: the length of one post's text, e.g. X's weighted length
    count: Callable[[str], int]
    #: the most the network accepts
    limit: int
    #: what is counted: "weighted", "characters", "graphemes"
    unit: str
    #: show "n/limit" (a limit fitting works to) rather than "n" (one far beyond any post)
    show_limit: bool = True
    #: show the link field (sent beside the text, as a link card)
    show_link: bool = False
    #: more of the first post's size, e.g. "412/3000 bytes" (Bluesky's second limit)
    detail: Callable[[str], str] | None = None

    def describe(self, post: Post) -> str:
        """'250/280 weighted, thread of 3' or '612 characters; link field: https://…', as `preview` shows it."""
        sizes = [self.count(post.text), *(self.count(r) for r in post.replies)]
        out = f"{sizes[0]}/{self.limit} {self.unit}" if self.show_limit else f"{sizes[0]} {self.unit}"
        if self.detail is not None:
            out += f", {self.detail(post.text)}"
        if post.replies:
            out += f", thread of {len(sizes)}"
        if self.show_link:
            out += f"; link field: {post.link}"
        return out


@runtime_checkable
class SessionStore(Protocol):
    """Where a publisher keeps a login session between posts and processes (e.g. Bluesky's tokens).

    The session string holds live tokens: a store keeps it and gives it back,
    and nothing else ever sees it (never logged, never in a message). The app
    backs it with the database, encrypted (bot.store.sessions.StoreSessionVault,
    one row per channel); tests hand in bot.channels.bluesky.vault.MemoryVault.
    """

    def load(self) -> str | None:
        """The saved session string, or None (none saved, or unreadable: the channel logs in again)."""
        ...

    def save(self, value: str) -> None:
        """Replace the saved session (after a login or a refresh)."""
        ...


#: builds a channel's live publisher: settings, the clock, and the channel's session store
PublisherFactory = Callable[[Settings, Callable[[], datetime], SessionStore | None], "Publisher"]


def no_checks(post: Post) -> list[str]:
    return []


@dataclass(frozen=True, slots=True)
class Channel:
    """One social channel: everything the rest of the bot needs to know about it."""

    #: the name in settings (`[channels.<name>]`), deliveries, outbox and `status`, e.g. "twitter"
    name: str
    #: what operators call it, e.g. "X"
    title: str
    #: its `[channels.<name>]` section: a ChannelSettings subclass (defaults, help, limits)
    settings: type[ChannelSettings]
    #: its environment variables, in the order docs/settings.md lists them
    env: tuple[EnvVar, ...]
    #: the variables (names) that must all be set for it to go live; otherwise it is dry-run
    live_needs: tuple[str, ...]
    #: its post template(s), looked up like every template (render.templates_dir first)
    templates: tuple[str, ...]
    #: summary → post (pure: no I/O); raises RenderError when no post can be made
    render: Callable[[PostContext], RenderedPost]
    #: its live publisher (reconcile and check are the publisher's)
    publisher: PublisherFactory
    #: its length measure for `preview`
    measure: Measure
    #: warnings about a rendered post itself (e.g. not a valid X post), for `preview`
    check_post: Callable[[Post], Sequence[str]] = no_checks
    #: its publisher may make several posts at once (`dispatch.lanes`): its client is safe to share
    #: between threads and it keeps no login state that two posts could both try to renew
    parallel: bool = False

    @property
    def section(self) -> str:
        """Its section of the settings file."""
        return f"channels.{self.name}"

    @property
    def outbox(self) -> str:
        """The dry-run outbox file's name (under BOT_OUTBOX_DIR)."""
        return f"{self.name}.jsonl"

    def missing(self, env: Env) -> list[str]:
        """The variables it still needs to go live (empty when all are set)."""
        return [name for name in self.live_needs if not getattr(env, name.lower())]
