"""A Mastodon status from a summary: post.py's fitting, to the limit the context carries (500 when unknown).

post.py is imported on first use: it brings the text renderer (Markdown, LaTeX), which commands
that never render a post (a no-op `run --once`, `status`) should not load just because the
registry lists this channel.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.channels.spec import PostContext, RenderedPost

__all__ = ["DEFAULT_MAX_CHARACTERS", "DEFAULT_URL_CHARACTERS", "NAME", "TEMPLATE", "length", "render"]

NAME = "mastodon"
TEMPLATE = "mastodon.txt.j2"
#: the room a URL takes and the limit when the instance does not say (Mastodon's defaults)
DEFAULT_MAX_CHARACTERS = 500
DEFAULT_URL_CHARACTERS = 23


def render(ctx: PostContext) -> RenderedPost:
    """The status, fitted to `ctx.limit` (the instance's own, when a live publisher read it) or Mastodon's default."""
    from bot.channels.mastodon.post import DEFAULT_LIMITS, mastodon_post
    from bot.channels.mastodon.settings import MastodonSettings

    channel = ctx.settings.channel(NAME)
    assert isinstance(channel, MastodonSettings)
    limits = DEFAULT_LIMITS if ctx.limit is None else dataclasses.replace(DEFAULT_LIMITS, max_characters=ctx.limit)
    return mastodon_post(
        ctx.templates, ctx.summary, ctx.details, ctx.plain, settings=channel, render=ctx.settings.render, limits=limits
    )


def length(text: str) -> int:
    """A status's length as Mastodon counts it (an upper bound: post.py), each URL as 23."""
    from bot.channels.mastodon.post import status_length

    return status_length(text)
