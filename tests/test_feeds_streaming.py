"""A first feeds build after a large first poll holds one file's entries at a time, not the store:
memory flat in the number of summaries, every archive page still complete."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from conftest import FakeClock, make_settings
from feeds_util import items, site_feed

from bot.app import build_app
from bot.jobs import build_feeds
from bot.pipeline import poll
from bot.records import StoredSummary
from bot.sources.memory import MemorySource
from bot.store import Store


class CountingStore(Store):
    """The real store, noting the most summaries (with their text) one query loaded."""

    most = 0

    def summaries_by_ids(self, ids: Sequence[int]) -> list[StoredSummary]:
        CountingStore.most = max(CountingStore.most, len(ids))
        return super().summaries_by_ids(ids)


def test_a_first_build_loads_one_archive_page_at_a_time(tmp_path: Path) -> None:
    n, page, size = 300, 20, 10
    settings = make_settings(tmp_path, arxiv={"enabled": False}, feeds={"archive_page_size": page, "size": size})
    store = CountingStore.open(settings.database_url)
    app = build_app(settings, store=store, source=MemorySource(site_feed(items(n))), clock=FakeClock(), arxiv=False)
    try:
        poll(app, backfill=0)
        CountingStore.most = 0
        build_feeds(app)
    finally:
        app.close()
    assert 0 < CountingStore.most <= page
    pages = sorted((settings.public_dir / "archive").glob("*.atom"), key=lambda p: int(p.stem))
    assert len(pages) == n // page + 1
    # Every archive entry has its content: the summary's math rendered as MathML.
    for path in pages[:-1]:
        text = path.read_text(encoding="utf-8")
        assert text.count("<entry>") == page and text.count("&lt;math") + text.count("<math") >= page
