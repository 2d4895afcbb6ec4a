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
from bot.settings import Settings

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
    app = build_app(settings, source=SlowSource(clock, minutes=interval, body=site_feed(items(2))), clock=clock, arxiv=False)
    request.addfinalizer(app.close)
    poll(app)
    state = app.store.source_state("memory://slow")
    assert state.next_poll_at is not None and state.next_poll_at >= clock() + timedelta(minutes=interval)
