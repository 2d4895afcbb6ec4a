"""The quick start without a network: the bundled sample's paper details come from the package, not arXiv.

The command is the README's (`run --once --backfill 3`) in an empty working
directory with no BOT_* variables; the only thing set is the arXiv URL, pointed at
a closed port on 127.0.0.1, so any arXiv request would fail and show.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from env_util import clean_environ

from bot.app import build_app
from bot.arxiv import ArxivClient, BundledPapers
from bot.settings import load_settings, sample_feed_path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "config").mkdir()
    # The settings file a fresh clone reads (config/bot.toml), with arXiv unreachable.
    (tmp_path / "config" / "bot.toml").write_text(
        f'[arxiv]\napi_url = "http://127.0.0.1:{closed_port()}/api/query"\nwait_seconds = 2.0\n'
    )
    return tmp_path


def bot(cwd: Path, *args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = clean_environ()
    env.update(extra or {})
    r = subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, f"bot {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r


def test_quick_start_offline_posts_carry_authors_and_hashtags(workdir: Path) -> None:
    r = bot(workdir, "run", "--once", "--backfill", "3")
    assert "paper details unavailable" not in r.stderr  # no arXiv request was tried
    posts = {
        p["summary_id"].split("#")[0].rsplit("/", 1)[-1]: p["text"]
        for p in map(json.loads, (workdir / "var" / "outbox" / "twitter.jsonl").read_text().splitlines())
    }
    assert len(posts) == 3
    # The two newer networks get their dry-run outbox too: three posts each, each with its summary's link.
    for name in ("mastodon", "bluesky"):
        written = [json.loads(x) for x in (workdir / "var" / "outbox" / f"{name}.jsonl").read_text().splitlines()]
        assert len(written) == 3 and all(x["url"] in x["text"] and x["channel"] == name for x in written), name
    group_norm = posts["1803.08494"]
    assert group_norm.startswith("Group Normalization (Wu & He)")
    assert "#ComputerVision #MachineLearning" in group_norm
    assert "Khosla et al." in posts["2004.11362"] and "#MachineLearning" in posts["2004.11362"]
    status = bot(workdir, "status").stdout
    assert "needs attention: nothing" in status
    # Category feeds are named for people in feed readers: the name, with the code.
    atom = (workdir / "var" / "public" / "category" / "cs.LG.atom").read_text()
    assert "<title>ShortScience.org summaries: Machine Learning (cs.LG)</title>" in atom
    # The digest the subscribe page promises shows the papers' authors, offline too.
    # Its links are signed: the development key will do for a local preview.
    preview = bot(workdir, "digest", "preview", "--out", str(workdir), extra={"BOT_DEV": "1"}).stdout
    assert "3 summaries first seen" in preview
    digest_text = " ".join((workdir / "digest-preview.txt").read_text().split())  # long lines are wrapped
    assert "Yuxin Wu and Kaiming He" in digest_text and "Computer Vision and Pattern Recognition (cs.CV)" in digest_text
    assert "Yuxin Wu and Kaiming He" in (workdir / "digest-preview.html").read_text()
    # The same again: deterministic, whatever the machine.
    shutil.rmtree(workdir / "var")
    bot(workdir, "run", "--once", "--backfill", "3")
    again = [json.loads(x)["text"] for x in (workdir / "var" / "outbox" / "twitter.jsonl").read_text().splitlines()]
    assert sorted(again) == sorted(posts.values())


def test_status_shows_arxiv_trouble_as_needing_attention(workdir: Path) -> None:
    # A copy of the sample is not the bundled sample: its papers are asked of arXiv, which is down.
    feed = workdir / "other-feed.xml"
    shutil.copy(sample_feed_path(), feed)
    extra = {"SHORTSCIENCE_FEED_URL": str(feed)}
    r = bot(workdir, "run", "--once", "--backfill", "3", extra=extra)
    assert "paper details unavailable" in r.stderr
    status = bot(workdir, "status", extra=extra).stdout
    attention = status.split("needs attention", 1)[1]
    assert not attention.startswith(": nothing")
    assert "arXiv failed" in attention and "ConnectError" in attention
    assert "8 papers without details" in attention and "1803.08494, 2004.11362" in attention


def test_only_the_bundled_sample_uses_bundled_details(tmp_path: Path) -> None:
    env = {"BOT_DATA_DIR": str(tmp_path)}
    sample = build_app(load_settings(env, load_dotenv=False))
    other = build_app(
        load_settings({**env, "SHORTSCIENCE_FEED_URL": "https://www.shortscience.org/rss-full.xml"}, load_dotenv=False)
    )
    try:
        assert isinstance(sample.arxiv, BundledPapers)
        assert isinstance(other.arxiv, ArxivClient)
    finally:
        sample.close()
        other.close()


def test_bundled_details_cover_every_arxiv_paper_of_the_sample() -> None:
    from bot.sources.parse import parse_feed

    parsed = parse_feed(sample_feed_path().read_bytes(), str(sample_feed_path()))
    ids = {s.arxiv_id for s in parsed.summaries if s.arxiv_id}
    found = BundledPapers().fetch(sorted(ids))
    assert set(found) == ids and len(ids) == 8
    assert all(d.authors and d.categories and d.published for d in found.values())
