"""Crash tests per network with real processes: SIGKILL `dispatch` after X or the Page accepted a post
but before the bot committed it; after a restart, reconciliation proves the post and the network
holds exactly one post per summary (issue 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from feeds_util import items, site_feed
from procs_util import (
    BotProcess,
    bot_env,
    exactly_once,
    graph_posts_per_link,
    kill_between_accept_and_commit,
    run_bot,
    stand_ins,
    x_posts_per_link,
)

from bot.channels import CHANNELS
from bot.records import DeliveryState
from bot.store import Store


@pytest.mark.slow
@pytest.mark.parametrize("channel", ["twitter", "facebook"])
def test_sigkill_between_the_networks_accept_and_the_commit(channel: str, tmp_path: Path, db_url: str) -> None:
    feed = tmp_path / "feed.xml"
    summaries = items(3)
    feed.write_bytes(site_feed(summaries))
    links = [s.guid for s in summaries]
    x, graph = stand_ins()
    fake = x if channel == "twitter" else graph
    # Only the network under test: the other channels are off, so no delivery is queued for them.
    others_off = {f"channels.{c}": {"enabled": False} for c in CHANNELS if c != channel}
    env = bot_env(tmp_path, db_url, x=x, graph=graph, feed=feed, config=others_off)
    store = Store.open(db_url)
    proc: BotProcess | None = None
    try:
        run_bot(env, "poll", "--backfill", "3")
        # The second post is made, then its answer is held back: the dispatcher sits between
        # the network's accept and its own commit when we kill it.
        path = "/2/tweets" if channel == "twitter" else "/"
        proc = kill_between_accept_and_commit(env, tmp_path / "dispatch-1.log", fake, store, channel, path)

        assert len(fake.posts) == 2
        by_state = {d.state: d for d in store.deliveries(channel=channel)}
        assert sorted(s.value for s in by_state) == ["in_flight", "pending", "sent"]
        killed = by_state[DeliveryState.IN_FLIGHT]
        assert killed.guid == links[1]

        out = run_bot(env, "dispatch").stdout
        assert "1 reconciled" in out and "1 sent" in out, out

        counts = x_posts_per_link(x) if channel == "twitter" else graph_posts_per_link(graph)
        assert exactly_once(counts, links) == []
        assert all(d.state is DeliveryState.SENT for d in store.deliveries(channel=channel))
        outcomes = [a.outcome for a in store.attempts(killed.id)]
        assert outcomes == ["reconciled"], outcomes
        if channel == "twitter":
            # The proof: the account's posts since the delivery was queued list it (found by its
            # link); the text was never sent a second time.
            assert x.requests_to("GET", "/2/users/1/tweets")
            same_text = [r for r in x.requests_to("POST", "/2/tweets") if r.json()["text"] == killed.text]
            assert len(same_text) == 1
            assert store.delivery(killed.id).post_id == x.posts[1]["id"]
        else:
            # The proof: the Page's recent posts list it, with the id the Page gave it.
            assert graph.requests_to("GET", f"/v26.0/{graph.page_id}/posts")
            assert store.delivery(killed.id).post_id == graph.posts[1]["id"]

        # Once more: nothing is due, nothing is posted.
        run_bot(env, "dispatch")
        assert len(fake.posts) == 3
    finally:
        if proc is not None:
            proc.close()
        store.close()
        x.stop()
        graph.stop()


def test_facebook_reconciliation_reads_back_to_when_the_delivery_was_queued() -> None:
    # Other workers kept posting after the crash: ours is 60 posts down, past the first page.
    from datetime import UTC, datetime, timedelta

    from fake_graph import FakeGraph
    from procs_util import PAGE_ID, PAGE_TOKEN

    from bot.channels.facebook.publisher import FacebookPublisher
    from bot.records import Post
    from bot.settings import load_settings

    ours = Post("facebook", "guid-ours", "Our summary", "https://www.shortscience.org/paper?bibtexKey=ours#anon")
    with FakeGraph(page_id=PAGE_ID, access_token=PAGE_TOKEN) as graph:
        graph.add_post(ours.text, ours.link)
        for i in range(60):
            graph.add_post(f"Summary {i}", f"https://www.shortscience.org/paper?bibtexKey=k{i}#anon")
        settings = load_settings(
            {
                "FACEBOOK_PAGE_ID": PAGE_ID,
                "FACEBOOK_PAGE_ACCESS_TOKEN": PAGE_TOKEN,
                "FACEBOOK_GRAPH_URL": graph.url + "/",
            },
            load_dotenv=False,
        )
        publisher = FacebookPublisher(settings)
        assert publisher.reconcile(ours) is None  # one page of 25 does not reach it
        proof = publisher.reconcile(ours, since=datetime.now(UTC) - timedelta(minutes=5))
        assert proof is not None and proof.post_id == graph.posts[0]["id"]
        pages = graph.requests_to("GET", f"/v26.0/{PAGE_ID}/posts")[1:]
        assert [r.query.get("after") for r in pages] == [None, ["offset-25"], ["offset-50"]]
        assert len(graph.posts) == 61  # nothing was posted
