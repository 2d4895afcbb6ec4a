"""The channels: one line per channel below; everything else reads this registry.

A channel is one package under bot/channels/<name>/ exporting a ``Channel``
spec (spec.py): settings section, environment variables, templates,
rendering, live publisher, length measure. Settings, rendering, the
dispatcher, `status`, `check`, `preview`, the docs generator and the tests
read it from here; no other module names a channel (tests/test_channels.py
checks). Shared pieces live beside the packages: the publisher protocol
(base.py), the dry-run outbox (dryrun.py), the HTTP transport, image
fetching and the fake publisher. See docs/channels.md to add one.

A channel without credentials, or any channel under ``BOT_DRY_RUN=1``, gets
the dry-run publisher that writes to <outbox>/<name>.jsonl.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType

from bot.channels import bluesky, facebook, mastodon, twitter
from bot.channels.base import Publisher
from bot.channels.dryrun import DryRunPublisher
from bot.channels.spec import Channel, SessionStore
from bot.errors import ConfigError
from bot.settings import Settings

#: every channel, in the order `status` shows them and the settings file lists them
REGISTRY: Mapping[str, Channel] = MappingProxyType(
    {
        c.name: c
        for c in (
            twitter.CHANNEL,
            facebook.CHANNEL,
            mastodon.CHANNEL,
            bluesky.CHANNEL,
        )
    }
)

#: the channels' names
CHANNELS: tuple[str, ...] = tuple(REGISTRY)


def channel_spec(name: str) -> Channel:
    """The channel called `name`; ConfigError for one the registry does not list."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown channel {name!r}; expected one of {', '.join(CHANNELS)}") from None


def missing_credentials(settings: Settings, channel: str) -> list[str]:
    """The variables a channel still needs to go live (empty when it has them all)."""
    return channel_spec(channel).missing(settings.env)


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


def build_publisher(
    settings: Settings, channel: str, *, now: Callable[[], datetime], sessions: SessionStore | None = None
) -> Publisher:
    """The channel's live publisher, or its dry-run one. `sessions`: where a publisher that logs in keeps
    its session (the app hands in a database-backed store once a channel needs one)."""
    spec = channel_spec(channel)
    live, _ = channel_mode(settings, channel)
    if live:
        return spec.publisher(settings, now, sessions)
    return DryRunPublisher(channel, settings.outbox_dir, now=now)
