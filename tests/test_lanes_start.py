"""Extra dispatch lanes start only for a second delivery due on a channel that allows several posts at once:
a pass with nothing or one post due reserves from one lane only (no thread, no empty reservation query);
with more due, up to `dispatch.lanes` lanes reserve."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from feeds_util import items, site_feed
from procs_util import bot_env, exactly_once, stand_ins, x_posts_per_link

from bot.app import build_app
from bot.channels import CHANNELS
from bot.dispatcher import Dispatcher
from bot.pipeline import poll
from bot.records import DeliveryClaim
from bot.settings import load_settings
from bot.store import Store

X_ONLY = {f"channels.{c}": {"enabled": False} for c in CHANNELS if c != "twitter"}


class CountingStore(Store):
    """The real store, noting which claimant (each lane is one) asked for a reservation, and whether it got one."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.reservations: list[tuple[str, bool]] = []
        self._lock = threading.Lock()

    def reserve(self, *, now: datetime, channels: Sequence[str], worker: str, lease: timedelta) -> DeliveryClaim | None:
        got = super().reserve(now=now, channels=channels, worker=worker, lease=lease)
        with self._lock:
            self.reservations.append((worker, got is not None))
        return got


@pytest.mark.parametrize(("due", "lanes", "want_lanes"), [(0, 2, 1), (1, 2, 1), (2, 3, 2), (5, 3, 3)])
def test_a_lane_per_due_delivery_up_to_lanes(
    due: int, lanes: int, want_lanes: int, tmp_path: Path, db_url: str
) -> None:
    feed = tmp_path / "feed.xml"
    summaries = items(due) if due else items(1)
    feed.write_bytes(site_feed(summaries))
    x, graph = stand_ins()
    graph.stop()
    env = bot_env(tmp_path, db_url, x=x, feed=feed, config={**X_ONLY, "dispatch": {"lanes": lanes}})
    store = CountingStore(Store.open(db_url).engine)
    app = build_app(load_settings(env), arxiv=False, store=store)
    try:
        poll(app, backfill=due)  # backfill 0: the summary is stored, nothing is due
        report = Dispatcher(app).run_once()
        assert report.sent == due
        workers = {w for w, _ in store.reservations}
        assert len(workers) == want_lanes, store.reservations
        # Each lane asks once more than it gets (its last query finds nothing due): no lane asks in vain
        # beyond that one.
        assert sum(1 for _, got in store.reservations if not got) == want_lanes
        assert exactly_once(x_posts_per_link(x), [s.guid for s in summaries[:due]]) == []
    finally:
        app.close()
        x.stop()
