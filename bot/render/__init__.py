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
from functools import cached_property
from typing import TYPE_CHECKING, Any

from bot.errors import RenderError
from bot.records import PaperDetails, Post, Summary
from bot.render.posts import (
    NAME_MAX,
    TITLE_MAX,
    cut_words,
    first_image,
    hashtags_for,
    no_mentions,
    one_line,
    paper_credit,
    paper_url,
)
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.channels.spec import RenderedPost
    from bot.render.html import HtmlRenderer, tex_to_mathml

__all__ = [
    "RenderedPost",
    "Renderer",
    "authors_line",
    "hashtags_for",
    "paper_credit",
    "post_warnings",
    "tex_to_mathml",
]

FEED_ENTRY_TEMPLATE = "feed_entry.html.j2"


def __getattr__(name: str) -> Any:
    # The parsers (markdown-it, latex2mathml, nh3, Jinja) load on first use, not with this
    # package: the channel registry, read whenever settings load, imports bot.render.posts.
    if name == "tex_to_mathml":
        from bot.render.html import tex_to_mathml

        return tex_to_mathml
    # The channels too (every network's package, ~50 ms): the digest uses helpers of this package, never a post.
    if name == "RenderedPost":
        from bot.channels.spec import RenderedPost

        return RenderedPost
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Bounded, so a long-running scheduler does not grow it; `preview` reads it right after rendering.
_WARNINGS: OrderedDict[Post, tuple[str, ...]] = OrderedDict()
_WARNINGS_MAX = 512


def post_warnings(post: Post) -> list[str]:
    """Warnings of a post this process rendered (see Renderer.render_post), plus checks of the post itself."""
    from bot.channels import REGISTRY

    found = list(_WARNINGS.get(post, ()))
    spec = REGISTRY.get(post.channel)
    if spec is not None:
        found.extend(spec.check_post(post))
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
        from bot.render.templates import Templates
        from bot.render.text import TextRenderer

        self.settings = settings
        self._text = TextRenderer()
        self.templates = Templates(settings.render.templates_dir)

    # -------------------------------------------------------------- summary text

    @cached_property
    def _html(self) -> HtmlRenderer:
        # Built on first use: the digest and posts need only text, and MathML costs imports.
        from bot.render.html import HtmlRenderer

        return HtmlRenderer(self.settings.render.site_base_url, self.settings.render.image_hosts)

    def html(self, summary: Summary) -> str:
        """The sanitised HTML fragment of the summary's text."""
        return self._html.render(summary.text)

    def text(self, summary: Summary) -> str:
        """The plain text of the summary's text."""
        return self._text.render(summary.text)

    def html_and_text(self, summary: Summary) -> tuple[str, str]:
        """html() and text() from one parse of the Markdown (what the render cache keeps)."""
        from bot.render.markdown import math_within_bounds

        # Both parsers are the same Markdown (bot.render.markdown.make_markdown); only rendering differs.
        tokens = self._text.parse(summary.text)
        convert_math = math_within_bounds(tokens)
        text = self._text.render_tokens(tokens, convert_math=convert_math)  # reads the tokens: first
        return self._html.render_tokens(tokens, convert_math=convert_math), text

    # -------------------------------------------------------------------- posts

    def post(
        self,
        channel: str,
        summary: Summary,
        details: PaperDetails | None = None,
        *,
        text: str | None = None,
        limit: int | None = None,
    ) -> Post:
        """The post `channel` sends for `summary`; `text` is self.text(summary) when the caller has it cached.

        `limit`: the network's own length limit when a live publisher read it (PostContext.limit)."""
        return self.render_post(channel, summary, details, text=text, limit=limit).post

    def render_post(
        self,
        channel: str,
        summary: Summary,
        details: PaperDetails | None = None,
        *,
        text: str | None = None,
        limit: int | None = None,
    ) -> RenderedPost:
        """Like post(), with the warnings of what was shortened or dropped to fit."""
        from bot.channels import REGISTRY
        from bot.channels.spec import PostContext

        spec = REGISTRY.get(channel)
        if spec is None:
            raise RenderError(f"no post template for channel {channel!r}; expected one of {', '.join(REGISTRY)}")
        plain = self.text(summary) if text is None else text
        ctx = PostContext(
            summary=summary,
            details=details,
            plain=plain,
            variables=self._context(summary, details),
            settings=self.settings,
            templates=self.templates,
            image_url=self._image(channel, summary),
            limit=limit,
        )
        rendered = spec.render(ctx)
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

    # -------------------------------------------------------------- feed entries

    def feed_entry_html(self, summary: Summary, details: PaperDetails | None = None, *, html: str | None = None) -> str:
        """The full HTML content of a feed entry: the summary, the paper credit, links to paper and summary."""
        from bot.render.markdown import absolute_url

        body = self.html(summary) if html is None else html
        ctx = self._context(summary, details)
        # The link lands in an href unsanitised: only an http(s) URL may.
        ctx["link"] = (
            absolute_url(ctx["link"], self.settings.render.site_base_url) or self.settings.render.site_base_url
        )
        return self.templates.render(FEED_ENTRY_TEMPLATE, {**ctx, "html": body}).strip()
