"""[channels.bluesky] and the Bluesky environment variables, declared once (the registry reads them)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.channels.spec import EnvVar
from bot.errors import ConfigError
from bot.settings import ChannelSettings, _s


@dataclass(frozen=True)
class BlueskySettings(ChannelSettings):
    """[channels.bluesky]: posts on Bluesky."""

    price_per_post: float = _s(0.0, "Estimated cost of one post, in USD (Bluesky charges nothing).", minimum=0)
    langs: tuple[str, ...] = _s(("en",), "Languages of the posts (BCP 47 tags, at most 3), sent as the post's langs.")
    teaser_chars: int = _s(
        120,
        "Longest teaser of a post, in graphemes, before fitting to 300 (hashtags give way first, then the teaser).",
        minimum=0,
    )
    timeout_seconds: float = _s(
        30.0,
        "Seconds to wait for each PDS answer (a post that times out is looked up under its record key).",
        minimum=0.1,
    )

    def __post_init__(self) -> None:
        # Checked as the settings load, so a bad value stops the bot at start, not at its first post.
        check_settings(self)


ENV = (
    EnvVar("BLUESKY_HANDLE", "The Bluesky account's handle, e.g. shortscience.bsky.social."),
    EnvVar(
        "BLUESKY_APP_PASSWORD",
        "An app password of that account (Settings → Privacy and security → App passwords).",
        secret=True,
    ),
    EnvVar(
        "BLUESKY_SERVICE_URL",
        "The account's PDS or entryway (Bluesky-hosted accounts: https://bsky.social).",
        default="https://bsky.social",
        url=True,
    ),
)

#: the variables a live Bluesky channel needs (without them: dry-run)
LIVE_NEEDS = ("BLUESKY_HANDLE", "BLUESKY_APP_PASSWORD")

_LANG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")


def check_settings(settings: BlueskySettings) -> None:
    """What one value's type cannot say: the PDS refuses more than 3 langs, and malformed tags."""
    if not 1 <= len(settings.langs) <= 3:
        raise ConfigError(
            f"setting channels.bluesky.langs = {list(settings.langs)!r} is invalid: expected 1 to 3 language tags"
        )
    for tag in settings.langs:
        if not _LANG.fullmatch(tag):
            raise ConfigError(
                f"setting channels.bluesky.langs = {tag!r} is invalid: expected a BCP 47 tag such as 'en' or 'pt-BR'"
            )
