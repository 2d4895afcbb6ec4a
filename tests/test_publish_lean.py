"""The first run's publish path does no work it does not need: the render cache is read once per delivery (with
the reservation), the render upsert is built once, and building the X publisher loads no cryptography."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conftest import REPO
from feeds_util import items, site_feed
from procs_util import X_KEY, X_TOKEN, bot_env, stand_ins

from bot.app import build_app
from bot.channels import CHANNELS
from bot.dispatcher import Dispatcher
from bot.pipeline import poll
from bot.settings import load_settings
from bot.store import Store
from bot.store import schema as t
from bot.store.engine import _upsert_statement

X_ONLY = {f"channels.{c}": {"enabled": False} for c in CHANNELS if c != "twitter"}


class CountingStore(Store):
    """The real store, counting the render cache's reads and writes."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.reads = 0
        self.writes = 0

    def cached_renders(self, ids_hashes: Mapping[int, str]) -> dict[int, tuple[str, str]]:
        self.reads += 1
        return super().cached_renders(ids_hashes)

    def put_renders(self, items: Any, *, now: datetime) -> None:
        self.writes += 1
        super().put_renders(items, now=now)


def test_a_first_dispatch_reads_the_render_cache_only_with_each_reservation(tmp_path: Path, db_url: str) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_bytes(site_feed(items(3)))
    x, graph = stand_ins()
    graph.stop()
    env = bot_env(tmp_path, db_url, x=x, feed=feed, config=X_ONLY)
    store = CountingStore(Store.open(db_url).engine)
    app = build_app(load_settings(env), arxiv=False, store=store)
    try:
        poll(app, backfill=3)
        assert Dispatcher(app).run_once().sent == 3
        # Each reservation found no render of its summary: rendered and cached, never looked up again.
        assert (store.reads, store.writes) == (0, 3)
        ids = {s.id: s.summary.content_hash for s in store.summaries_by_ids([d.summary_id for d in store.deliveries()])}
        assert len(store.cached_renders(ids)) == 3
        # The upsert, built once, still replaces an older version's render.
        first = min(ids)
        store.put_renders([(first, "newer", "<p>b</p>", "b")], now=datetime(2026, 1, 1, tzinfo=UTC))
        assert store.cached_renders({first: "newer"}) == {first: ("<p>b</p>", "b")}
    finally:
        app.close()
        x.stop()


def test_the_render_upsert_is_built_once() -> None:
    key = ("summary_id",)
    assert _upsert_statement("sqlite", t.renders, key) is _upsert_statement("sqlite", t.renders, key)
    assert _upsert_statement("postgresql", t.renders, key) is not _upsert_statement("sqlite", t.renders, key)


def test_building_the_x_publisher_loads_no_cryptography(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TWITTER_", "BOT_"))},
        "BOT_DATA_DIR": str(tmp_path / "var"),
        "TWITTER_API_KEY": X_KEY,
        "TWITTER_API_SECRET": "s",
        "TWITTER_ACCESS_TOKEN": X_TOKEN,
        "TWITTER_ACCESS_TOKEN_SECRET": "s",
    }
    code = (
        "import os, sys\n"
        "from bot.app import build_app\n"
        "from bot.settings import load_settings\n"
        "app = build_app(load_settings(dict(os.environ)), arxiv=False)\n"
        "print(app.publisher('twitter').live)\n"
        "print('cryptography' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]
