"""The dispatcher with fake publishers passed in: states, retries, caps, pauses, reconciliation, dry-run output."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import FakeClock
from feeds_util import items, site_feed

from bot.channels.fake import FakePublisher
from bot.dispatcher import Dispatcher
from bot.errors import AuthPublishError, PermanentPublishError, TransientPublishError
from bot.pipeline import poll
from bot.records import Delivery, DeliveryState, Post
from bot.settings import Settings, with_overrides
from bot.status import render_status, run_check
from bot.store import Store


def setup(
    make_app: Any, settings: Settings, n: int = 3, **publishers: FakePublisher
) -> tuple[Any, dict[str, FakePublisher]]:
    pubs = {"twitter": FakePublisher("twitter"), "facebook": FakePublisher("facebook"), **publishers}
    app, _ = make_app(site_feed(items(6)), settings=settings, publishers=pubs)
    poll(app, backfill=n)
    return app, pubs


def states(app: Any) -> dict[tuple[str, str], str]:
    return {(d.guid, d.channel): d.state.value for d in app.store.deliveries()}


def test_dry_run_writes_the_documented_json_lines(make_app: Any, settings: Settings, clock: FakeClock) -> None:
    app, _ = make_app(site_feed(items(6)), settings=settings)
    poll(app, backfill=2)
    report = Dispatcher(app).run_once()
    assert report.sent == 4
    lines = [json.loads(x) for x in (settings.outbox_dir / "twitter.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    for line in lines:
        assert {"summary_id", "channel", "text", "url", "created_at"} <= set(line)
        assert line["channel"] == "twitter" and line["url"] in line["text"]
    # oldest of the two first, like the site published them
    assert [x["summary_id"] for x in lines] == [items(6)[1].guid, items(6)[0].guid]
    assert all(s == "sent" for s in states(app).values())
    assert Dispatcher(app).run_once().sent == 0
    assert len((settings.outbox_dir / "twitter.jsonl").read_text().splitlines()) == 2


def test_transient_error_retries_with_backoff_then_dies(make_app: Any, settings: Settings, clock: FakeClock) -> None:
    settings = with_overrides(settings, "dispatch", max_attempts=3, backoff_base_seconds=60)
    faults = [TransientPublishError("503", status=503) for _ in range(3)]
    app, _pubs = setup(make_app, settings, 1, twitter=FakePublisher("twitter", faults=faults))
    r = Dispatcher(app).run_once()
    assert (r.sent, r.retried) == (1, 1)  # facebook went out; twitter did not block it
    d = app.store.deliveries(channel="twitter")[0]
    assert d.state is DeliveryState.PENDING and clock.now + timedelta(seconds=30) <= d.due_at <= clock.now + timedelta(
        seconds=60
    )
    assert Dispatcher(app).run_once().retried == 0  # not due yet
    clock.now = d.due_at
    Dispatcher(app).run_once()
    clock.now = app.store.deliveries(channel="twitter")[0].due_at
    r = Dispatcher(app).run_once()
    d = app.store.deliveries(channel="twitter")[0]
    assert r.failed == 1 and d.state is DeliveryState.DEAD and d.attempts == 3
    attempts = app.store.attempts(d.id)
    assert [a.outcome for a in attempts] == ["transient"] * 3 and attempts[0].http_status == 503


def test_rate_limit_reset_time_is_honoured(make_app: Any, settings: Settings, clock: FakeClock) -> None:
    reset = clock.now + timedelta(minutes=14)
    app, _ = setup(
        make_app,
        settings,
        1,
        twitter=FakePublisher("twitter", faults=[TransientPublishError("429", status=429, code=88, retry_at=reset)]),
    )
    Dispatcher(app).run_once()
    assert app.store.deliveries(channel="twitter")[0].due_at == reset


def test_retry_sends_exactly_the_same_text(make_app: Any, settings: Settings, clock: FakeClock) -> None:
    app, pubs = setup(
        make_app, settings, 1, twitter=FakePublisher("twitter", faults=[TransientPublishError("timeout")])
    )
    Dispatcher(app).run_once()
    first_text = app.store.stored_post(app.store.deliveries(channel="twitter")[0].id).text
    clock.advance(hours=1)
    Dispatcher(app).run_once()
    assert pubs["twitter"].posts[0].text == first_text


def test_permanent_error_fails_with_reason(make_app: Any, settings: Settings, clock: FakeClock) -> None:
    err = PermanentPublishError(
        "You are not allowed to create a Tweet with duplicate content.", status=403, duplicate=True
    )
    app, _ = setup(make_app, settings, 1, twitter=FakePublisher("twitter", faults=[err]))
    Dispatcher(app).run_once()
    d = app.store.deliveries(channel="twitter")[0]
    assert d.state is DeliveryState.FAILED and "duplicate content" in (d.last_error or "")
    assert "duplicate content" in render_status(app)


def test_auth_error_pauses_only_that_channel_until_check_passes(
    make_app: Any, settings: Settings, clock: FakeClock
) -> None:
    import dataclasses

    env = dataclasses.replace(
        settings.env,
        twitter_api_key="k-1234",
        twitter_api_secret="s-1234",
        twitter_access_token="t-1234",
        twitter_access_token_secret="ts-1234",
    )
    settings = dataclasses.replace(settings, env=env)
    tw = FakePublisher(
        "twitter", faults=[AuthPublishError("X rejected the credentials (401): renew TWITTER_ACCESS_TOKEN", status=401)]
    )
    app, pubs = setup(make_app, settings, 3, twitter=tw)
    r = Dispatcher(app).run_once()
    assert r.paused == ["twitter"] and len(pubs["facebook"].posts) == 3 and tw.posts == []
    assert all(d.state is DeliveryState.PENDING for d in app.store.deliveries(channel="twitter"))
    assert "PAUSED: X rejected the credentials" in render_status(app)
    Dispatcher(app).run_once()
    assert tw.posts == []  # still paused
    tw.check_result = AuthPublishError("still bad", status=401)
    ok, lines = run_check(app)
    assert not ok and any("twitter: FAILED: still bad" in line for line in lines)
    tw.check_result = "ok: @shortscience"
    ok, lines = run_check(app)
    assert ok and any("twitter: resumed" in line for line in lines)
    Dispatcher(app).run_once()
    assert len(tw.posts) == 3


def test_daily_cap_holds_deliveries_until_next_day(make_app: Any, settings: Settings, clock: FakeClock) -> None:
    settings = with_overrides(settings, "channels.twitter", daily_cap=2)
    app, pubs = setup(make_app, settings, 5)
    r = Dispatcher(app).run_once()
    assert len(pubs["twitter"].posts) == 2 and len(pubs["facebook"].posts) == 5
    assert "daily cap of 2 reached" in r.waiting["twitter"]
    clock.advance(hours=24)
    Dispatcher(app).run_once()
    assert len(pubs["twitter"].posts) == 4  # nothing dropped, two more the next day


def test_min_interval_paces_posts(make_app: Any, settings: Settings, clock: FakeClock) -> None:
    settings = with_overrides(settings, "channels.facebook", min_interval_minutes=30)
    app, pubs = setup(make_app, settings, 3)
    Dispatcher(app).run_once()
    assert len(pubs["facebook"].posts) == 1
    clock.advance(minutes=29)
    Dispatcher(app).run_once()
    assert len(pubs["facebook"].posts) == 1
    clock.advance(minutes=1)
    Dispatcher(app).run_once()
    assert len(pubs["facebook"].posts) == 2


def in_flight(app: Any, clock: FakeClock, worker: str, lease: timedelta) -> tuple[Delivery, Post]:
    """What a worker does before its network call: reserve the next twitter delivery, mark it in flight with its
    post."""
    reserved = app.store.reserve(now=clock.now, channels=["twitter"], worker=worker, lease=lease)
    assert reserved is not None
    post = app.renderer.post("twitter", reserved.summary.summary, None)
    assert app.store.start_sending(reserved.delivery.id, worker=worker, post=post, now=clock.now, lease=lease)
    return reserved.delivery, post


def test_in_flight_of_dead_worker_becomes_uncertain_and_is_reconciled_with_proof(
    make_app: Any, settings: Settings, clock: FakeClock
) -> None:
    app, pubs = setup(make_app, settings, 2)
    tw = pubs["twitter"]
    # A worker on another host marked one in flight and sent it, then died before recording it.
    d, post = in_flight(app, clock, "nohost-never-matches:1:1", timedelta(minutes=5))
    tw.publish(post)
    # Not yet expired: another host's live claim is left alone.
    Dispatcher(app).run_once()
    assert app.store.delivery(d.id).state is DeliveryState.IN_FLIGHT
    clock.advance(minutes=6)
    r = Dispatcher(app).run_once()
    assert r.reconciled == 1 and app.store.delivery(d.id).state is DeliveryState.SENT
    assert sum(1 for p in tw.posts if p.summary_guid == d.guid) == 1
    assert [a.outcome for a in app.store.attempts(d.id)] == ["reconciled"]


def test_uncertain_without_proof_is_held_for_operator_then_retry_or_skip(
    make_app: Any, settings: Settings, clock: FakeClock
) -> None:
    app, pubs = setup(make_app, settings, 2)
    d1, _ = in_flight(app, clock, "other:1:1", timedelta(seconds=10))
    d2, _ = in_flight(app, clock, "other:1:1", timedelta(seconds=10))
    clock.advance(minutes=1)
    r = Dispatcher(app).run_once()
    assert r.held == 2 and pubs["twitter"].posts == []  # never blindly re-sent
    assert {app.store.delivery(d.id).state for d in (d1, d2)} == {DeliveryState.UNCERTAIN}
    status = render_status(app)
    assert f"#{d1.id} twitter uncertain" in status and f"retry {d1.id}" in status
    app.store.operator_retry(d1.id, now=clock.now)
    app.store.operator_skip(d2.id, now=clock.now)
    Dispatcher(app).run_once()
    assert [p.summary_guid for p in pubs["twitter"].posts] == [d1.guid]
    assert app.store.delivery(d2.id).state is DeliveryState.SKIPPED


def test_reserved_but_never_sent_goes_out_once_its_lease_ends(
    make_app: Any, settings: Settings, clock: FakeClock
) -> None:
    app, pubs = setup(make_app, settings, 1)
    # A worker on another host reserved it (still pending: nothing went out) and vanished.
    reserved = app.store.reserve(now=clock.now, channels=["twitter"], worker="other:1:1", lease=timedelta(seconds=10))
    assert reserved is not None
    d = reserved.delivery
    Dispatcher(app).run_once()
    assert pubs["twitter"].posts == []  # a live reservation is left alone
    clock.advance(minutes=1)
    Dispatcher(app).run_once()
    assert app.store.delivery(d.id).state is DeliveryState.SENT and len(pubs["twitter"].posts) == 1


def test_a_pooled_connection_the_server_dropped_while_idle_is_replaced_before_use(
    db_url: str, monkeypatch: Any
) -> None:
    # Not pinged at every checkout (a round trip per transaction): only after sitting idle.
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite has no server to drop a connection")
    store = Store.open(db_url)
    try:
        assert store.ping()
        with store.engine.connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        admin = sa.create_engine(db_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        admin.dispose()
        monkeypatch.setattr("bot.store.engine.PING_AFTER_IDLE_SECONDS", 0.0)
        # The pool holds the dead connection; the checkout's ping finds it dead and opens another.
        assert store.count_summaries() == 0
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() != pid
    finally:
        store.close()
