"""A Bluesky post from a summary: post.py's fitting to 300 graphemes and 3,000 bytes (facets and card come at publish).

post.py is imported on first use: it brings the text renderer (Markdown, LaTeX) and the grapheme
regex, which commands that never render a post (a no-op `run --once`, `status`) should not load
just because the registry lists this channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.channels.spec import PostContext, RenderedPost
    from bot.records import Post

__all__ = ["BYTES_MAX", "GRAPHEMES_MAX", "NAME", "TEMPLATE", "check_post", "graphemes", "render", "size_in_bytes"]

GRAPHEMES_MAX = 300
BYTES_MAX = 3000
NAME = "bluesky"
TEMPLATE = "bluesky.txt.j2"


def render(ctx: PostContext) -> RenderedPost:
    """The post's text, fitted; the link also in Post.link (the record's link card)."""
    from bot.channels.bluesky.post import render_post
    from bot.channels.bluesky.settings import BlueskySettings

    channel = ctx.settings.channel(NAME)
    assert isinstance(channel, BlueskySettings)
    return render_post(ctx.templates, ctx.summary, ctx.details, ctx.plain, channel=channel, render=ctx.settings.render)


def graphemes(text: str) -> int:
    """The post's length as Bluesky counts it (extended grapheme clusters), for `preview`."""
    from bot.channels.bluesky.post import graphemes as count

    return count(text)


def size_in_bytes(text: str) -> str:
    """Bluesky's second limit, for `preview`: '412/3000 bytes'."""
    return f"{len(text.encode('utf-8'))}/{BYTES_MAX} bytes"


def check_post(post: Post) -> list[str]:
    """A post Bluesky would refuse (an operator's template can make one; fitting never does)."""
    from bot.channels.bluesky.post import problems

    return problems(post.text)
