"""Facebook: posts on one Page with a link card; facebook-sdk against the Graph API.

The package: settings.py (section and variables), render.py (summary →
post), publisher.py (Graph API, reconciliation, check). CHANNEL is what the
registry (bot/channels/__init__.py) lists.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.channels.base import Publisher
from bot.channels.facebook import render
from bot.channels.facebook.settings import ENV, LIVE_NEEDS, FacebookSettings
from bot.channels.spec import Channel, Measure, SessionStore
from bot.settings import Settings

__all__ = ["CHANNEL"]


def _publisher(settings: Settings, now: Callable[[], datetime], sessions: SessionStore | None) -> Publisher:
    # Imported here: facebook-sdk and requests cost start-up time that dry-run never needs.
    from bot.channels.facebook.publisher import FacebookPublisher

    return FacebookPublisher(settings, now=now)


CHANNEL = Channel(
    name=render.NAME,
    title="Facebook",
    settings=FacebookSettings,
    env=ENV,
    live_needs=LIVE_NEEDS,
    templates=(render.TEMPLATE,),
    render=render.render,
    publisher=_publisher,
    # Far beyond any post the template makes: preview shows the size and the link field instead.
    measure=Measure(count=len, limit=render.FACEBOOK_MAX, unit="characters", show_limit=False, show_link=True),
    parallel=True,
)
