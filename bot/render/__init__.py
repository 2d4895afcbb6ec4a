"""Rendering: a summary's Markdown + LaTeX into sanitised HTML, plain text, channel posts and feed entries.

Renderers never do I/O (no store, no network); the one ``Renderer`` built from
the settings holds the parsers, the sanitiser and the Jinja environment.

Post warnings ("teaser shortened", "hashtags dropped: #AI") come from
``Renderer.render_post()`` with the post; ``post_warnings(post)`` looks up
those of the posts this process rendered most recently.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.errors import RenderError
from bot.records import PaperDetails, Post, Summary
from bot.render.html import HtmlRenderer, tex_to_mathml
from bot.render.markdown import absolute_url
from bot.render.posts import (
    FACEBOOK_MAX,
    NAME_MAX,
    TITLE_MAX,
    TweetFields,
    cut_sentences,
    cut_words,
    finish,
    first_image,
    fit_tweet,
    hashtags_for,
    no_mentions,
    one_line,
    paper_credit,
    paper_url,
    thread_replies,
    tweet_valid,
    tweet_weight,
)
from bot.render.templates import Templates
from bot.render.text import TextRenderer, teaser_source
from bot.settings import Settings

__all__ = [
    "RenderedPost",
    "Renderer",
    "authors_line",
    "hashtags_for",
    "paper_credit",
    "post_warnings",
    "tex_to_mathml",
    "tweet_valid",
    "tweet_weight",
]

CHANNEL_TEMPLATES = {"twitter": "tweet.txt.j2", "facebook": "facebook.txt.j2"}
FEED_ENTRY_TEMPLATE = "feed_entry.html.j2"

# Bounded, so a long-running scheduler does not grow it; `preview` reads it right after rendering.
_WARNINGS: OrderedDict[Post, tuple[str, ...]] = OrderedDict()
_WARNINGS_MAX = 512


@dataclass(frozen=True, slots=True)
class RenderedPost:
    """A post and what had to give for it to fit."""

    post: Post
    #: human-readable, e.g. "teaser shortened to fit 280 weighted characters"
    warnings: tuple[str, ...] = ()


def post_warnings(post: Post) -> list[str]:
    """Warnings of a post this process rendered (see Renderer.render_post), plus checks of the post itself."""
    found = list(_WARNINGS.get(post, ()))
    if post.channel == "twitter":
        for text in (post.text, *post.replies):
            if not tweet_valid(text):
                found.append(f"post is not a valid X post (weight {tweet_weight(text)}/280)")
    return found


def _remember(post: Post, warnings: Sequence[str]) -> None:
    _WARNINGS[post] = tuple(warnings)
    _WARNINGS.move_to_end(post)
    while len(_WARNINGS) > _WARNINGS_MAX:
        _WARNINGS.popitem(last=False)


def authors_line(details: PaperDetails | None, *, most: int = 4) -> str:
    """The paper's authors in full: 'A, B and C'; beyond `most`, the first three and 'et al.'."""
    if details is None:
        return ""
    names = [cut_words(one_line(a), NAME_MAX) for a in details.authors]
    names = [n for n in names if n]
    if len(names) > most:
        return ", ".join(names[:3]) + " et al."
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


class Renderer:
    """Summary → HTML, text, posts and feed entries; built once, cheap per call."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._html = HtmlRenderer(settings.render.site_base_url, settings.render.image_hosts)
        self._text = TextRenderer()
        self.templates = Templates(settings.render.templates_dir)

    # -------------------------------------------------------------- summary text

    def html(self, summary: Summary) -> str:
        """The sanitised HTML fragment of the summary's text."""
        return self._html.render(summary.text)

    def text(self, summary: Summary) -> str:
        """The plain text of the summary's text."""
        return self._text.render(summary.text)

    # -------------------------------------------------------------------- posts

    def post(self, channel: str, summary: Summary, details: PaperDetails | None = None, *, text: str | None = None) -> Post:
        """The post `channel` sends for `summary`; `text` is self.text(summary) when the caller has it cached."""
        return self.render_post(channel, summary, details, text=text).post

    def render_post(
        self, channel: str, summary: Summary, details: PaperDetails | None = None, *, text: str | None = None
    ) -> RenderedPost:
        """Like post(), with the warnings of what was shortened or dropped to fit."""
        if channel not in CHANNEL_TEMPLATES:
            raise RenderError(f"no post template for channel {channel!r}; expected one of {', '.join(CHANNEL_TEMPLATES)}")
        plain = self.text(summary) if text is None else text
        if channel == "twitter":
            rendered = self._tweet(summary, details, plain)
        else:
            rendered = self._facebook(summary, details, plain)
        _remember(rendered.post, rendered.warnings)
        return rendered

    def _context(self, summary: Summary, details: PaperDetails | None) -> dict[str, Any]:
        link = one_line(summary.link)

        def field(value: str, limit: int) -> str:
            # The summary's link only ever appears where the template puts it.
            return no_mentions(cut_words(one_line(value.replace(link, "") if link else value), limit))

        categories = [*(details.categories if details else ()), *summary.categories]
        return {
            "title": field(summary.title, TITLE_MAX),
            "author": field(summary.author, NAME_MAX) or "Anonymous",
            "credit": field(paper_credit(details), NAME_MAX),
            "authors": field(authors_line(details), TITLE_MAX),
            "link": link,
            "hashtags": hashtags_for(categories, self.settings),
            "summary": summary,
            "details": details,
            "paper_url": paper_url(details, summary.arxiv_id),
        }

    def _image(self, channel: str, summary: Summary) -> str | None:
        if not self.settings.channel(channel).images:
            return None
        return first_image(summary.text, self.settings.render.image_hosts)

    def _tweet(self, summary: Summary, details: PaperDetails | None, plain: str) -> RenderedPost:
        ctx = self._context(summary, details)
        if not ctx["link"]:
            raise RenderError(f"summary {summary.guid!r} has no link to post")
        prose = no_mentions(one_line(teaser_source(plain).replace(ctx["link"], "")))
        teaser = cut_words(prose, self.settings.render.tweet_teaser_chars)
        fields = TweetFields(
            title=ctx["title"],
            credit=ctx["credit"],
            teaser=teaser,
            author=ctx["author"],
            link=ctx["link"],
            hashtags=tuple(ctx["hashtags"]),
        )

        def render(f: TweetFields) -> str:
            return self.templates.render(CHANNEL_TEMPLATES["twitter"], {**ctx, **f.context()})

        text, used, warnings = fit_tweet(render, fields)
        replies: tuple[str, ...] = ()
        tw = self.settings.twitter
        if tw.thread:
            # The first post's teaser may come out whole or cut; the replies carry on from there.
            first = used.teaser[:-1] if used.teaser.endswith("…") and used.teaser != prose else used.teaser
            rest = prose[len(first) :] if prose.startswith(first) else ""
            replies, more = thread_replies(rest, tw.thread_max_replies)
            warnings.extend(more)
        post = Post(
            channel="twitter",
            summary_guid=summary.guid,
            text=text,
            link=ctx["link"],
            replies=replies,
            image_url=self._image("twitter", summary),
        )
        return RenderedPost(post, tuple(warnings))

    def _facebook(self, summary: Summary, details: PaperDetails | None, plain: str) -> RenderedPost:
        ctx = self._context(summary, details)
        prose = no_mentions(one_line(teaser_source(plain)))
        teaser = cut_sentences(prose, self.settings.facebook.teaser_chars)
        warnings: list[str] = []
        text = finish(self.templates.render(CHANNEL_TEMPLATES["facebook"], {**ctx, "teaser": teaser}))
        if len(text) > FACEBOOK_MAX:
            text = cut_words(text, FACEBOOK_MAX)
            warnings.append(f"post cut to Facebook's {FACEBOOK_MAX} characters")
        post = Post(
            channel="facebook",
            summary_guid=summary.guid,
            text=text,
            link=ctx["link"],
            image_url=self._image("facebook", summary),
        )
        return RenderedPost(post, tuple(warnings))

    # -------------------------------------------------------------- feed entries

    def feed_entry_html(self, summary: Summary, details: PaperDetails | None = None, *, html: str | None = None) -> str:
        """The full HTML content of a feed entry: the summary, the paper credit, links to paper and summary."""
        body = self.html(summary) if html is None else html
        ctx = self._context(summary, details)
        # The link lands in an href unsanitised: only an http(s) URL may.
        ctx["link"] = absolute_url(ctx["link"], self.settings.render.site_base_url) or self.settings.render.site_base_url
        return self.templates.render(FEED_ENTRY_TEMPLATE, {**ctx, "html": body}).strip()
