"""What the benchmarks that post to the X stand-in share: its keys, its command line, the bot's X-only config.

benchmarks/dispatch.py and benchmarks/peers.py both run tests/fake_x.py as a process answering after
a latency, and the bot against it with X the only channel (the newer channels off, so they measure X
alone) and no cap on posts; each adds its own sections to X_ONLY_CONFIG.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: the OAuth 1.0a keys the stand-in accepts and the bot is given (the TWITTER_* variables)
X_KEYS = {
    "TWITTER_API_KEY": "bench-ck",
    "TWITTER_API_SECRET": "bench-cs",
    "TWITTER_ACCESS_TOKEN": "bench-at",
    "TWITTER_ACCESS_TOKEN_SECRET": "bench-ats",
}

#: the bot's config: no arXiv look-ups, X alone, no daily or monthly cap
X_ONLY_CONFIG = """[arxiv]
enabled = false
[channels.facebook]
enabled = false
[channels.mastodon]
enabled = false
[channels.bluesky]
enabled = false
[channels.twitter]
daily_cap = 0
monthly_cap = 0
"""


def fake_x_command(latency: float) -> list[str]:
    """tests/fake_x.py as a process (keep-alive) answering after `latency` seconds; it prints its port first."""
    return [
        sys.executable,
        str(REPO / "tests" / "fake_x.py"),
        "--port",
        "0",
        "--delay",
        str(latency),
        "--keep-alive",
        "--consumer-key",
        X_KEYS["TWITTER_API_KEY"],
        "--access-token",
        X_KEYS["TWITTER_ACCESS_TOKEN"],
    ]
