"""Dispatch lanes (`dispatch.lanes`): posts to a live channel without pacing or caps go out several at once;
a capped channel, or one lane, posts one at a time; a kill with two posts on the network loses and
duplicates nothing."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fake_x import FakeX, Fault
from feeds_util import items, site_feed
from procs_util import BotProcess, bot_env, exactly_once, run_bot, stand_ins, wait_until, x_posts_per_link

from bot.app import build_app
from bot.channels import CHANNELS
from bot.dispatcher import Dispatcher
from bot.pipeline import poll
from bot.records import DeliveryState
from bot.settings import load_settings
from bot.store import Store

TWEETS = "/2/tweets"
X_ONLY = {f"channels.{c}": {"enabled": False} for c in CHANNELS if c != "twitter"}


def _x_setup(tmp_path: Path, db_url: str, n: int, **config: dict[str, Any]) -> tuple[FakeX, dict[str, str], list[str]]:
    summaries = items(n)
    feed = tmp_path / "feed.xml"
    feed.write_bytes(site_feed(summaries))
    x, graph = stand_ins()
    graph.stop()
    env = bot_env(tmp_path, db_url, x=x, feed=feed, config={**X_ONLY, **config})
    return x, env, [s.guid for s in summaries]


def _dispatch_while_held(env: dict[str, str], x: FakeX, *, held: int) -> tuple[int, int]:
    """Run one dispatch pass in-process while X holds its answers; (answers held at once, posts asked) once
    `held` are held or half a second passed, then release and finish the pass."""
    app = build_app(load_settings(env), arxiv=False)
    try:
        poll(app, backfill=10)
        pass_ = threading.Thread(target=lambda: Dispatcher(app).run_once())
        pass_.start()
        try:
            wait_until(lambda: x.held >= 1, timeout=30, why="no post reached X")
            deadline = time.monotonic() + 0.5
            while x.held < held and time.monotonic() < deadline:
                time.sleep(0.01)
            seen = (x.held, len(x.requests_to("POST", TWEETS)))
        finally:
            x.release()
            pass_.join(timeout=60)
        assert all(d.state is DeliveryState.SENT for d in app.store.deliveries(channel="twitter"))
        return seen
    finally:
        app.close()


def test_two_lanes_have_two_posts_on_the_network_at_once(tmp_path: Path, db_url: str) -> None:
    x, env, links = _x_setup(tmp_path, db_url, 4, dispatch={"lanes": 2})
    try:
        x.fail(Fault(hold=True, path=TWEETS), times=2)
        held, asked = _dispatch_while_held(env, x, held=2)
        assert (held, asked) == (2, 2)
        assert exactly_once(x_posts_per_link(x), links) == []
    finally:
        x.stop()


@pytest.mark.parametrize(
    "config",
    [{"dispatch": {"lanes": 1}}, {"dispatch": {"lanes": 2}, "channels.twitter": {"daily_cap": 100}}],
    ids=["one-lane", "capped-channel"],
)
def test_one_post_at_a_time_with_one_lane_or_on_a_capped_channel(
    config: dict[str, dict[str, Any]], tmp_path: Path, db_url: str
) -> None:
    x, env, links = _x_setup(tmp_path, db_url, 3, **config)
    try:
        x.fail(Fault(hold=True, path=TWEETS), times=2)
        held, asked = _dispatch_while_held(env, x, held=2)
        assert (held, asked) == (1, 1)  # the second post waits for the first answer
        assert exactly_once(x_posts_per_link(x), links) == []
    finally:
        x.stop()


@pytest.mark.slow
def test_sigkill_with_two_posts_on_the_network_loses_and_duplicates_nothing(tmp_path: Path, db_url: str) -> None:
    x, env, links = _x_setup(tmp_path, db_url, 4, dispatch={"lanes": 2})
    store = Store.open(db_url)
    proc: BotProcess | None = None
    try:
        run_bot(env, "poll", "--backfill", "4")
        x.fail(Fault(hold=True, path=TWEETS), times=2)  # both made by X, neither answered
        proc = BotProcess(env, tmp_path / "dispatch-1.log", "dispatch")
        wait_until(lambda: x.held == 2, timeout=60, why=lambda: f"two posts were not held:\n{proc.text()}")
        proc.p.send_signal(signal.SIGKILL)
        proc.p.wait(timeout=30)
        x.release()
        states = sorted(d.state.value for d in store.deliveries(channel="twitter"))
        assert states == ["in_flight", "in_flight", "pending", "pending"]

        out = run_bot(env, "dispatch").stdout
        assert "2 reconciled" in out and "2 sent" in out, out
        assert exactly_once(x_posts_per_link(x), links) == []
        assert all(d.state is DeliveryState.SENT for d in store.deliveries(channel="twitter"))
    finally:
        if proc is not None:
            proc.close()
        store.close()
        x.stop()
