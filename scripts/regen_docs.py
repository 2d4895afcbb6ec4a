"""Regenerate what is generated from bot/settings.py: config/bot.toml and docs/settings.md.

Run after adding or changing a setting: python scripts/regen_docs.py (tests fail while they are stale).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bot.settings import describe_settings, example_toml  # noqa: E402

SETTINGS_DOC = REPO / "docs" / "settings.md"

HEADER = """\
# Settings

<!-- Generated from bot/settings.py and the channel registry by scripts/regen_docs.py: do not edit. -->

Non-secret settings live in `config/bot.toml` (or the file named by `BOT_CONFIG`); the shipped file
lists every setting at its default, commented out. Channel settings are tables
`[channels.<name>]`, one per channel (adding a channel: [channels.md](channels.md)). Deployment
values and secrets are environment variables (the rows in capitals; a `.env` file in the working
directory is read too). A bad value stops the bot with exit code 2 and a message naming the
setting, the value and what was expected. What they do in practice: [operations.md](operations.md)
and [digest.md](digest.md).

"""


def settings_doc() -> str:
    """The whole of docs/settings.md."""
    return HEADER + "| setting | default | meaning |\n|---|---|---|\n" + describe_settings() + "\n"


def main() -> None:
    (REPO / "config" / "bot.toml").write_text(example_toml())
    SETTINGS_DOC.write_text(settings_doc())
    print("config/bot.toml and docs/settings.md are up to date")


if __name__ == "__main__":
    main()
