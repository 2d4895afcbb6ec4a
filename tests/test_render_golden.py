"""Golden renders of the bundled sample feed: HTML, text, X post and Facebook post per summary.

Paper details come from tests/golden/details.json, so nothing here needs the
network. `UPDATE_GOLDEN=1 python -m pytest tests/test_render_golden.py` rewrites the files.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path

import pytest
from twitter_text import parse_tweet

from bot.records import PaperDetails, Summary
from bot.render import Renderer
from bot.settings import Settings, sample_feed_path, with_overrides

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def load_details() -> dict[str, PaperDetails]:
    raw = json.loads((GOLDEN / "details.json").read_text(encoding="utf-8"))
    return {
        key: PaperDetails(
            arxiv_id=key,
            title=v["title"],
            authors=tuple(v["authors"]),
            published=datetime.fromisoformat(v["published"]),
            categories=tuple(v["categories"]),
        )
        for key, v in raw.items()
    }


def sample_summaries() -> list[Summary]:
    path = sample_feed_path()
    if not path.exists():
        return []
    from bot.sources.parse import parse_feed

    return list(parse_feed(path.read_bytes(), str(path)).summaries)


def slug(summary: Summary) -> str:
    return re.sub(
        r"[^A-Za-z0-9.]+", "-", f"{summary.bibtex_key or summary.guid}-{summary.guid.rsplit('#', 1)[-1]}"
    ).strip("-")


def golden_settings() -> Settings:
    return with_overrides(Settings(), "render", fixed_hashtags=("#ShortScience",))


SUMMARIES = sample_summaries()


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(golden_settings())


@pytest.fixture(scope="module")
def details() -> dict[str, PaperDetails]:
    return load_details()


def check(path: Path, actual: str) -> None:
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"golden file {path.name} is missing; run with UPDATE_GOLDEN=1 to write it")
        path.write_text(actual, encoding="utf-8")
        return
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{path.name} differs from its golden file (UPDATE_GOLDEN=1 rewrites it)"


def test_sample_feed_is_there() -> None:
    if not sample_feed_path().exists():
        pytest.skip(f"the sample feed {sample_feed_path()} does not exist yet")
    assert len(SUMMARIES) >= 10


@pytest.mark.parametrize("summary", SUMMARIES, ids=[slug(s) for s in SUMMARIES])
def test_golden(summary: Summary, renderer: Renderer, details: dict[str, PaperDetails]) -> None:
    paper = details.get(summary.arxiv_id or "")
    html = renderer.html(summary)
    text = renderer.text(summary)
    tweet = renderer.post("twitter", summary, paper, text=text)
    facebook = renderer.post("facebook", summary, paper, text=text)
    name = slug(summary)
    check(GOLDEN / f"{name}.html", html + "\n")
    check(GOLDEN / f"{name}.txt", text + "\n")
    check(GOLDEN / f"{name}.tweet.txt", tweet.text + "\n")
    check(GOLDEN / f"{name}.facebook.txt", facebook.text + "\n")
    # What the goldens must always be, whatever they say.
    assert parse_tweet(tweet.text).valid
    assert tweet.text.count(summary.link) == 1
    assert facebook.link == summary.link
    assert "<script" not in html.lower()


def test_golden_files_have_no_orphans() -> None:
    if not SUMMARIES:
        pytest.skip(f"the sample feed {sample_feed_path()} does not exist yet")
    names = {slug(s) for s in SUMMARIES}
    for path in GOLDEN.iterdir():
        if path.name == "details.json":
            continue
        stem = path.name.split(".tweet.")[0].split(".facebook.")[0]
        stem = re.sub(r"\.(html|txt)$", "", stem)
        assert stem in names, f"{path.name} belongs to no summary of the sample feed (delete it)"
