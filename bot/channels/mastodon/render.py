"""A Mastodon status from a summary: post.py's fitting, to the limit the context carries (500 when unknown)."""

from __future__ import annotations

import dataclasses

from bot.channels.mastodon.post import CHANNEL, DEFAULT_LIMITS, TEMPLATE, mastodon_post, status_length
from bot.channels.mastodon.settings import MastodonSettings
from bot.channels.spec import PostContext, RenderedPost

NAME = CHANNEL
__all__ = ["NAME", "TEMPLATE", "length", "render"]


def render(ctx: PostContext) -> RenderedPost:
    """The status, fitted to `ctx.limit` (the instance's own, when a live publisher read it) or Mastodon's default."""
    channel = ctx.settings.channel(NAME)
    assert isinstance(channel, MastodonSettings)
    limits = DEFAULT_LIMITS if ctx.limit is None else dataclasses.replace(DEFAULT_LIMITS, max_characters=ctx.limit)
    return mastodon_post(ctx.templates, ctx.summary, ctx.details, ctx.plain, settings=channel, render=ctx.settings.render, limits=limits)


def length(text: str) -> int:
    """A status's length as Mastodon counts it (an upper bound: post.py), each URL as 23."""
    return status_length(text)
