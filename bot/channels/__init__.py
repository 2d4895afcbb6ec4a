"""Channels by name: the registry that builds each channel's publisher.

A new network is one module implementing ``Publisher`` (base.py) and one
line in ``_LIVE`` below. A channel without credentials, or any channel under
``BOT_DRY_RUN=1``, gets the dry-run publisher that writes to the outbox.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.publishers.base import Publisher
from bot.publishers.dryrun import DryRunPublisher
from bot.settings import CHANNELS, Settings


def _twitter(settings: Settings, now: Callable[[], datetime]) -> Publisher:
    from bot.publishers.twitter import TwitterPublisher

    return TwitterPublisher(settings, now=now)


def _facebook(settings: Settings, now: Callable[[], datetime]) -> Publisher:
    from bot.publishers.facebook import FacebookPublisher

    return FacebookPublisher(settings, now=now)


#: channel → (the environment fields it needs, factory of its live publisher)
_LIVE: dict[str, tuple[tuple[str, ...], Callable[[Settings, Callable[[], datetime]], Publisher]]] = {
    "twitter": (
        ("twitter_api_key", "twitter_api_secret", "twitter_access_token", "twitter_access_token_secret"),
        _twitter,
    ),
    "facebook": (("facebook_page_id", "facebook_page_access_token"), _facebook),
}


def missing_credentials(settings: Settings, channel: str) -> list[str]:
    """The variables a channel still needs to go live (empty when it has them all)."""
    needed, _ = _LIVE[channel]
    return [name.upper() for name in needed if not getattr(settings.env, name)]


def channel_mode(settings: Settings, channel: str) -> tuple[bool, str]:
    """(live?, why) for `status` and the factory."""
    if settings.env.bot_dry_run:
        return False, "dry-run (BOT_DRY_RUN=1)"
    missing = missing_credentials(settings, channel)
    if missing:
        return False, "dry-run (no credentials: " + ", ".join(missing) + " unset)"
    return True, "live"


def enabled_channels(settings: Settings) -> list[str]:
    return [c for c in CHANNELS if settings.channel(c).enabled]


def build_publisher(settings: Settings, channel: str, *, now: Callable[[], datetime]) -> Publisher:
    live, _ = channel_mode(settings, channel)
    if live:
        return _LIVE[channel][1](settings, now)
    return DryRunPublisher(channel, settings.outbox_dir, now=now)
