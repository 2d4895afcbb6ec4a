"""The weekly digest: periods and schedule (pure, fixed clock), building, sending through a real SMTP server
(aiosmtpd), retries, bounces, resending a period, and the schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import lxml.html
import pytest
from digest_util import BASE, FROM, MONDAY, Newsroom, by_recipient, digest_settings, parse, parts, sends
from feeds_util import Item
from smtp_server import SmtpTestServer

from bot.decide import (
    DigestPeriod,
    DigestSchedule,
    bounce_due,
    digest_catch_up,
    digest_order,
    digest_period,
    digest_selection,
    digest_send_verdict,
    rate_window,
)
from bot.digest import build_digest, drain_digest_sends, send_digest, send_issue
from bot.errors import MailError
from bot.mail.message import digest_message_id
from bot.mail.tokens import read_token

UTC_MONDAY_8 = DigestSchedule.parse("mon", "08:00", "UTC")


# ---------------------------------------------------------------- pure decisions


def test_schedule_latest_and_following_in_utc() -> None:
    monday_8 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    assert UTC_MONDAY_8.latest(monday_8) == monday_8
    assert UTC_MONDAY_8.latest(monday_8 - timedelta(seconds=1)) == monday_8 - timedelta(days=7)
    assert UTC_MONDAY_8.latest(monday_8 + timedelta(days=6, hours=23)) == monday_8
    assert UTC_MONDAY_8.following(monday_8) == monday_8 + timedelta(days=7)
    assert UTC_MONDAY_8.following(monday_8 - timedelta(minutes=1)) == monday_8


def test_schedule_keeps_the_wall_clock_time_across_daylight_saving() -> None:
    berlin = DigestSchedule.parse("sun", "09:30", "Europe/Berlin")
    # Summer time starts on Sunday 29 March 2026: 09:30 is 08:30 UTC before, 07:30 UTC after.
    before = berlin.latest(datetime(2026, 3, 25, tzinfo=UTC))
    after = berlin.following(before)
    assert before == datetime(2026, 3, 22, 8, 30, tzinfo=UTC)
    assert after == datetime(2026, 3, 29, 7, 30, tzinfo=UTC)
    assert after.astimezone(ZoneInfo("Europe/Berlin")).strftime("%a %H:%M") == "Sun 09:30"
    # A time that does not exist that day (02:30 on the change) still gives one run that day.
    gap = DigestSchedule.parse("sun", "02:30", "Europe/Berlin")
    run = gap.following(datetime(2026, 3, 28, tzinfo=UTC))
    assert run.astimezone(ZoneInfo("Europe/Berlin")).date().isoformat() == "2026-03-29"


def test_periods_follow_on_without_gap_or_overlap() -> None:
    t0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
    first = digest_period(t0, None)
    assert first == DigestPeriod(t0 - timedelta(days=7), t0)
    second = digest_period(t0 + timedelta(days=7), first.end if first else None)
    assert second == DigestPeriod(t0, t0 + timedelta(days=7))
    # A period ending where the last one did (sending again) is nothing new.
    assert digest_period(t0, t0) is None
    assert digest_period(t0 - timedelta(days=1), t0) is None
    # Three missed weeks: one issue covering all of them.
    assert digest_period(t0 + timedelta(days=28), t0) == DigestPeriod(t0, t0 + timedelta(days=28))


def test_catch_up_only_when_a_scheduled_time_passed_uncovered() -> None:
    last_end = datetime(2026, 11, 2, 8, tzinfo=UTC)
    assert not digest_catch_up(last_end + timedelta(days=6), last_end, UTC_MONDAY_8)
    assert digest_catch_up(last_end + timedelta(days=7, minutes=1), last_end, UTC_MONDAY_8)
    assert digest_catch_up(last_end + timedelta(days=30), last_end, UTC_MONDAY_8)
    assert digest_catch_up(last_end, None, UTC_MONDAY_8)


def test_order_is_votes_then_newest() -> None:
    t = datetime(2026, 11, 1, tzinfo=UTC)
    items = [(3, t), (10, t), (3, t + timedelta(hours=1)), (None, t + timedelta(days=1)), (0, t)]
    assert digest_order(items) == [1, 2, 0, 4, 3]


def test_selection_by_category() -> None:
    cats = [("cs.LG", "stat.ML"), ("cs.CV",), ()]
    assert digest_selection((), cats) == (0, 1, 2)
    assert digest_selection(("cs.cv",), cats) == (1,)
    assert digest_selection(("stat.ML", "cs.CV"), cats) == (0, 1)
    assert digest_selection(("q-bio.NC",), cats) == ()


def test_send_verdicts() -> None:
    now = datetime(2026, 11, 2, tzinfo=UTC)
    rng = random.Random(1)
    kw: dict[str, Any] = {"now": now, "base": 300, "maximum": 6 * 3600, "max_attempts": 4, "rng": rng}
    assert digest_send_verdict("accepted", attempts=1, **kw) == ("sent", None)
    assert digest_send_verdict("refused", attempts=1, **kw) == ("failed", None)
    assert digest_send_verdict("not_sent", attempts=3, **kw) == ("pending", now)
    waits = [digest_send_verdict("transient", attempts=n, **kw)[1] for n in (1, 2, 3)]
    assert all(w is not None and w > now for w in waits)
    assert timedelta(seconds=150) <= waits[0] - now <= timedelta(seconds=300)  # type: ignore[operator]
    assert timedelta(seconds=600) <= waits[2] - now <= timedelta(seconds=1200)  # type: ignore[operator]
    assert digest_send_verdict("maybe_delivered", attempts=2, **kw)[0] == "pending"
    assert digest_send_verdict("transient", attempts=4, **kw) == ("failed", None)
    with pytest.raises(ValueError):
        digest_send_verdict("lost", attempts=1, **kw)


def test_bounce_and_rate_windows() -> None:
    assert not bounce_due(2, 3) and bounce_due(3, 3)
    t = datetime(2026, 11, 2, tzinfo=UTC)
    hour = timedelta(hours=1)
    assert rate_window(t, None, 0, window=hour, limit=2) == (True, t, 1)
    assert rate_window(t, t, 1, window=hour, limit=2) == (True, t, 2)
    assert rate_window(t + timedelta(minutes=59), t, 2, window=hour, limit=2) == (False, t, 2)
    assert rate_window(t + hour, t, 2, window=hour, limit=2) == (True, t + hour, 1)


# ---------------------------------------------------------------- building and sending


@pytest.fixture
def server() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as s:
        yield s


@pytest.fixture
def room(tmp_path: Path, db_url: str, server: SmtpTestServer) -> Iterator[Newsroom]:
    r = Newsroom.open(digest_settings(tmp_path, db_url, server, bounce_after=2))
    yield r
    r.close()


def news(*keys: tuple[str, int, str | None]) -> list[Item]:
    """Items by (key, votes, arXiv id)."""
    return [
        Item(key=k, title=f"Paper {k}", author="alice", votes=v, arxiv=a, text=f"Summary of {k}. It is good.")
        for k, v, a in keys
    ]


def test_digest_reaches_exactly_the_right_subscribers_with_every_header(room: Newsroom, server: SmtpTestServer) -> None:
    room.papers({"2610.00001": ("cs.LG",), "2610.00002": ("cs.CV",), "2610.00003": ("cs.CV", "cs.LG")})
    room.publish(
        news(("k1", 5, "2610.00001"), ("k2", 9, "2610.00002"), ("k3", 7, "2610.00003")), at=MONDAY - timedelta(days=3)
    )
    everything = room.subscribe("all@example.net")
    vision = room.subscribe("Vision@Example.net", categories=["cs.CV"])
    room.subscribe("bio@example.net", categories=["q-bio.NC"])  # nothing of this issue is theirs
    for state in ("pending", "unsubscribed", "bounced"):
        room.subscribe(f"{state}@example.net", state=state)
    room.clock.now = MONDAY

    out = send_digest(room.app)

    assert "digest #1" in out and "2 sent, 0 failed, 0 retrying, 0 skipped" in out, out
    got = by_recipient(server)
    assert sorted(got) == ["Vision@example.net", "all@example.net"]  # the domain normalised, the local part kept
    assert all(len(msgs) == 1 for msgs in got.values())
    rows = {r["address"]: r for r in sends(room.app)}
    for address, sid in (("all@example.net", everything), ("Vision@example.net", vision)):
        msg = got[address][0]
        assert msg.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
        assert msg["From"] == FROM and msg["To"] == address
        assert msg["Subject"] == "ShortScience weekly #1: 26 Oct – 2 Nov 2026"
        assert parsedate_to_datetime(msg["Date"]) == MONDAY
        stored = room.app.store.last_digest()
        assert stored is not None
        assert (
            msg["Message-ID"] == digest_message_id(1, sid, stored.nonce, "example.org") == rows[address]["message_id"]
        )
        assert msg["List-Id"] == "ShortScience weekly <shortscience-weekly.example.org>"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe = re.fullmatch(r"<(\S+)>", msg["List-Unsubscribe"])
        assert unsubscribe and unsubscribe.group(1).startswith(f"{BASE}/unsubscribe?token=")
        token = unsubscribe.group(1).split("token=", 1)[1]
        assert read_token(room.app.settings, "unsubscribe", token, max_age=None) == address
        text, html = parts(msg)
        assert f"Unsubscribe: {unsubscribe.group(1)}" in text
        doc = lxml.html.fromstring(html)
        assert [a.get("href") for a in doc.iter("a") if a.text_content().strip() == "Unsubscribe"] == [
            unsubscribe.group(1)
        ]
        assert rows[address]["state"] == "sent" and not rows[address]["possibly_duplicated"]
    # Ordered by votes; each subscriber only gets their categories.
    text_all, _ = parts(got["all@example.net"][0])
    assert [m for m in re.findall(r"Paper k\d", text_all)] == ["Paper k2", "Paper k3", "Paper k1"]
    text_cv, _ = parts(got["Vision@example.net"][0])
    assert re.findall(r"^\d\. Paper k\d", text_cv, flags=re.M) == ["1. Paper k2", "2. Paper k3"]
    # The meta line is wrapped at 78 characters: compare with the line breaks read as spaces.
    flat_cv = " ".join(text_cv.split())
    assert "Ada Lovelace and Alan Turing" in flat_cv and "Computer Vision and Pattern Recognition (cs.CV)" in flat_cv
    # The subscribe page promises authors: the HTML part shows them too.
    _, html_cv = parts(got["Vision@example.net"][0])
    doc = lxml.html.fromstring(html_cv)
    assert [p.text_content() for p in doc.find_class("authors")] == ["Ada Lovelace and Alan Turing"] * 2


def test_sending_a_period_again_mails_nobody_twice(room: Newsroom, server: SmtpTestServer) -> None:
    room.publish(news(("k1", 5, None)), at=MONDAY - timedelta(days=2))
    room.subscribe("a@example.net")
    room.subscribe("b@example.net")
    room.clock.now = MONDAY
    send_digest(room.app)
    assert len(server.messages) == 2
    again = send_digest(room.app)
    assert "nothing new to send: issue #1 already covers up to 2026-11-02 08:00 UTC" in again
    room.clock.now = MONDAY + timedelta(hours=5)
    assert "nothing new to send" in send_digest(room.app)
    assert len(server.messages) == 2
    # --now ends a period now: nothing new in it, so (skip_empty) nothing goes out either.
    assert "no new summaries" in send_digest(room.app, end_now=True)
    assert len(server.messages) == 2
    assert [d.issue for d in room.app.store.unfinished_digests()] == []


def test_an_issue_covers_news_first_seen_in_its_period_only(room: Newsroom, server: SmtpTestServer) -> None:
    # A first poll marks what the site already has as seen: not news, never in a digest.
    room.source.body = news_feed([("old", 50, None)])
    from bot.pipeline import poll

    room.clock.now = MONDAY - timedelta(days=10)
    poll(room.app, backfill=0)
    room.publish(news(("old", 50, None), ("before", 5, None)), at=MONDAY - timedelta(days=8))  # the week before
    room.publish(news(("old", 50, None), ("before", 5, None), ("fresh", 3, None)), at=MONDAY - timedelta(days=1))
    # An edit of an older summary moves its date and text; it is still not new.
    edited = news(("old", 50, None), ("before", 5, None), ("fresh", 3, None))
    edited[0].text = "Edited: a much better summary."
    edited[0].edited = edited[0].edited + timedelta(days=30)
    room.publish(edited, at=MONDAY - timedelta(hours=5))
    room.subscribe("a@example.net")
    room.clock.now = MONDAY
    send_digest(room.app)
    text, _ = parts(parse(server.messages[0]))
    assert re.findall(r"Paper \w+", text) == ["Paper fresh"]
    # "before" came in the previous period (before the first issue's week): a later
    # poll after the issue is news of the next one, not this.
    room.publish(news(("late", 1, None)), at=MONDAY + timedelta(hours=1))
    room.clock.now = MONDAY + timedelta(days=7)
    send_digest(room.app)
    assert re.findall(r"Paper \w+", parts(parse(server.messages[1]))[0]) == ["Paper late"]
    assert parse(server.messages[1])["Subject"] == "ShortScience weekly #2: 2–9 Nov 2026"


def news_feed(keys: list[tuple[str, int, str | None]]) -> bytes:
    from feeds_util import site_feed

    return site_feed(news(*keys))


def test_missed_weeks_make_one_issue(room: Newsroom, server: SmtpTestServer) -> None:
    room.publish(news(("w1", 1, None)), at=MONDAY - timedelta(days=2))
    room.subscribe("a@example.net")
    room.clock.now = MONDAY
    send_digest(room.app)
    # Down for three weeks; news came in meanwhile (another process polled).
    room.publish(news(("w2", 1, None)), at=MONDAY + timedelta(days=3))
    room.publish(news(("w3", 1, None)), at=MONDAY + timedelta(days=17))
    room.clock.now = MONDAY + timedelta(days=22)
    out = send_digest(room.app)
    assert "digest #2" in out
    assert len(server.messages) == 2
    msg = parse(server.messages[1])
    assert msg["Subject"] == "ShortScience weekly #2: 2–23 Nov 2026"
    assert sorted(re.findall(r"Paper w\d", parts(msg)[0])) == ["Paper w2", "Paper w3"]


def test_nothing_new_sends_nothing_unless_told(tmp_path: Path, db_url: str, server: SmtpTestServer) -> None:
    quiet = Newsroom.open(digest_settings(tmp_path, db_url, server))
    quiet.subscribe("a@example.net")
    quiet.clock.now = MONDAY
    assert "no new summaries (digest.skip_empty)" in send_digest(quiet.app)
    assert server.messages == []
    assert quiet.app.store.last_digest() is None
    quiet.close()
    loud = Newsroom.open(digest_settings(tmp_path, db_url, server, skip_empty=False))
    loud.clock.now = MONDAY
    assert "1 sent" in send_digest(loud.app)
    assert "No new summaries this week." in parts(parse(server.messages[0]))[0]
    loud.close()


def test_someone_who_leaves_after_the_issue_is_built_is_not_mailed(room: Newsroom, server: SmtpTestServer) -> None:
    room.publish(news(("k", 1, None)), at=MONDAY - timedelta(days=1))
    room.subscribe("stays@example.net")
    room.subscribe("leaves@example.net")
    room.clock.now = MONDAY
    built = build_digest(room.app, DigestPeriod(MONDAY - timedelta(days=7), MONDAY), now=MONDAY)
    assert not isinstance(built, str) and built.recipients == 2
    room.app.store.unsubscribe("leaves@example.net", now=MONDAY)
    tally = send_issue(room.app, built)
    assert tally.sent == 1 and server.recipients() == ["stays@example.net"]
    rows = {r["address"]: r["state"] for r in sends(room.app)}
    assert rows == {"stays@example.net": "sent", "leaves@example.net": "skipped"}


# ---------------------------------------------------------------- SMTP faults


def _one_issue(room: Newsroom, *addresses: str) -> None:
    room.publish(news(("k", 1, None)), at=MONDAY - timedelta(days=1))
    for a in addresses:
        room.subscribe(a)
    room.clock.now = MONDAY


@pytest.mark.parametrize("fault", ["451", "421"])
def test_4xx_is_retried_later_and_delivered_once(room: Newsroom, server: SmtpTestServer, fault: str) -> None:
    _one_issue(room, "a@example.net", "busy@example.net", "c@example.net")
    server.fail_rcpt("busy@example.net", fault, times=1)
    out = send_digest(room.app)
    assert "2 sent, 0 failed, 1 retrying" in out and "1 still to send (next try" in out, out
    assert sorted(server.recipients()) == ["a@example.net", "c@example.net"]
    row = next(r for r in sends(room.app) if r["address"] == "busy@example.net")
    assert row["state"] == "pending" and row["due_at"] > MONDAY and fault in row["last_error"]
    # Not due yet: a pass now sends nothing.
    assert drain_digest_sends(room.app, threading.Event()) == 0
    room.clock.now = row["due_at"]
    assert drain_digest_sends(room.app, threading.Event()) == 1
    assert sorted(server.recipients()) == ["a@example.net", "busy@example.net", "c@example.net"]
    stored = room.app.store.last_digest()
    assert stored is not None and stored.state == "sent"


def test_550_fails_and_bounces_after_k_issues(room: Newsroom, server: SmtpTestServer) -> None:
    server.fail_rcpt("gone@example.net", "550")
    _one_issue(room, "ok@example.net", "gone@example.net")
    assert "1 sent, 1 failed" in send_digest(room.app)
    sub = room.app.store.subscriber("gone@example.net")
    assert sub is not None and sub.state.value == "confirmed" and sub.permanent_failures == 1
    room.publish(news(("k2", 1, None)), at=MONDAY + timedelta(days=1))
    room.clock.now = MONDAY + timedelta(days=7)
    send_digest(room.app)  # the second refusal in a row: bounce_after = 2
    sub = room.app.store.subscriber("gone@example.net")
    assert sub is not None and sub.state.value == "bounced" and "550" in (sub.last_error or "")
    room.publish(news(("k3", 1, None)), at=MONDAY + timedelta(days=8))
    room.clock.now = MONDAY + timedelta(days=14)
    assert "1 recipient)" in send_digest(room.app)
    assert server.recipients().count("gone@example.net") == 0
    assert server.recipients().count("ok@example.net") == 3
    # Importing it again changes nothing: bounced stays bounced.
    outcome = room.app.store.import_subscribers(
        [("gone@example.net", ())], now=room.clock(), confirmed=True, source="t"
    )
    assert outcome[0].result == "known:bounced"


def test_a_message_accepted_resets_the_run_of_refusals(room: Newsroom, server: SmtpTestServer) -> None:
    server.fail_rcpt("flaky@example.net", "550", times=1)
    _one_issue(room, "flaky@example.net")
    send_digest(room.app)
    room.publish(news(("k2", 1, None)), at=MONDAY + timedelta(days=1))
    room.clock.now = MONDAY + timedelta(days=7)
    send_digest(room.app)
    sub = room.app.store.subscriber("flaky@example.net")
    assert sub is not None and sub.state.value == "confirmed" and sub.permanent_failures == 0


def test_connection_dropped_mid_data_reconnects_and_mails_nobody_twice(room: Newsroom, server: SmtpTestServer) -> None:
    _one_issue(room, *[f"r{i}@example.net" for i in range(6)])
    server.fail_message(3, "drop")  # hangs up at the 3rd message's end of DATA, without keeping it
    out = send_digest(room.app)
    assert "5 sent" in out and "1 retrying" in out, out
    dropped = next(r for r in sends(room.app) if r["state"] == "pending")
    # The answer to its final dot was lost: it may have arrived, so it is on record as such.
    assert dropped["possibly_duplicated"] and "maybe_delivered" in dropped["last_error"]
    room.clock.now = dropped["due_at"]
    drain_digest_sends(room.app, threading.Event())
    got = by_recipient(server)
    assert sorted(got) == [f"r{i}@example.net" for i in range(6)]
    assert all(len(m) == 1 for m in got.values())  # the server had not kept it: one copy each
    assert server.connections >= 2  # the other messages went on over a fresh connection


def test_answer_lost_after_acceptance_resends_the_same_message_on_record(
    room: Newsroom, server: SmtpTestServer
) -> None:
    _one_issue(room, "a@example.net", "b@example.net")
    server.fail_message(1, "accept_then_drop")  # keeps it, then hangs up without answering
    send_digest(room.app)
    first = next(r for r in sends(room.app) if r["state"] == "pending")
    room.clock.now = first["due_at"]
    drain_digest_sends(room.app, threading.Event())
    got = by_recipient(server)
    twice = [a for a, m in got.items() if len(m) == 2]
    assert twice == [first["address"]]
    copies = got[first["address"]]
    assert copies[0]["Message-ID"] == copies[1]["Message-ID"] == first["message_id"]
    assert bytes(copies[0]) == bytes(copies[1])  # the very same message: providers deduplicate it
    final = next(r for r in sends(room.app) if r["address"] == first["address"])
    assert final["state"] == "sent" and final["possibly_duplicated"]
    assert "possibly duplicated" in send_digest(room.app)


def test_server_refusing_us_stops_the_run_and_loses_nobody(tmp_path: Path, db_url: str) -> None:
    with SmtpTestServer(user="bot", password="right") as server:
        bad = Newsroom.open(
            digest_settings(tmp_path, db_url, env={"SMTP_URL": server.url(user="bot", password="wrong")})
        )
        _one_issue(bad, *[f"r{i}@example.net" for i in range(5)])
        with pytest.raises(MailError, match="login refused") as info:
            send_digest(bad.app)
        assert "run `digest send` again" in str(info.value)
        assert server.messages == []
        assert {r["state"] for r in sends(bad.app)} == {"pending"}
        assert {r["attempts"] for r in sends(bad.app)} == {0}  # not the recipients' fault: no try counted
        bad.close()
        good = Newsroom.open(
            digest_settings(tmp_path, db_url, env={"SMTP_URL": server.url(user="bot", password="right")}),
            start=MONDAY + timedelta(minutes=5),
        )
        assert "5 sent" in send_digest(good.app)
        assert sorted(server.recipients()) == [f"r{i}@example.net" for i in range(5)]
        good.close()


def test_two_senders_at_once_mail_everyone_exactly_once(tmp_path: Path, db_url: str, server: SmtpTestServer) -> None:
    setup = Newsroom.open(digest_settings(tmp_path, db_url, server, connections=2))
    _one_issue(setup)
    rows = [(f"r{i:03d}@example.net", ()) for i in range(120)]
    setup.app.store.import_subscribers(rows, now=MONDAY, confirmed=True, source="t")
    built = build_digest(setup.app, DigestPeriod(MONDAY - timedelta(days=7), MONDAY), now=MONDAY)
    assert not isinstance(built, str)
    senders = [Newsroom.open(digest_settings(tmp_path, db_url, server, connections=2), start=MONDAY) for _ in range(2)]
    errors: list[BaseException] = []

    def run(r: Newsroom) -> None:
        try:
            send_digest(r.app)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(server.recipients()) == sorted(a for a, _ in rows)
    assert {r["state"] for r in sends(setup.app)} == {"sent"}
    for r in (setup, *senders):
        r.close()


# ---------------------------------------------------------------- the schema


def test_migration_builds_exactly_the_schema(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from bot.store import make_engine, migrate
    from bot.store.schema import metadata

    engine = make_engine(db_url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    finally:
        engine.dispose()
    assert diff == []
