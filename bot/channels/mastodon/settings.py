"""[channels.mastodon]: the Mastodon channel's settings and the environment variables it reads.

Declared here, beside the channel, so the registry can pick them up; the
integrator adds the section and the variables to bot/settings.py's lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.settings import ChannelSettings, _s

#: the environment variables of the channel: (name, one line of help, secret)
ENV_VARS: tuple[tuple[str, str, bool], ...] = (
    ("MASTODON_API_BASE_URL", "The Mastodon instance the account is on, e.g. https://sigmoid.social.", False),
    ("MASTODON_ACCESS_TOKEN", "An access token of the account with the write:statuses, write:media and read:accounts scopes.", True),
)


@dataclass(frozen=True)
class MastodonSettings(ChannelSettings):
    """[channels.mastodon]: posts (statuses) on a Mastodon account."""

    visibility: str = _s("public", "Who sees the posts: 'public', or 'unlisted' (not in the public timelines).", choices=("public", "unlisted"))
    language: str = _s("en", "Language of the posts (ISO 639-1 code), so readers' filters and translation work.")
    spoiler_text: str = _s("", "A content warning shown before each post (empty: none); it counts towards the length limit.")
    teaser_chars: int = _s(300, "Longest teaser of a post before fitting to the instance's limit.", minimum=0)
    timeout_seconds: float = _s(30.0, "Seconds to wait for each Mastodon API answer (a post that times out may still have gone out: reconciliation tells).", minimum=0.1)
