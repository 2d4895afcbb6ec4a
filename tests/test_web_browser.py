"""The index page in a real browser (Debian's chromium through Playwright): autodiscovery and the Atom link."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from browser_util import ARTIFACTS, MARKS, chromium, served

from bot.feeds import FeedEntry, build_feeds
from bot.settings import Env, Settings
from bot.web import create_app

pytestmark = MARKS


@pytest.fixture
def base_url(tmp_path: Path) -> Iterator[str]:
    def make(url: str) -> Any:
        settings = Settings(env=Env(bot_public_dir=str(tmp_path / "public"), public_base_url=url))
        t0 = datetime(2024, 5, 1, tzinfo=UTC)
        entries = [
            FeedEntry(
                guid=f"https://www.shortscience.org/paper?bibtexKey=k{i}#u",
                title=f"Paper {i}",
                author="Alice",
                link=f"https://www.shortscience.org/paper?bibtexKey=k{i}#u",
                content_html=f"<p>Summary {i}</p>",
                summary_text=f"Summary {i}",
                published=t0 + timedelta(days=i),
                updated=t0 + timedelta(days=i),
                categories=("cs.LG",),
                paper_url=None,
            )
            for i in range(3)
        ]
        build_feeds(entries, settings)
        return create_app(settings)

    with served(make) as url:
        yield url


def test_index_autodiscovery_and_atom_link_in_chromium(base_url: str) -> None:
    with chromium() as browser:
        page = browser.new_page()
        response = page.goto(base_url + "/")
        assert response is not None and response.status == 200
        discovered = page.eval_on_selector_all(
            "head link[rel=alternate]", "links => links.map(l => [l.type, l.getAttribute('href')])"
        )
        assert ["application/atom+xml", "/feed.atom"] in discovered
        assert ["application/rss+xml", "/category/cs.LG.rss"] in discovered
        page.screenshot(path=str(ARTIFACTS / "feeds-index.png"), full_page=True)

        with page.expect_response(lambda r: r.url == base_url + "/feed.atom") as answer:
            page.click("a[href='/feed.atom']")
        feed = answer.value
        assert feed.status == 200
        assert feed.headers["content-type"] == "application/atom+xml; charset=utf-8"
        body = feed.body()
        assert body.startswith(b"<?xml") and b"<title>Paper 2</title>" in body
        page.wait_for_load_state()
        page.screenshot(path=str(ARTIFACTS / "feeds-atom.png"), full_page=True)
