"""The Bluesky channel: posts with facets and a link card on an AT Protocol PDS, exactly once by record key.

``settings`` declares its section and variables, ``post`` renders and fits
a post (pure), ``render`` is the registry's render, ``tid`` chooses the
record key, ``publisher`` talks to the PDS through the atproto SDK, and the
login session lives in the SessionStore the app hands the factory (the
database, encrypted: bot.store.sessions). CHANNEL is what the registry
(bot/channels/__init__.py) lists.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.channels.base import Publisher
from bot.channels.bluesky import render
from bot.channels.bluesky.settings import ENV, LIVE_NEEDS, BlueskySettings
from bot.channels.bluesky.vault import MemoryVault
from bot.channels.spec import Channel, Measure, SessionStore
from bot.errors import ConfigError
from bot.settings import Settings

__all__ = ["CHANNEL"]


def _publisher(settings: Settings, now: Callable[[], datetime], sessions: SessionStore | None) -> Publisher:
    # Imported here: the atproto SDK costs start-up time that dry-run never needs.
    from bot.channels.bluesky.publisher import make_publisher
    from bot.channels.images import image_fetcher

    if sessions is not None and not settings.env.secret_key:
        # Refused here, before any login: the session is only ever kept encrypted.
        raise ConfigError(
            "setting SECRET_KEY is required for a live Bluesky channel (its login session is kept in the "
            "database, encrypted with it)"
        )
    # Without a store (a caller outside the app) the session lasts as long as the process.
    return make_publisher(
        settings,
        vault=sessions if sessions is not None else MemoryVault(),
        now=now,
        fetch_image=image_fetcher(settings),
    )


CHANNEL = Channel(
    name=render.NAME,
    title="Bluesky",
    settings=BlueskySettings,
    env=ENV,
    live_needs=LIVE_NEEDS,
    templates=(render.TEMPLATE,),
    render=render.render,
    publisher=_publisher,
    measure=Measure(count=render.graphemes, limit=render.GRAPHEMES_MAX, unit="graphemes", detail=render.size_in_bytes),
    check_post=render.check_post,
)
