"""The feed builder's input and output records: plain, already-rendered data.

The builder never renders and never touches the store: whoever calls it turns
stored summaries into :class:`FeedEntry` values first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One summary as every feed shows it (fields are untrusted text unless said otherwise)."""

    #: the summary link: the entry's stable id across edits
    guid: str
    #: the paper's title, plain text (may carry CR/LF, controls, XML-invalid characters, bidi overrides)
    title: str
    #: the summary author's display name
    author: str
    #: the summary's URL
    link: str
    #: the full summary as HTML, already sanitised by the renderer (may contain MathML)
    content_html: str
    #: a plain-text teaser
    summary_text: str
    #: the earliest time known of the summary: its source date or when the bot first saw it (aware UTC)
    published: datetime
    #: when the summary was last edited: its source date (aware UTC), never before `published`
    updated: datetime
    #: categories of the paper, e.g. ("cs.LG", "stat.ML")
    categories: tuple[str, ...] = ()
    #: the paper's page, e.g. https://arxiv.org/abs/1803.08494
    paper_url: str | None = None
    #: when the bot first saw the summary (aware UTC): orders the feeds and the archive; None: `published`
    first_seen: datetime | None = None


@dataclass(frozen=True, slots=True)
class BuildReport:
    """What one build of the feeds did."""

    #: files written because their bytes changed, as paths relative to the output folder (posix)
    changed: tuple[str, ...]
    #: files of an earlier build that no longer belong (a category or archive page without entries), deleted
    removed: tuple[str, ...]
    #: files left as they were (unchanged entries, or identical bytes)
    unchanged: int
    #: absolute URLs of the changed feeds that advertise the WebSub hub: what to ping
    hub_topics: tuple[str, ...]

    @property
    def any_changed(self) -> bool:
        return bool(self.changed or self.removed)
