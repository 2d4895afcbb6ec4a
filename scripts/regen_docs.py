"""Regenerate what is generated from bot/settings.py: config/bot.toml and the README's settings table.

Run after adding or changing a setting: python scripts/regen_docs.py (tests fail while they are stale).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bot.settings import describe_settings, example_toml  # noqa: E402

START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def main() -> None:
    (REPO / "config" / "bot.toml").write_text(example_toml())
    readme = REPO / "README.md"
    text = readme.read_text()
    table = "| setting | default | meaning |\n|---|---|---|\n" + describe_settings()
    new = re.sub(re.escape(START) + ".*?" + re.escape(END), f"{START}\n{table}\n{END}", text, flags=re.S)
    readme.write_text(new)
    print("config/bot.toml and the README settings table are up to date")


if __name__ == "__main__":
    main()
