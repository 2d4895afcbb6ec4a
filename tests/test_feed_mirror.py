"""The web process's own copy of the feeds, for hosts where web and worker do not share a disk."""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from env_util import clean_environ
from feeds_util import Item, items, site_feed

from bot.jobs import FeedMirror, build_feeds
from bot.pipeline import poll
from bot.settings import Settings, with_overrides

# A hub nobody answers: a ping to it is logged as a websub warning.
DEAD_HUB = "http://127.0.0.1:9/hub"


def files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def on_own_disk(settings: Settings, folder: Path) -> Settings:
    """The same deployment (same database), another machine's BOT_PUBLIC_DIR."""
    return dataclasses.replace(settings, env=dataclasses.replace(settings.env, bot_public_dir=str(folder)))


def test_the_web_copy_follows_the_database_byte_for_byte_without_pinging(
    make_app: Any, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = with_overrides(settings, "feeds", websub_hub=DEAD_HUB)
    worker, source = make_app(site_feed(items(6)), settings=on_own_disk(settings, tmp_path / "worker-disk"))
    web, _ = make_app(b"", settings=on_own_disk(settings, tmp_path / "web-disk"))
    mirror = FeedMirror(web, threading.Event())

    poll(worker, backfill=0)
    with caplog.at_level(logging.WARNING):
        assert "pinged at" in build_feeds(worker)
        assert "websub:" in caplog.text  # the worker pings (and the dead hub is reported)
        caplog.clear()
        assert mirror.refresh() is not None
        assert "websub:" not in caplog.text  # the mirror never does
    assert files(tmp_path / "web-disk") == files(tmp_path / "worker-disk")
    assert {"feed.rss", "feed.atom", "feed.json"} <= set(files(tmp_path / "web-disk"))

    # A new summary reaches the web copy at its next refresh, and nothing else changes meanwhile.
    source.body = site_feed([Item("new/1", title="A brand new paper"), *items(6)])
    poll(worker)
    build_feeds(worker)
    before = files(tmp_path / "web-disk")
    assert b"A brand new paper" not in before["feed.rss"]
    mirror.refresh()
    after = files(tmp_path / "web-disk")
    assert b"A brand new paper" in after["feed.rss"] and after == files(tmp_path / "worker-disk")
    assert "0 files written" in str(mirror.refresh())


def test_the_mirror_thread_refreshes_until_stopped(make_app: Any, settings: Settings, tmp_path: Path) -> None:
    settings = with_overrides(settings, "web", feeds_refresh_seconds=1)
    worker, _ = make_app(site_feed(items(3)), settings=on_own_disk(settings, tmp_path / "worker-disk"))
    web, _ = make_app(b"", settings=on_own_disk(settings, tmp_path / "web-disk"))
    poll(worker, backfill=0)
    stop = threading.Event()
    thread = threading.Thread(target=FeedMirror(web, stop).run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if (tmp_path / "web-disk" / "feed.atom").is_file():
                break
            stop.wait(0.05)
        assert (tmp_path / "web-disk" / "feed.atom").is_file()
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_failing_refresh_is_reported_and_the_next_one_works(
    make_app: Any, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker, _ = make_app(site_feed(items(2)), settings=on_own_disk(settings, tmp_path / "worker-disk"))
    poll(worker, backfill=0)
    blocked = tmp_path / "web-disk"
    blocked.write_text("a file where the folder should be")
    web, _ = make_app(b"", settings=on_own_disk(settings, blocked))
    mirror = FeedMirror(web, threading.Event())
    with caplog.at_level(logging.WARNING):
        assert mirror.refresh() is None
    assert "feeds mirror:" in caplog.text and "serving the files already there" in caplog.text
    blocked.unlink()
    assert mirror.refresh() is not None and (blocked / "feed.rss").is_file()


def test_a_web_process_on_its_own_disk_serves_the_feeds(
    make_app: Any, settings: Settings, db_url: str, tmp_path: Path
) -> None:
    """`python -m bot web` on an empty disk, with only the database shared (a web dyno): the feeds appear."""
    import socket
    import subprocess
    import sys
    import time

    import httpx

    worker, _ = make_app(site_feed(items(3)), settings=on_own_disk(settings, tmp_path / "worker-disk"))
    poll(worker, backfill=0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = clean_environ()
    env.update(
        DATABASE_URL=db_url,
        BOT_DATA_DIR=str(tmp_path / "web-dyno"),
        PORT=str(port),
        BOT_DRY_RUN="1",
        SECRET_KEY="mirror-test-secret-key-0123456789",
    )
    log = (tmp_path / "web.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "web"],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "web.log").read_text()
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/feed.rss", timeout=2).status_code
            except httpx.TransportError:
                status = None
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200, (tmp_path / "web.log").read_text()
        body = httpx.get(f"http://127.0.0.1:{port}/feed.rss", timeout=5).content
        assert body == (tmp_path / "web-dyno" / "public" / "feed.rss").read_bytes()
        assert items(3)[0].title.encode() in body
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


class CountingArxiv:
    """An arXiv client that knows no paper and notes every request."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    def fetch(self, ids: Any) -> dict[str, Any]:
        self.asked.append(list(ids))
        return {}

    def close(self) -> None:
        pass


def test_the_mirror_asks_arxiv_nothing(make_app: Any, settings: Settings, tmp_path: Path) -> None:
    arxiv = CountingArxiv()
    feed = site_feed([Item("a/1", arxiv="1803.08494"), Item("a/2", arxiv="1512.03385")])
    worker, _ = make_app(feed, settings=on_own_disk(settings, tmp_path / "worker-disk"), arxiv=arxiv)
    web, _ = make_app(b"", settings=on_own_disk(settings, tmp_path / "web-disk"), arxiv=arxiv)
    poll(worker, backfill=0)
    mirror = FeedMirror(web, threading.Event())
    assert mirror.refresh() is not None
    assert arxiv.asked == []  # the web process reflects the database; it calls nobody
    build_feeds(worker)
    assert arxiv.asked == [["1512.03385", "1803.08494"]]  # the worker does
    mirror.refresh()
    assert arxiv.asked == [["1512.03385", "1803.08494"]]
    assert files(tmp_path / "web-disk") == files(tmp_path / "worker-disk")
