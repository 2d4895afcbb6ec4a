"""Crash tests for Mastodon and Bluesky with real processes, as tests/test_crash_networks.py does for X and
Facebook (issue 15): SIGKILL `dispatch` after the network accepted a post but before the bot committed it;
after a restart, reconciliation proves the post and the network holds exactly one post per summary.

The stand-ins run in threads of the test; the bot runs as `python -m bot dispatch`
processes with the real Mastodon.py and atproto clients pointed at them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_bluesky import FakeBluesky, held_after_create
from fake_mastodon import FakeMastodon
from fake_x import FakeHTTPServer
from feeds_util import items, site_feed
from procs_util import BotProcess, bot_env, exactly_once, kill_between_accept_and_commit, run_bot

from bot.records import DeliveryState
from bot.store import Store

MASTODON_TOKEN = "mastodon-crash-token"
BLUESKY_PASSWORD = "bluesky-crash-app-password"
#: every channel but the one under test is off: no delivery is queued for them
ALL = ("twitter", "facebook", "mastodon", "bluesky")


@pytest.fixture
def network(request: pytest.FixtureRequest) -> Iterator[FakeHTTPServer]:
    fake: FakeHTTPServer = (
        FakeMastodon(token=MASTODON_TOKEN) if request.param == "mastodon" else FakeBluesky(password=BLUESKY_PASSWORD)
    )
    fake.start()
    try:
        yield fake
    finally:
        fake.release()
        fake.stop()


def network_env(channel: str, fake: FakeHTTPServer) -> dict[str, str]:
    if isinstance(fake, FakeMastodon):
        return {"MASTODON_API_BASE_URL": fake.url, "MASTODON_ACCESS_TOKEN": MASTODON_TOKEN}
    assert isinstance(fake, FakeBluesky)
    # SECRET_KEY: the Bluesky session is kept in the database, encrypted.
    return {
        "BLUESKY_HANDLE": fake.handle,
        "BLUESKY_APP_PASSWORD": BLUESKY_PASSWORD,
        "BLUESKY_SERVICE_URL": fake.url,
        "SECRET_KEY": "crash-test-secret-key",
    }


def posts_per_link(fake: FakeHTTPServer) -> Counter[str]:
    """How many posts the network holds per summary link (Mastodon: in the text; Bluesky: the link card)."""
    with fake.lock:
        if isinstance(fake, FakeMastodon):
            return Counter(
                w for s in fake.statuses for w in s["_text"].split() if w.startswith("https://www.shortscience.org/")
            )
        assert isinstance(fake, FakeBluesky)
        return Counter(r["value"]["embed"]["external"]["uri"] for r in fake.records.values())


def post_count(fake: FakeHTTPServer) -> int:
    with fake.lock:
        if isinstance(fake, FakeMastodon):
            return len(fake.statuses)
        assert isinstance(fake, FakeBluesky)
        return len(fake.records)


@pytest.mark.slow
@pytest.mark.parametrize("network", ["mastodon", "bluesky"], indirect=True)
def test_sigkill_between_the_networks_accept_and_the_commit(
    network: FakeHTTPServer, tmp_path: Path, db_url: str
) -> None:
    fake = network
    channel = "mastodon" if isinstance(fake, FakeMastodon) else "bluesky"
    feed = tmp_path / "feed.xml"
    summaries = items(3)
    feed.write_bytes(site_feed(summaries))
    links = [s.guid for s in summaries]
    others_off = {f"channels.{c}": {"enabled": c == channel} for c in ALL}
    env = {**bot_env(tmp_path, db_url, feed=feed, config=others_off), **network_env(channel, fake)}
    store = Store.open(db_url)
    proc: BotProcess | None = None
    try:
        run_bot(env, "poll", "--backfill", "3")
        # The second post is made, then its answer is held back: the dispatcher sits between
        # the network's accept and its own commit when we kill it.
        path = "/api/v1/statuses" if channel == "mastodon" else held_after_create().path
        proc = kill_between_accept_and_commit(env, tmp_path / "dispatch-1.log", fake, store, channel, path)

        assert post_count(fake) == 2
        by_state = {d.state: d for d in store.deliveries(channel=channel)}
        assert sorted(s.value for s in by_state) == ["in_flight", "pending", "sent"]
        killed = by_state[DeliveryState.IN_FLIGHT]
        assert killed.guid == links[1]

        out = run_bot(env, "dispatch").stdout
        assert "1 reconciled" in out and "1 sent" in out, out

        assert exactly_once(posts_per_link(fake), links) == []
        assert all(d.state is DeliveryState.SENT for d in store.deliveries(channel=channel))
        assert [a.outcome for a in store.attempts(killed.id)] == ["reconciled"]
        if isinstance(fake, FakeMastodon):
            # The proof: the account's statuses list it (read back), with the id the instance gave it.
            assert fake.requests_to("GET", f"/api/v1/accounts/{fake.account['id']}/statuses")
            assert store.delivery(killed.id).post_id == fake.statuses[1]["id"]
        else:
            # The proof: the record under the delivery's own key, read with getRecord; one login for both runs.
            assert fake.requests_to("GET", "/xrpc/com.atproto.repo.getRecord")
            assert store.delivery(killed.id).post_id == list(fake.records.values())[1]["uri"]
            assert fake.sessions_created == 1

        # Once more: nothing is due, nothing is posted.
        run_bot(env, "dispatch")
        assert post_count(fake) == 3
    finally:
        if proc is not None:
            proc.close()
        store.close()
