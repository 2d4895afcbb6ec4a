"""The bundled sample feed (bot/data/sample-feed.xml): real seed summaries in the site's rss-full.xml format."""

from __future__ import annotations

import re
from importlib.resources import files

import feedparser
import pytest
from lxml import etree

from bot.records import Summary
from bot.sources.parse import parse_feed

SAMPLE = files("bot") / "data" / "sample-feed.xml"
# The seed pages hold 15 summaries, but one of them (Martin Thoma's "Deep Residual Learning for Image
# Recognition") appears on two pages: 14 distinct summaries.
EXPECTED_COUNT = 14

URL = re.compile(r"https?://|ftp://|file://", re.IGNORECASE)
INLINE_MATH = re.compile(r"(?<![$\\])\$(?!\$)[^$\n]+?(?<!\\)\$(?!\$)")
DISPLAY_MATH = re.compile(r"\$\$.+?\$\$", re.DOTALL)


@pytest.fixture(scope="module")
def body() -> bytes:
    return SAMPLE.read_bytes()


@pytest.fixture(scope="module")
def summaries(body: bytes) -> tuple[Summary, ...]:
    result = parse_feed(body, "sample")
    assert result.problems == ()
    return result.summaries


def test_sample_is_well_formed_rss_in_the_site_format(body: bytes) -> None:
    root = etree.fromstring(body)
    assert root.tag == "rss" and root.get("version") == "2.0"
    assert root.nsmap["shortscience"] == "https://www.shortscience.org"
    channel = root.find("channel")
    assert channel is not None
    assert channel.findtext("title") == "ShortScience.org Latest Summaries"
    assert channel.findtext("ttl") == "60"
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert len(parsed.entries) == EXPECTED_COUNT


def test_sample_parses_to_every_summary(summaries: tuple[Summary, ...]) -> None:
    assert len(summaries) == EXPECTED_COUNT
    assert len({s.guid for s in summaries}) == EXPECTED_COUNT
    for s in summaries:
        assert s.votes is not None and s.votes >= 2
        assert s.guid == s.link
        assert s.guid.startswith("https://www.shortscience.org/paper?bibtexKey=")
        assert s.bibtex_key and f"bibtexKey={s.bibtex_key}#" in s.guid
        assert s.title and s.author and s.text


def test_sample_is_newest_first_with_distinct_dates(summaries: tuple[Summary, ...]) -> None:
    dates = [s.edited_at for s in summaries]
    assert dates == sorted(dates, reverse=True)
    assert len(set(dates)) == len(dates)


def test_sample_text_carries_no_url(summaries: tuple[Summary, ...]) -> None:
    for s in summaries:
        assert not URL.search(s.text), (s.title, URL.search(s.text))
    # The site leaves the empty link and image targets behind.
    assert any("]()" in s.text for s in summaries)
    assert any("![]()" in s.text for s in summaries)


def test_sample_covers_what_renderers_must_handle(summaries: tuple[Summary, ...]) -> None:
    assert any(s.arxiv_id for s in summaries)
    assert any(s.arxiv_id is None for s in summaries)
    assert any(s.author == "Anonymous" and s.guid.endswith("#anon") for s in summaries)
    assert any(INLINE_MATH.search(s.text) for s in summaries)
    assert any(DISPLAY_MATH.search(s.text) for s in summaries)
    assert any("```python\n" in s.text for s in summaries)
    assert any(re.search(r"^#{2,5} \S", s.text, re.MULTILINE) for s in summaries)
    assert any(re.search(r"^[-*] \S", s.text, re.MULTILINE) for s in summaries)
    assert any(re.search(r"^    - \S", s.text, re.MULTILINE) for s in summaries)  # a nested list
    assert any(re.search(r"^1\. \S", s.text, re.MULTILINE) for s in summaries)
    assert any(re.search(r"^> \S", s.text, re.MULTILINE) for s in summaries)
    assert any("<" in s.text and "&" in s.text for s in summaries)  # escaped by the site, unescaped by us
    assert any(not s.title.isascii() or not s.author.isascii() for s in summaries)
    assert any(not s.text.isascii() for s in summaries)
