"""The Facebook Page's `[channels.facebook]` section and its environment variables."""

from __future__ import annotations

from dataclasses import dataclass

from bot.channels.spec import EnvVar
from bot.settings import ChannelSettings, _s


@dataclass(frozen=True)
class FacebookSettings(ChannelSettings):
    """[channels.facebook]: posts on the Facebook Page."""

    teaser_chars: int = _s(600, "Longest teaser of a Page post, cut at a sentence boundary.", minimum=50)
    timeout_seconds: float = _s(
        30.0,
        "Seconds to wait for each Graph API answer (a post that times out may still have gone out: "
        "reconciliation tells).",
        minimum=0.1,
    )


ENV = (
    EnvVar("FACEBOOK_PAGE_ID", "The Facebook Page's id."),
    EnvVar(
        "FACEBOOK_PAGE_ACCESS_TOKEN",
        "A Page access token with pages_manage_posts and pages_read_engagement.",
        secret=True,
    ),
    EnvVar("FACEBOOK_GRAPH_VERSION", "Graph API version used in request paths.", default="v26.0"),
    EnvVar(
        "FACEBOOK_GRAPH_URL",
        "Graph API host (staging, a proxy, a local test server).",
        default="https://graph.facebook.com/",
        url=True,
    ),
)
#: what it needs to go live
LIVE_NEEDS = ("FACEBOOK_PAGE_ID", "FACEBOOK_PAGE_ACCESS_TOKEN")
