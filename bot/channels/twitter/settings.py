"""X's `[channels.twitter]` section and its environment variables."""

from __future__ import annotations

from dataclasses import dataclass

from bot.channels.spec import EnvVar
from bot.settings import ChannelSettings, _s


@dataclass(frozen=True)
class TwitterSettings(ChannelSettings):
    """[channels.twitter]: posts on X."""

    price_per_post: float = _s(
        0.20, "Estimated cost of one post, in USD (X charges about $0.20 for a post with a URL).", minimum=0
    )
    thread: bool = _s(False, "Continue the teaser over numbered replies (a thread) instead of one post.")
    thread_max_replies: int = _s(3, "Most replies of a thread.", minimum=1)
    daily_cap: int = _s(50, "Most posts per UTC day on X (0: no cap; X is paid per post).", minimum=0)
    monthly_cap: int = _s(
        1000, "Most posts per UTC calendar month on X (0: no cap; at $0.20 a post, 1000 is about $200).", minimum=0
    )
    reconcile_resend: bool = _s(
        False,
        "Fallback proof after a crash mid-post: send the identical text again and take X's 'duplicate "
        "content' refusal as proof (X does not guarantee it; off: read the account's posts back).",
    )
    reconcile_read: bool = _s(
        False,
        "With reconcile_resend: also read the account's recent posts for the reconciled post's id (costs API reads).",
    )
    read_price: float = _s(
        0.005,
        "Estimated cost of one post read back from X, in USD (pay-per-use: about $0.005 per post read); "
        "reconciliation reads the posts since the delivery was queued.",
        minimum=0,
    )
    timeout_seconds: float = _s(
        30.0,
        "Seconds to wait for each X API answer (a post that times out may still have gone out: reconciliation tells).",
        minimum=0.1,
    )


ENV = (
    EnvVar("TWITTER_API_KEY", "X OAuth 1.0a consumer key.", secret=True),
    EnvVar("TWITTER_API_SECRET", "X OAuth 1.0a consumer secret.", secret=True),
    EnvVar("TWITTER_ACCESS_TOKEN", "X OAuth 1.0a access token.", secret=True),
    EnvVar("TWITTER_ACCESS_TOKEN_SECRET", "X OAuth 1.0a access token secret.", secret=True),
    EnvVar(
        "TWITTER_API_BASE_URL",
        "X API host (staging, a proxy, a local test server).",
        default="https://api.twitter.com",
        url=True,
    ),
)
#: what it needs to go live
LIVE_NEEDS = ("TWITTER_API_KEY", "TWITTER_API_SECRET", "TWITTER_ACCESS_TOKEN", "TWITTER_ACCESS_TOKEN_SECRET")
