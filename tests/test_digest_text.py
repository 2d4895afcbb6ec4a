"""The digest reads only its summaries' plain text: building one renders no HTML (no MathML) for a summary the
render cache lacks, and its teasers are those of the text renderer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from digest_util import Newsroom, digest_settings
from feeds_util import items

from bot.digest import digest_items


def test_digest_items_render_text_only(tmp_path: Path) -> None:
    room = Newsroom.open(digest_settings(tmp_path, f"sqlite:///{tmp_path / 'bot.sqlite3'}"))
    try:
        room.publish(items(3))
        stored = room.app.store.latest_summaries()
        assert room.app.store.cached_renders({s.id: s.summary.content_hash for s in stored}) == {}

        got = digest_items(room.app, stored)

        # Not rendered to HTML (the render cache holds HTML and text together, so nothing was cached) ...
        assert room.app.store.cached_renders({s.id: s.summary.content_hash for s in stored}) == {}
        # ... and the teasers are the plain text's.
        for item, s in zip(got, stored, strict=True):
            assert item.teaser_text and item.teaser_text.split()[0] in room.app.renderer.text(s.summary)
    finally:
        room.close()


def test_plain_text_loads_no_html_renderer() -> None:
    # A fresh interpreter: what rendering text alone imports (the digest's and the posts' need).
    probe = (
        "import sys\n"
        "from bot.render import Renderer\n"
        "from bot.settings import Settings, sample_feed_path\n"
        "from bot.sources.parse import parse_feed\n"
        "summary = parse_feed(sample_feed_path().read_bytes(), 'sample').summaries[0]\n"
        "assert Renderer(Settings()).text(summary)\n"
        "print([m for m in ('latex2mathml', 'bot.render.html') if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
    ).stdout
    assert out.strip() == "[]"
