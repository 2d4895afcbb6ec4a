"""[channels.mastodon]: the Mastodon channel's settings and the environment variables it reads (the registry lists
them)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.channels.spec import EnvVar
from bot.settings import ChannelSettings, _s


@dataclass(frozen=True)
class MastodonSettings(ChannelSettings):
    """[channels.mastodon]: posts (statuses) on a Mastodon account."""

    visibility: str = _s(
        "public",
        "Who sees the posts: 'public', or 'unlisted' (not in the public timelines).",
        choices=("public", "unlisted"),
    )
    language: str = _s("en", "Language of the posts (ISO 639-1 code), so readers' filters and translation work.")
    spoiler_text: str = _s(
        "", "A content warning shown before each post (empty: none); it counts towards the length limit."
    )
    teaser_chars: int = _s(300, "Longest teaser of a post before fitting to the instance's limit.", minimum=0)
    timeout_seconds: float = _s(
        30.0,
        "Seconds to wait for each Mastodon API answer (a post that times out may still have gone out: "
        "reconciliation tells).",
        minimum=0.1,
    )


ENV = (
    # Not url=True: it has no default (unset: dry-run); the publisher refuses one that is not a URL.
    EnvVar("MASTODON_API_BASE_URL", "The Mastodon instance the account is on, e.g. https://sigmoid.social."),
    EnvVar(
        "MASTODON_ACCESS_TOKEN",
        "An access token of the account with the write:statuses, write:media and read:accounts scopes.",
        secret=True,
    ),
)
#: what it needs to go live
LIVE_NEEDS = ("MASTODON_API_BASE_URL", "MASTODON_ACCESS_TOKEN")
