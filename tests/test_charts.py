"""The operator's charts: daily series from a known database, their SVG, the sparklines in `status`, the poll log."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from conftest import FakeClock
from feeds_util import items, site_feed
from lxml import etree

from bot.charts import (
    Chart,
    attempt_kind,
    build_charts,
    chart_svg,
    console_charts,
    sparkline,
    status_sparklines,
    window,
)
from bot.errors import SourceError
from bot.pipeline import poll
from bot.settings import Settings
from bot.status import render_status
from bot.store import Store
from bot.store import schema as t
from bot.store.charts import POLL_LOG_DAYS, AttemptRow

#: the fixed "now": the 30-day window is 2026-11-01 … 2026-11-30
NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
SVG = "http://www.w3.org/2000/svg"


def at(day: int, hour: int = 12, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def days_on(*spans: Iterable[int], n: int = 30) -> list[int]:
    """A 0/1 list with 1 at the given day indexes (index 0 = Nov 1)."""
    out = [0] * n
    for span in spans:
        for i in span:
            out[i] += 1
    return out


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url)
    yield s
    s.close()


def _deliveries(store: Store) -> None:
    """Deliveries and attempts at past dates, written directly (the dispatcher would take a month)."""
    with store.tx() as conn:
        sid = conn.execute(
            t.sources.insert().values(url="memory://feed", failures=0, items_seen=0)
        ).inserted_primary_key[0]
        for n in range(1, 9):
            conn.execute(
                t.summaries.insert().values(
                    id=n,
                    source_id=sid,
                    guid=f"g{n}",
                    title="T",
                    author="A",
                    text="x",
                    link=f"https://e.org/{n}",
                    categories=[],
                    content_hash="h",
                    version=1,
                    edited_at=at(1, month=10),
                    first_seen_at=at(1, month=10),
                    changed_at=at(1, month=10),
                    backfilled=False,
                )
            )

        def delivery(did: int, channel: str, state: str, sent_at: datetime | None = None) -> None:
            conn.execute(
                t.deliveries.insert().values(
                    id=did,
                    summary_id=did,
                    channel=channel,
                    revision=0,
                    state=state,
                    attempts=1,
                    due_at=at(1, month=10),
                    created_at=at(1, month=10),
                    updated_at=at(1, month=10),
                    sent_at=sent_at,
                )
            )

        delivery(1, "twitter", "sent", at(30, 9))
        delivery(2, "twitter", "sent", at(30, 14, 59))
        delivery(3, "twitter", "sent", at(1, 0))  # the window's first instant: in
        delivery(4, "twitter", "sent", datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC))  # a second before: out
        delivery(5, "facebook", "sent", at(15))
        delivery(6, "twitter", "dead")
        delivery(7, "facebook", "failed")
        delivery(8, "twitter", "pending")

        def attempt(did: int, when: datetime, outcome: str) -> None:
            conn.execute(t.attempts.insert().values(delivery_id=did, at=when, outcome=outcome, message=""))

        attempt(1, at(30, 9), "sent")
        # dead after three transient errors: two retries, then the failure that ended it
        attempt(6, at(10, 10), "transient")
        attempt(6, at(11, 10), "transient")
        attempt(6, at(12, 10), "transient")
        attempt(7, at(12, 8), "transient")
        attempt(7, at(12, 9), "permanent")
        attempt(8, datetime(2026, 10, 31, 23, 0, tzinfo=UTC), "transient")  # before the window
        attempt(8, at(20), "auth")


def _subscribers(store: Store) -> None:
    add = store.add_subscriber
    add("a@example.org", now=at(20, month=10), confirmed=True, categories=[], source="cli")
    store.request_subscription("b@example.org", categories=[], now=at(5, 10), source="web")
    store.confirm_subscriber("b@example.org", now=at(7, 10), source="web")
    add("c@example.org", now=at(10, 8), confirmed=False, categories=[], source="cli")
    store.unsubscribe("c@example.org", now=at(10, 20))
    add("d@example.org", now=at(1, 6), confirmed=True, categories=[], source="cli")
    with store.tx() as conn:  # a bounce takes a digest run; the row is what it leaves
        conn.execute(
            t.subscribers.update()
            .where(t.subscribers.c.address == "d@example.org")
            .values(state="bounced", bounced_at=at(20, 3))
        )
    add("e@example.org", now=at(30, 16), confirmed=True, categories=[], source="cli")  # after "now"
    add("f@example.org", now=at(1, month=10), confirmed=True, categories=[], source="cli")
    store.unsubscribe("f@example.org", now=at(2, 12))
    store.confirm_subscriber("f@example.org", now=at(25, 12), source="web")  # came back


def _polls(store: Store) -> None:
    for when, result in [
        (at(30, 10), "ok"),
        (at(30, 10, 15), "not_modified"),
        (at(30, 10, 30), "not_modified"),
        (at(29, 23), "failed"),
        (datetime(2026, 10, 31, 23, 45, tzinfo=UTC), "ok"),
        (at(30, 15, 1), "ok"),
    ]:
        store.log_poll("memory://feed", now=when, result=result)


@pytest.fixture
def known(store: Store) -> Store:
    _deliveries(store)
    _subscribers(store)
    _polls(store)
    return store


def series(chart: Chart) -> dict[str, list[int]]:
    return {name: list(values) for name, values in chart.series}


def test_window_is_the_utc_days_ending_with_now() -> None:
    days = window(NOW, 30)
    assert (len(days), days[0].isoformat(), days[-1].isoformat()) == (30, "2026-11-01", "2026-11-30")
    # `now` in another zone counts by its UTC day
    later = datetime(2026, 12, 1, 0, 30, tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))
    assert window(later, 1)[0].isoformat() == "2026-12-01"


def test_posts_per_day_per_channel(known: Store) -> None:
    posts, *_ = build_charts(known, NOW, 30)
    assert posts.days == window(NOW, 30)
    assert series(posts) == {
        "facebook": days_on([14]),
        "twitter": [1] + [0] * 28 + [2],  # Nov 1 00:00 counts, Oct 31 23:59:59 does not
    }
    assert [name for name, _ in posts.series] == ["facebook", "twitter"]


def test_failures_and_retries_per_day(known: Store) -> None:
    _, failures, *_ = build_charts(known, NOW, 30)
    assert series(failures) == {
        # Nov 12: the transient error that made #6 dead and #7's permanent one; Nov 20: credentials refused
        "failures": [0] * 11 + [2] + [0] * 7 + [1] + [0] * 10,
        "retries": days_on([9], [10], [11]),
    }


def test_subscribers_by_state_at_the_end_of_each_day(known: Store) -> None:
    _, _, subscribers, _ = build_charts(known, NOW, 30)
    assert series(subscribers) == {
        # f, whose first confirmation was overwritten when it came back, reads pending before it left
        "pending": days_on([0], [4, 5]),
        "confirmed": days_on(range(30), range(6, 30), range(0, 19), range(24, 30)),
        "unsubscribed": days_on(range(9, 30), range(1, 24)),
        "bounced": days_on(range(19, 30)),
    }


def test_polls_per_day_by_result(known: Store) -> None:
    *_, polls = build_charts(known, NOW, 30)
    assert series(polls) == {
        "ok": days_on([29]),  # 15:01 is after now, Oct 31 before the window
        "not modified (304)": [0] * 29 + [2],
        "failed": days_on([28]),
    }


def test_an_empty_database_gives_zero_filled_series(store: Store) -> None:
    posts, failures, subscribers, polls = build_charts(store, NOW, 90)
    assert posts.series == ()
    for chart in (failures, subscribers, polls):
        assert all(values == (0,) * 90 for _, values in chart.series) and len(chart.days) == 90


@pytest.mark.parametrize(
    ("outcome", "final_of_dead", "kind"),
    [
        ("transient", False, "retries"),
        ("transient", True, "failures"),
        ("permanent", False, "failures"),
        ("duplicate", False, "failures"),
        ("auth", False, "failures"),
        ("sent", False, None),
        ("reconciled", False, None),
        ("operator", False, None),
    ],
)
def test_attempt_kind(outcome: str, final_of_dead: bool, kind: str | None) -> None:
    assert attempt_kind(AttemptRow(NOW, outcome, final_of_dead)) == kind


# ---------------------------------------------------------------- the SVG


def _parse(svg: str) -> Any:
    return etree.fromstring(svg.encode("utf-8"), etree.XMLParser(resolve_entities=False, no_network=True))


def _points(root: Any, index: int) -> int:
    """pygal draws one dot (a circle) per value of a series, in the group of class serie-<index>."""
    return len(
        root.xpath(f"//s:g[contains(concat(' ', @class, ' '), ' serie-{index} ')]//s:circle", namespaces={"s": SVG})
    )


def _self_contained(svg: str) -> Any:
    root = _parse(svg)
    assert root.tag == f"{{{SVG}}}svg"
    assert not root.xpath("//s:script", namespaces={"s": SVG}) and "<script" not in svg
    assert set(re.findall(r"https?://[^\s\"'<>)]*", svg)) <= {SVG, "http://www.w3.org/1999/xlink"}
    assert "@import" not in svg and "url(" not in svg and "<!--" not in svg
    assert root.get("viewBox") and root.get("width") == "100%" and root.get("height") is None
    return root


@pytest.mark.parametrize("days", [30, 90])
def test_console_charts_are_self_contained_svg_with_a_point_per_day(known: Store, days: int) -> None:
    built = build_charts(known, NOW, days)
    charts = console_charts(known, NOW, days)
    assert [title for title, _ in charts] == [chart.title for chart in built]
    for (title, svg), chart in zip(charts, built, strict=True):
        root = _self_contained(svg)
        assert root.xpath("string(//s:title)", namespaces={"s": SVG}) == title
        legend = root.xpath("//s:g[contains(@class, 'legend')]/s:text/text()", namespaces={"s": SVG})
        assert legend == [name for name, _ in chart.series]
        for i in range(len(chart.series)):
            assert _points(root, i) == days, (title, i)
    ids = [i for _, svg in charts for i in _parse(svg).xpath("//@id")]
    assert len(ids) == len(set(ids)) == len(charts)  # one inline page of charts keeps its ids unique


def test_names_from_the_database_are_escaped() -> None:
    hostile = "<script>alert(1)</script> & \x07bell"
    days = window(NOW, 30)
    svg = chart_svg(Chart(f"title {hostile}", days, ((hostile, (1,) * 30),)))
    root = _self_contained(svg)
    assert root.xpath("string(//s:title)", namespaces={"s": SVG}) == "title <script>alert(1)</script> & bell"
    assert root.xpath("//s:g[contains(@class, 'legend')]/s:text/text()", namespaces={"s": SVG}) == [
        "<script>alert(1)</script> & bell"
    ]
    assert "&lt;script&gt;" in svg


def test_a_chart_without_series_says_no_data() -> None:
    root = _self_contained(chart_svg(Chart("Posts", window(NOW, 30), ())))
    assert root.xpath("string(//s:text[contains(@class, 'no_data')])", namespaces={"s": SVG}) == "No data"


# ------------------------------------------------------------ sparklines


@pytest.mark.parametrize(
    ("values", "line"),
    [
        ([], ""),
        ([0, 0, 0], "▁▁▁"),
        ([0, 1, 0, 5, 40], "▁▂▁▂█"),  # a single event still shows above zero
        ([3, 3], "██"),
        ([0, 1, 2, 3, 4, 5, 6, 7], "▁▂▃▄▅▆▇█"),
    ],
)
def test_sparkline(values: list[int], line: str) -> None:
    assert sparkline(values) == line


def test_status_sparklines_of_a_known_database(known: Store) -> None:
    lines = status_sparklines(known, NOW)
    assert lines[0].startswith("last 30 days")
    rows = {line.split("  ")[1].strip(): line.split() for line in lines[1:]}
    assert rows["posts twitter"][-2:] == ["▅" + "▁" * 28 + "█", "3"]
    assert rows["posts facebook"][-2:] == ["▁" * 14 + "█" + "▁" * 15, "1"]
    assert rows["failures"][-2:] == ["▁" * 11 + "█" + "▁" * 7 + "▅" + "▁" * 10, "3"]
    assert rows["subscribers confirmed"][-3:] == [
        sparkline(days_on(range(30), range(6, 30), range(0, 19), range(24, 30))),
        "3",
        "now",
    ]
    assert rows["polls failed"][-2:] == ["▁" * 28 + "█▁", "1"]
    assert set(rows) == {
        "posts twitter",
        "posts facebook",
        "failures",
        "retries",
        "subscribers confirmed",
        "polls ok",
        "polls not modified (304)",
        "polls failed",
    }


def test_status_shows_the_sparklines(make_app: Any, settings: Settings, clock: FakeClock) -> None:
    app, _ = make_app(site_feed(items(3)), settings=settings)
    poll(app)
    status = render_status(app)
    assert "last 30 days (a mark a day" in status
    assert re.search(r"^  polls ok +" + "▁" * 29 + "█  1$", status, re.M), status


# -------------------------------------------------------------- poll log


def test_each_poll_is_logged_with_its_result(make_app: Any, settings: Settings, clock: FakeClock) -> None:
    app, source = make_app(site_feed(items(3)), settings=settings)
    poll(app)
    clock.advance(minutes=15)
    poll(app)  # same body: the memory source answers 304
    clock.advance(minutes=15)
    source.error = SourceError("the site is down")
    with pytest.raises(SourceError):
        poll(app)
    start = clock.now - timedelta(hours=1)
    assert app.store.polls_between(start, clock.now) == [
        ("ok", clock.now - timedelta(minutes=30)),
        ("not_modified", clock.now - timedelta(minutes=15)),
        ("failed", clock.now),
    ]


def test_the_poll_log_is_pruned_as_it_is_written(store: Store) -> None:
    old = NOW - timedelta(days=POLL_LOG_DAYS, seconds=1)
    kept = NOW - timedelta(days=POLL_LOG_DAYS - 1)
    store.log_poll("memory://feed", now=old, result="ok")
    store.log_poll("memory://feed", now=kept, result="failed")
    store.log_poll("memory://feed", now=NOW, result="ok")
    with store.tx() as conn:
        rows = conn.execute(sa.select(t.poll_log.c.at).order_by(t.poll_log.c.at)).scalars().all()
    assert rows == [kept, NOW]
