"""Polling against hostile sources (issue 13): one bad character, a dripping server, a flood of new items."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from conftest import FakeClock
from feeds_util import items, site_feed

from bot.app import build_app
from bot.errors import SourceError
from bot.pipeline import poll
from bot.records import FetchResult, SourceState
from bot.settings import Settings, with_overrides

# --- one XML-invalid character (point 9) ------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [b"\x0b", "\ufffe".encode(), "\uffff".encode(), b"&#x0B;", b"&#11;", b"&#xFFFE;", b"&#0;"],
    ids=["U+000B", "U+FFFE", "U+FFFF", "ref-x0B", "ref-11", "ref-xFFFE", "ref-0"],
)
def test_one_xml_invalid_character_does_not_stop_the_poll(
    make_app: Any, settings: Settings, clock: FakeClock, bad: bytes
) -> None:
    feed = items(4)
    feed[1].text = "Before MARKER after."
    body = site_feed(feed).replace(b"MARKER", bad)
    app, _ = make_app(body, settings=settings)
    report = poll(app, backfill=10)
    assert report.new == 4 and report.queued == 8 and not report.problems
    stored = app.store.summary_by_guid(feed[1].guid)
    assert stored is not None and stored.summary.text == "Before  after."


def test_an_item_still_broken_is_skipped_alone_with_a_logged_problem(
    make_app: Any, settings: Settings, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    feed = items(4)
    feed[2].text = "MARKER"
    body = site_feed(feed).replace(b"MARKER", b"<b>never closed")
    app, _ = make_app(body, settings=settings)
    with caplog.at_level(logging.WARNING):
        report = poll(app, backfill=10)
    assert report.new == 3 and report.queued == 6
    assert {d.guid for d in app.store.deliveries()} == {feed[0].guid, feed[1].guid, feed[3].guid}
    assert len(report.problems) == 1 and feed[2].guid in report.problems[0] and "not well-formed" in report.problems[0]
    assert any(feed[2].guid in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


# --- a download that takes long (point 7) -----------------------------------------------------------


class SlowSource:
    """A source whose download takes `minutes` of the test clock, then fails or answers."""

    url = "memory://slow"

    def __init__(self, clock: FakeClock, minutes: float, body: bytes | None = None) -> None:
        self.clock, self.minutes, self.body = clock, minutes, body

    def fetch(self, state: SourceState, *, now: datetime) -> FetchResult:
        self.clock.advance(minutes=self.minutes)
        if self.body is None:
            raise SourceError(f"{self.url}: the download took longer than {self.minutes * 60:g} s")
        return FetchResult(body=self.body, etag="e", status=200)


def test_the_next_try_after_a_slow_failed_download_is_not_already_past(
    request: pytest.FixtureRequest, settings: Settings, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # The first retry waits 30-60 s; the download itself took two minutes.
    app = build_app(settings, source=SlowSource(clock, minutes=2), clock=clock, arxiv=False)
    request.addfinalizer(app.close)
    with caplog.at_level(logging.ERROR), pytest.raises(SourceError):
        poll(app)
    state = app.store.source_state("memory://slow")
    assert state.next_poll_at is not None and state.next_poll_at > clock()
    logged = next(r.getMessage() for r in caplog.records if "next try" in r.getMessage())
    assert f"next try {state.next_poll_at.isoformat(timespec='seconds')}" in logged


def test_the_next_poll_after_a_slow_good_download_counts_from_its_end(
    request: pytest.FixtureRequest, settings: Settings, clock: FakeClock
) -> None:
    interval = settings.source.poll_interval_minutes
    app = build_app(
        settings, source=SlowSource(clock, minutes=interval, body=site_feed(items(2))), clock=clock, arxiv=False
    )
    request.addfinalizer(app.close)
    poll(app)
    state = app.store.source_state("memory://slow")
    assert state.next_poll_at is not None and state.next_poll_at >= clock() + timedelta(minutes=interval)


# --- the flood guard (point 8) ----------------------------------------------------------------------


def _flood(make_app: Any, settings: Settings, clock: FakeClock, new: int) -> tuple[Any, list[Any]]:
    """A source polled once (nothing queued), then found with `new` more summaries."""
    feed = items(new + 2)
    app, source = make_app(site_feed(feed[new:]), settings=settings)
    poll(app)
    clock.advance(minutes=15)
    source.body = site_feed(feed)
    return app, feed[:new]


def test_the_flood_guard_queues_the_newest_and_holds_the_rest(
    make_app: Any, settings: Settings, clock: FakeClock
) -> None:
    assert settings.source.max_new_per_poll == 20  # the default
    app, new = _flood(make_app, settings, clock, 25)
    report = poll(app)
    assert (report.new, report.queued, report.held) == (25, 40, 5)
    assert (
        "5 older new ones held by the flood guard" in report.describe() and "python -m bot release" in report.describe()
    )
    assert {d.guid for d in app.store.deliveries()} == {s.guid for s in new[:20]}
    # Held ones are stored as any other: the feeds list them.
    assert {s.guid for s in new} <= {s.summary.guid for s in app.store.latest_summaries(with_text=False)}
    assert app.store.held_counts() == {"memory://feed": 5}
    # Polling again holds nothing more and queues nothing.
    source_again = poll(app)
    assert source_again.status == 304 and app.store.held_counts() == {"memory://feed": 5}


def test_release_queues_the_newest_held_first_then_the_rest(
    make_app: Any, settings: Settings, clock: FakeClock
) -> None:
    app, new = _flood(make_app, settings, clock, 25)
    poll(app)
    before = {d.id for d in app.store.deliveries()}
    done = app.store.release_held(now=clock(), channels=["twitter", "facebook"], source="memory://feed", limit=2)
    assert (done.summaries, done.deliveries, done.still_held) == (2, 4, 3)
    released = [d for d in app.store.deliveries(limit=1000) if d.id not in before]
    assert {d.guid for d in released} == {new[20].guid, new[21].guid}
    assert all(d.state.value == "pending" for d in released)
    assert app.store.release_held(now=clock(), channels=["twitter"], source="elsewhere").summaries == 0
    done = app.store.release_held(now=clock(), channels=["twitter"], discard=True)
    assert (done.summaries, done.deliveries, done.still_held) == (3, 0, 0)
    assert app.store.held_counts() == {}
    assert len(app.store.deliveries(limit=1000)) == 44


def test_the_first_poll_keeps_its_backfill_rule_whatever_the_flood_guard(
    make_app: Any, settings: Settings, clock: FakeClock
) -> None:
    app, _ = make_app(site_feed(items(40)), settings=settings)
    report = poll(app, backfill=30)
    assert (report.backfilled, report.queued, report.held) == (10, 60, 0)
    assert app.store.held_counts() == {}


def test_no_flood_guard_with_a_limit_of_zero(make_app: Any, settings: Settings, clock: FakeClock) -> None:
    app, _ = _flood(make_app, with_overrides(settings, "source", max_new_per_poll=0), clock, 25)
    report = poll(app)
    assert (report.queued, report.held) == (50, 0)


def test_the_held_column_migration_keeps_existing_summaries_unheld(db_url: str) -> None:
    """A database made before the flood guard (revision 0001) is upgraded in place, its summaries not held."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from bot.store import _MIGRATIONS, Store, make_engine

    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(_MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            conn.execute(sa.text("INSERT INTO sources (url, failures, items_seen) VALUES ('memory://feed', 0, 1)"))
            conn.execute(
                sa.text(
                    "INSERT INTO summaries (source_id, guid, title, author, text, link, categories, "
                    "content_hash, version,"
                    " edited_at, first_seen_at, changed_at, backfilled)"
                    " VALUES (1, 'g', 'T', 'a', 'x', 'https://x/g', '[]', 'h', 1, '2026-01-01', '2026-01-01', "
                    "'2026-01-01', false)"
                )
            )
    finally:
        engine.dispose()
    store = Store.open(db_url)
    try:
        assert store.held_counts() == {}
        assert store.summary_by_guid("g") is not None
    finally:
        store.close()
