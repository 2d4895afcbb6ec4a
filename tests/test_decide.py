"""The pure decisions, with a fixed clock: new / edited / unchanged, backfill, backoff, pacing, due."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from bot.decide import (
    Pacing,
    PublishVerdict,
    SendTry,
    backoff_delay,
    digest_send_verdict,
    is_due,
    next_poll_time,
    pacing_wait,
    plan_poll,
    publish_failure_verdict,
    retry_time,
)
from bot.errors import AuthPublishError, PermanentPublishError, PublishError, TransientPublishError
from bot.records import SendState, Summary

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def s(guid: str, text: str = "t", hours: int = 0) -> Summary:
    return Summary(
        guid=guid, title="T", author="a", text=text, link=f"https://x/{guid}", edited_at=NOW - timedelta(hours=hours)
    )


CHANNELS = {"twitter": False, "facebook": False}


def test_new_edited_unchanged_by_hash_not_date() -> None:
    a, b, c = s("a"), s("b", "old"), s("c")
    known = {"b": (s("b", "older text").content_hash, 1), "c": (c.content_hash, 1)}
    # c's date moved (an edit on the site moves pubDate) but its content did not: unchanged.
    c_moved = Summary(**{**{f: getattr(c, f) for f in ("guid", "title", "author", "text", "link")}, "edited_at": NOW})
    plan = plan_poll([a, b, c_moved], known, first_poll=False, backfill=0, channels=CHANNELS)
    assert [x.guid for x in plan.new] == ["a"]
    assert [x.guid for x in plan.edited] == ["b"]
    assert plan.unchanged == 1
    assert plan.queue == (("a", "twitter", 0), ("a", "facebook", 0))


def test_edit_queues_nothing_unless_republish() -> None:
    b = s("b", "new text")
    known = {"b": ("oldhash", 3)}
    assert plan_poll([b], known, first_poll=False, backfill=0, channels=CHANNELS).queue == ()
    plan = plan_poll([b], known, first_poll=False, backfill=0, channels={"twitter": True, "facebook": False})
    assert plan.queue == (("b", "twitter", 4),)


def test_first_poll_marks_seen_and_queues_only_newest_n_oldest_first() -> None:
    items = [s(f"g{i}", hours=i) for i in range(10)]  # g0 newest
    plan = plan_poll(items, {}, first_poll=True, backfill=3, channels={"twitter": False})
    assert len(plan.new) == 10
    assert plan.backfilled == {f"g{i}" for i in range(3, 10)}
    assert plan.queue == (("g2", "twitter", 0), ("g1", "twitter", 0), ("g0", "twitter", 0))
    assert plan_poll(items, {}, first_poll=True, backfill=0, channels=CHANNELS).queue == ()


def test_flood_guard_queues_the_newest_limit_and_holds_the_rest_of_a_later_poll() -> None:
    items = [s(f"g{i}", hours=i) for i in range(6)]  # g0 newest
    plan = plan_poll(items, {}, first_poll=False, backfill=0, channels={"twitter": False}, limit=2)
    assert plan.queue == (("g1", "twitter", 0), ("g0", "twitter", 0))
    assert plan.held == {f"g{i}" for i in range(2, 6)} and plan.backfilled == frozenset()
    assert plan_poll(items, {}, first_poll=False, backfill=0, channels=CHANNELS, limit=6).held == frozenset()
    assert plan_poll(items, {}, first_poll=False, backfill=0, channels=CHANNELS, limit=0).held == frozenset()
    # A first poll has its own rule: backfill, the rest seen; nothing held.
    first = plan_poll(items, {}, first_poll=True, backfill=4, channels={"twitter": False}, limit=2)
    assert len(first.queue) == 4 and first.held == frozenset()


def test_duplicate_guid_in_one_poll_counts_once() -> None:
    plan = plan_poll([s("a"), s("a", "other")], {}, first_poll=False, backfill=0, channels={"twitter": False})
    assert len(plan.new) == 1 and plan.queue == (("a", "twitter", 0),)


def test_backoff_grows_exponentially_with_jitter_and_cap() -> None:
    rng = random.Random(1)
    d1 = [backoff_delay(1, base=10, maximum=1000, rng=rng).total_seconds() for _ in range(50)]
    d4 = [backoff_delay(4, base=10, maximum=1000, rng=rng).total_seconds() for _ in range(50)]
    assert all(5 <= d <= 10 for d in d1) and len(set(d1)) > 10  # jittered
    assert all(40 <= d <= 80 for d in d4)
    assert all(500 <= backoff_delay(30, base=10, maximum=1000, rng=rng).total_seconds() <= 1000 for _ in range(20))
    assert backoff_delay(0, base=10, maximum=1000) == timedelta(0)


def test_retry_time_prefers_platform_reset() -> None:
    reset = NOW + timedelta(minutes=12)
    assert retry_time(NOW, 1, base=10, maximum=100, platform_time=reset) == reset
    past = NOW - timedelta(minutes=1)
    assert NOW < retry_time(NOW, 1, base=10, maximum=100, platform_time=past) <= NOW + timedelta(seconds=10)


def test_next_poll_respects_cache_control_and_retry_after() -> None:
    rng = random.Random(0)
    base = next_poll_time(NOW, interval=timedelta(minutes=15), jitter=timedelta(seconds=30), rng=rng)
    assert NOW + timedelta(minutes=15) <= base <= NOW + timedelta(minutes=15, seconds=30)
    later = NOW + timedelta(hours=2)
    assert next_poll_time(NOW, interval=timedelta(minutes=15), jitter=timedelta(0), fresh_until=later) == later
    assert next_poll_time(NOW, interval=timedelta(minutes=15), jitter=timedelta(0), retry_after=later) == later


def test_pacing_caps_and_interval() -> None:
    p = Pacing(min_interval=timedelta(minutes=30), daily_cap=2, monthly_cap=10)
    assert pacing_wait(p, now=NOW, last_sent=None, sent_today=0, sent_this_month=0) is None
    at, why = pacing_wait(p, now=NOW, last_sent=NOW - timedelta(minutes=10), sent_today=1, sent_this_month=1) or (
        None,
        "",
    )
    assert at == NOW + timedelta(minutes=20) and "interval" in why
    at, why = pacing_wait(p, now=NOW, last_sent=NOW - timedelta(hours=5), sent_today=2, sent_this_month=2) or (None, "")
    assert at == datetime(2026, 11, 3, tzinfo=UTC) and "daily cap" in why
    at, why = pacing_wait(p, now=NOW, last_sent=None, sent_today=0, sent_this_month=10) or (None, "")
    assert at == datetime(2026, 12, 1, tzinfo=UTC) and "monthly cap" in why
    dec = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    assert (pacing_wait(p, now=dec, last_sent=None, sent_today=0, sent_this_month=10) or (None,))[0] == datetime(
        2027, 1, 1, tzinfo=UTC
    )
    assert pacing_wait(Pacing(), now=NOW, last_sent=NOW, sent_today=10**6, sent_this_month=10**6) is None


def test_due() -> None:
    assert is_due("pending", NOW, NOW)
    assert not is_due("pending", NOW + timedelta(seconds=1), NOW)
    assert not is_due("in_flight", NOW, NOW)


# ---------------------------------------------------------------- a failed publish


class _Top(random.Random):
    """Always the top of the jitter range: backoff = base·2^(n-1), capped."""

    def random(self) -> float:
        return 1.0


_NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
_LATER = _NOW + timedelta(hours=2)


@pytest.mark.parametrize(
    ("error", "attempts", "verdict", "due_at"),
    [
        # Bad credentials pause the channel whatever the count: the post is not at fault.
        (AuthPublishError("401"), 1, PublishVerdict.PAUSE, _NOW),
        (AuthPublishError("401"), 5, PublishVerdict.PAUSE, _NOW),
        (PermanentPublishError("400"), 1, PublishVerdict.FAIL, None),
        (PermanentPublishError("dup", duplicate=True), 1, PublishVerdict.FAIL, None),
        # A post that may be out is reconciled, even out of attempts: a new try could post it twice.
        (TransientPublishError("timeout", maybe_sent=True), 1, PublishVerdict.RECONCILE, _NOW + timedelta(seconds=60)),
        (TransientPublishError("timeout", maybe_sent=True), 5, PublishVerdict.RECONCILE, _NOW + timedelta(seconds=600)),
        (TransientPublishError("503"), 2, PublishVerdict.RETRY, _NOW + timedelta(seconds=120)),
        (TransientPublishError("503"), 4, PublishVerdict.RETRY, _NOW + timedelta(seconds=480)),
        (TransientPublishError("503"), 5, PublishVerdict.GIVE_UP, None),
        (TransientPublishError("503"), 6, PublishVerdict.GIVE_UP, None),
        # The platform's reset time wins over backoff when it is later.
        (TransientPublishError("429", retry_at=_LATER), 1, PublishVerdict.RETRY, _LATER),
        (
            TransientPublishError("429", retry_at=_NOW - timedelta(hours=1)),
            1,
            PublishVerdict.RETRY,
            _NOW + timedelta(seconds=60),
        ),
        (TransientPublishError("429", retry_at=_LATER), 5, PublishVerdict.GIVE_UP, None),
        # A bare PublishError (neither kind) is retried like a transient one.
        (PublishError("odd"), 1, PublishVerdict.RETRY, _NOW + timedelta(seconds=60)),
        (PublishError("odd"), 5, PublishVerdict.GIVE_UP, None),
    ],
)
def test_publish_failure_verdict(
    error: PublishError, attempts: int, verdict: PublishVerdict, due_at: datetime | None
) -> None:
    got = publish_failure_verdict(error, attempts=attempts, max_attempts=5, now=_NOW, base=60, maximum=600, rng=_Top())
    assert got == (verdict, due_at)


def test_digest_send_verdict_speaks_enums() -> None:
    kw = {"now": _NOW, "base": 60.0, "maximum": 600.0, "max_attempts": 3, "rng": _Top()}
    assert digest_send_verdict(SendTry.ACCEPTED, attempts=1, **kw) == (SendState.SENT, None)
    table = {
        SendTry.ACCEPTED: SendState.SENT,
        SendTry.REFUSED: SendState.FAILED,
        SendTry.NOT_SENT: SendState.PENDING,
        SendTry.TRANSIENT: SendState.PENDING,
        SendTry.MAYBE_DELIVERED: SendState.PENDING,
    }
    for outcome, state in table.items():
        got, _ = digest_send_verdict(outcome, attempts=1, **kw)
        assert got is state, outcome
