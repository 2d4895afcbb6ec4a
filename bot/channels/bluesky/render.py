"""A Bluesky post from a summary: post.py's fitting to 300 graphemes and 3,000 bytes (facets and card come at publish)."""

from __future__ import annotations

from bot.channels.bluesky.post import BYTES_MAX, NAME, TEMPLATE, problems, render_post
from bot.channels.bluesky.settings import BlueskySettings
from bot.channels.spec import PostContext, RenderedPost
from bot.records import Post

__all__ = ["NAME", "TEMPLATE", "check_post", "render", "size_in_bytes"]


def render(ctx: PostContext) -> RenderedPost:
    """The post's text, fitted; the link also in Post.link (the record's link card)."""
    channel = ctx.settings.channel(NAME)
    assert isinstance(channel, BlueskySettings)
    return render_post(ctx.templates, ctx.summary, ctx.details, ctx.plain, channel=channel, render=ctx.settings.render)


def size_in_bytes(text: str) -> str:
    """Bluesky's second limit, for `preview`: '412/3000 bytes'."""
    return f"{len(text.encode('utf-8'))}/{BYTES_MAX} bytes"


def check_post(post: Post) -> list[str]:
    """A post Bluesky would refuse (an operator's template can make one; fitting never does)."""
    return problems(post.text)


