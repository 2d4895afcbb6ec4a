"""The Mastodon channel: statuses fitted to the instance's limit, posted exactly once with Mastodon.py.

``settings`` declares its section and variables, ``post`` fits a summary
into a status (pure), ``render`` is the registry's render, ``publisher``
sends it. CHANNEL is what the registry (bot/channels/__init__.py) lists.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.channels.base import Publisher
from bot.channels.mastodon import render
from bot.channels.mastodon.settings import ENV, LIVE_NEEDS, MastodonSettings
from bot.channels.spec import Channel, Measure, SessionStore
from bot.settings import Settings

__all__ = ["CHANNEL"]


def _publisher(settings: Settings, now: Callable[[], datetime], sessions: SessionStore | None) -> Publisher:
    # Imported here: Mastodon.py and requests cost start-up time that dry-run never needs.
    from bot.channels.mastodon.publisher import MastodonPublisher

    channel = settings.channel(render.NAME)
    assert isinstance(channel, MastodonSettings)
    return MastodonPublisher.from_settings(channel, settings, now=now)


CHANNEL = Channel(
    name=render.NAME,
    title="Mastodon",
    settings=MastodonSettings,
    env=ENV,
    live_needs=LIVE_NEEDS,
    templates=(render.TEMPLATE,),
    render=render.render,
    publisher=_publisher,
    # The instance's own limit is only known live: preview (like dry-run) fits to Mastodon's default.
    measure=Measure(count=render.length, limit=render.DEFAULT_MAX_CHARACTERS, unit="characters"),
    parallel=True,
)
