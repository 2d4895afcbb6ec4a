"""Rendering in worker processes (issue 17): a first build with many summaries to render uses every core,
and writes the same files, byte for byte, as a build in one process."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import FakeClock, make_settings
from feeds_util import Item, items, site_feed

import bot.sources.parse as parse_module
from bot.app import build_app
from bot.errors import RenderError
from bot.feeds import FeedEntry
from bot.feeds import build_feeds as write_feeds
from bot.jobs import build_feeds
from bot.pipeline import poll
from bot.render import Renderer
from bot.render_pool import RenderPool, pool_context
from bot.settings import Env, FeedSettings, Settings, sample_feed_path
from bot.sources.memory import MemorySource

# The sample's real summaries (Markdown, LaTeX, tables, images), repeated under new keys.
REAL = parse_module.parse_feed(sample_feed_path().read_bytes(), "sample").summaries


def real_items(n: int) -> list[Item]:
    return [
        Item(key=it.key, title=REAL[i % len(REAL)].title, text=REAL[i % len(REAL)].text, edited=it.edited)
        for i, it in enumerate(items(n))
    ]


def build(tmp_path: Path, n: int, *, workers: int, min_batch: int) -> tuple[dict[str, bytes], int, int]:
    """Every file a first build after a first poll of n summaries writes, how many the pool's workers rendered, and
    how many of those were started while the file before was written."""
    settings = make_settings(
        tmp_path,
        arxiv={"enabled": False},
        feeds={"archive_page_size": 8, "size": 5},
        render={"workers": workers},
    )
    app = build_app(settings, source=MemorySource(site_feed(real_items(n))), clock=FakeClock(), arxiv=False)
    try:
        poll(app, backfill=0)
        pool = RenderPool(settings, min_batch=min_batch)
        build_feeds(app, pool=pool)
        rendered, prefetched = pool.rendered, pool.prefetched
        again = RenderPool(settings, min_batch=min_batch)
        build_feeds(app, force=True, pool=again)
    finally:
        app.close()
    assert again.rendered == 0, "a second build takes every rendering from the cache the first one wrote"
    public = settings.public_dir
    files = {str(p.relative_to(public)): p.read_bytes() for p in sorted(public.rglob("*")) if p.is_file()}
    return files, rendered, prefetched


def test_a_build_with_the_pool_writes_the_files_a_build_without_it_writes(tmp_path: Path) -> None:
    n = 30
    pooled, in_workers, ahead = build(tmp_path / "pool", n, workers=2, min_batch=2)
    alone, none, _ = build(tmp_path / "alone", n, workers=1, min_batch=2)
    # The pool did the work: the summaries of every file with 2 or more to render went to the workers,
    # those of each archive page while the file before it was written.
    assert n - 5 <= in_workers <= n
    assert ahead >= 3 * 8
    assert none == 0
    assert pooled.keys() == alone.keys()
    assert len([k for k in pooled if k.startswith("archive/")]) >= 3
    for name, data in alone.items():
        assert pooled[name] == data, name
    assert b"<math" in b"".join(pooled.values()) or b"&lt;math" in b"".join(pooled.values())


def test_few_renders_stay_in_the_calling_process(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, render={"workers": 2})
    with RenderPool(settings, min_batch=3) as pool:
        assert pool.render(REAL[:2]) is None
        assert pool._executor is None  # never started
    with RenderPool(make_settings(tmp_path, render={"workers": 1}), min_batch=1) as pool:
        assert pool.render(REAL[:5]) is None


def test_a_spawned_pool_renders_what_the_renderer_renders(tmp_path: Path) -> None:
    # spawn pickles what the workers need: the settings themselves cannot be (mapping proxies).
    settings = make_settings(
        tmp_path, render={"workers": 2, "site_base_url": "https://example.org", "image_hosts": ("img.example.org",)}
    )
    renderer = Renderer(settings)
    with RenderPool(settings, min_batch=1, start_method="spawn") as pool:
        got = pool.render(REAL[:4])
    assert got == [renderer.html_and_text(s) for s in REAL[:4]]


def test_the_pool_forks_only_when_no_other_thread_runs() -> None:
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() != 1:
        pytest.skip("no fork here, or the test runner has a thread of its own")
    assert pool_context().get_start_method() == "fork"
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert pool_context().get_start_method() == "spawn"
    finally:
        stop.set()
        other.join()


def bare_entry(i: int) -> FeedEntry:
    link = f"https://www.shortscience.org/paper?bibtexKey=key{i}#user{i}"
    t = datetime(2024, 3, 1, 12, 0, tzinfo=UTC) + timedelta(days=i)
    return FeedEntry(
        guid=link, title=f"Paper {i}", author=f"Reader {i}", link=link, content_html="", summary_text="",
        published=t, updated=t, categories=("cs.LG",) if i % 2 else ("cs.CV",),
    )  # fmt: skip


def test_the_builder_announces_each_files_entries_before_it_fills_them(tmp_path: Path) -> None:
    settings = Settings(
        env=Env(bot_public_dir=str(tmp_path), public_base_url="https://feeds.example.org"),
        feeds=FeedSettings(archive_page_size=4, size=3),
    )
    calls: list[tuple[str, list[str]]] = []

    def fill(entries: Sequence[FeedEntry]) -> list[FeedEntry]:
        calls.append(("fill", [e.guid for e in entries]))
        return [dataclasses.replace(e, content_html=f"<p>{e.title}</p>") for e in entries]

    def ahead(entries: Sequence[FeedEntry]) -> None:
        calls.append(("ahead", [e.guid for e in entries]))

    for n in (17, 18):  # a first build, then one new summary: most files unchanged, skipped by the announcements too
        calls.clear()
        write_feeds([bare_entry(i) for i in range(n)], settings, fill=fill, ahead=ahead)
        fills = [i for i, (kind, _) in enumerate(calls) if kind == "fill"]
        assert len(fills) >= (5 if n == 17 else 2)
        for i in fills[1:]:
            assert calls[i - 1] == ("ahead", calls[i][1])


def test_a_worker_that_dies_fails_the_build_as_a_render_error(tmp_path: Path) -> None:
    import multiprocessing
    import os
    import signal

    settings = make_settings(tmp_path, render={"workers": 2})
    with RenderPool(settings, min_batch=1) as pool:
        assert pool.render(REAL[:2]) is not None
        workers = multiprocessing.active_children()
        assert workers
        for worker in workers:
            assert worker.pid is not None
            os.kill(worker.pid, signal.SIGKILL)
        for worker in workers:
            worker.join(10)
        with pytest.raises(RenderError, match="render worker process died"):
            pool.render(REAL[:4])
        assert pool._executor is None  # stopped: a next render starts new workers
        assert pool.render(REAL[:2]) is not None


def test_a_file_prefetched_is_read_from_the_store_once(tmp_path: Path) -> None:
    """The rows `ahead` reads to start the next file's renderings are the ones `fill` writes it from."""
    import re

    import sqlalchemy as sa

    settings = make_settings(
        tmp_path, arxiv={"enabled": False}, feeds={"archive_page_size": 8, "size": 5}, render={"workers": 2}
    )
    app = build_app(settings, source=MemorySource(site_feed(real_items(30))), clock=FakeClock(), arxiv=False)
    reads: list[tuple[object, ...]] = []

    def count(conn: object, cursor: object, statement: str, parameters: object, *args: object) -> None:
        if re.search(r"FROM summaries\s+WHERE summaries\.id IN", statement):
            reads.append(tuple(parameters) if isinstance(parameters, (tuple, list)) else (parameters,))

    try:
        poll(app, backfill=0)
        sa.event.listen(app.store.engine, "before_cursor_execute", count)
        pool = RenderPool(settings, min_batch=2)
        build_feeds(app, pool=pool)
    finally:
        app.close()
    assert pool.prefetched >= 3 * 8, "archive pages were prefetched"
    assert len(reads) >= 4
    assert len(set(reads)) == len(reads), "a file's summaries were read again after being read ahead"
