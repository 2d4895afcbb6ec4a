"""What `status` tells the operator about costs and held summaries (issue 13, points 8 and 12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import FakeClock, make_settings

from bot.app import build_app
from bot.settings import with_overrides
from bot.status import render_status

X_CREDENTIALS = {
    "TWITTER_API_KEY": "k",
    "TWITTER_API_SECRET": "s",
    "TWITTER_ACCESS_TOKEN": "t",
    "TWITTER_ACCESS_TOKEN_SECRET": "ts",
}


def _twitter_lines(text: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index("  twitter: live")
    return lines[start : start + 5]


def test_status_shows_what_a_read_back_costs_next_to_the_post_cost(tmp_path: Path, clock: FakeClock) -> None:
    settings = make_settings(tmp_path, X_CREDENTIALS)
    app: Any = build_app(settings, clock=clock, arxiv=False)
    try:
        lines = _twitter_lines(render_status(app))
        assert any("at $0.20/post, reading back $0.005/post read" in line for line in lines), lines
        assert any("daily cap 50, monthly cap 1000" in line for line in lines), lines
    finally:
        app.close()
    fallback = build_app(with_overrides(settings, "channels.twitter", reconcile_resend=True), clock=clock, arxiv=False)
    try:
        assert not any("post read" in line for line in _twitter_lines(render_status(fallback)))
    finally:
        fallback.close()
