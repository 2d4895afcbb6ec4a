"""X (Twitter): posts fitted to 280 weighted characters, threads, images; tweepy against the v2 API.

The package: settings.py (section and variables), fitting.py (twitter-text
weighing), twittertext.py (loading twitter-text's parts), render.py (summary →
post), publisher.py (tweepy, reconciliation, check). CHANNEL is what the registry (bot/channels/__init__.py) lists.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.channels.base import Publisher
from bot.channels.spec import Channel, Measure, SessionStore
from bot.channels.twitter import render
from bot.channels.twitter.settings import ENV, LIVE_NEEDS, TwitterSettings
from bot.settings import Settings

__all__ = ["CHANNEL"]


def _publisher(settings: Settings, now: Callable[[], datetime], sessions: SessionStore | None) -> Publisher:
    # Imported here: tweepy and requests cost start-up time that dry-run never needs.
    from bot.channels.twitter.publisher import TwitterPublisher

    return TwitterPublisher(settings, now=now)


def _weight(text: str) -> int:
    from bot.channels.twitter.fitting import tweet_weight

    return tweet_weight(text)


CHANNEL = Channel(
    name=render.NAME,
    title="X",
    settings=TwitterSettings,
    env=ENV,
    live_needs=LIVE_NEEDS,
    templates=(render.TEMPLATE,),
    render=render.render,
    publisher=_publisher,
    measure=Measure(count=_weight, limit=280, unit="weighted"),
    check_post=render.check_post,
    parallel=True,
)
