"""The environment of a bot process a test starts: this process's own, less any deployment's values.

A developer's shell (or a CI host) may carry a deployment's settings and credentials; a test's bot
must not pick them up, or it would post with them or read another database.
"""

from __future__ import annotations

import os

#: the variables of a deployment (settings, credentials, the web process's address), by prefix
DEPLOYMENT = (
    "BOT_",
    "TWITTER_",
    "FACEBOOK_",
    "MASTODON_",
    "BLUESKY_",
    "SMTP_",
    "DATABASE_URL",
    "SHORTSCIENCE_",
    "SECRET_KEY",
    "OPERATOR_PASSWORD_HASH",
    "FORWARDED_ALLOW_IPS",
    "HOST",
    "PORT",
)


def clean_environ(*also: str) -> dict[str, str]:
    """os.environ without the deployment's variables (nor those starting with any of `also`)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(DEPLOYMENT + also)}
