"""Pure decisions: what a poll found, what to queue, when to retry, when a channel may post,
what becomes of a failed publish, what a digest covers and when, and what becomes of a digest send.

Nothing here does I/O or reads the clock: every function takes the data and
`now`, so tests pin time and the loops in pipeline/dispatcher stay dumb.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo

from bot.errors import AuthPublishError, PermanentPublishError, PublishError, TransientPublishError
from bot.records import SendState, Summary


@dataclass(frozen=True, slots=True)
class PollPlan:
    """What to do with one poll's items."""

    #: summaries never seen before, newest first
    new: tuple[Summary, ...]
    #: summaries whose text, title or author changed
    edited: tuple[Summary, ...]
    #: how many came back identical
    unchanged: int
    #: the guids of new summaries that only get marked as seen (first poll beyond the backfill)
    backfilled: frozenset[str]
    #: (guid, channel, revision) deliveries to create; revision 0 = first post, n = republished edit
    queue: tuple[tuple[str, str, int], ...]
    #: the guids of new summaries the flood guard holds back from the social channels (stored, not queued)
    held: frozenset[str] = frozenset()


def plan_poll(
    items: Sequence[Summary],
    known: Mapping[str, tuple[str, int]],
    *,
    first_poll: bool,
    backfill: int,
    channels: Mapping[str, bool],
    limit: int = 0,
) -> PollPlan:
    """Classify a poll's items against what the store knows.

    `known` maps guid → (content hash, current version). `channels` maps each
    enabled channel to whether it republishes edits. Identity is the guid and
    change is the content hash: the feed's date moves on every edit, so a tool
    that compares dates would repost every edit.

    `limit` (0: none) is the flood guard of a later poll: of more new summaries
    than that, only the newest `limit` are queued and the rest are held (a
    first poll has its backfill rule instead).
    """
    new: list[Summary] = []
    edited: list[Summary] = []
    unchanged = 0
    seen: set[str] = set()
    for item in items:
        if item.guid in seen:  # the parser already drops these; stay safe
            continue
        seen.add(item.guid)
        previous = known.get(item.guid)
        if previous is None:
            new.append(item)
        elif previous[0] != item.content_hash:
            edited.append(item)
        else:
            unchanged += 1

    new.sort(key=lambda s: s.edited_at, reverse=True)
    published_new = new if not first_poll else new[: max(backfill, 0)]
    backfilled = frozenset(s.guid for s in new[len(published_new) :]) if first_poll else frozenset()
    held: frozenset[str] = frozenset()
    if not first_poll and limit > 0 and len(new) > limit:
        published_new, held = new[:limit], frozenset(s.guid for s in new[limit:])

    queue: list[tuple[str, str, int]] = []
    # Oldest first, so the outbox publishes in the order the site did.
    for summary in reversed(published_new):
        for channel in channels:
            queue.append((summary.guid, channel, 0))
    for summary in edited:
        version = known[summary.guid][1] + 1
        for channel, republish in channels.items():
            if republish:
                queue.append((summary.guid, channel, version))
    return PollPlan(tuple(new), tuple(edited), unchanged, backfilled, tuple(queue), held)


def backoff_delay(
    failures: int,
    *,
    base: float,
    maximum: float,
    rng: random.Random | None = None,
) -> timedelta:
    """Exponential backoff with full jitter after `failures` consecutive failures (>= 1).

    The wait is drawn from [base·2^(n-1) / 2, base·2^(n-1)], capped at `maximum`,
    so many bots that failed together do not retry together.
    """
    if failures < 1:
        return timedelta(0)
    ceiling = min(maximum, base * (2 ** min(failures - 1, 32)))
    r = (rng or random).random()
    return timedelta(seconds=ceiling / 2 + r * ceiling / 2)


def retry_time(
    now: datetime,
    failures: int,
    *,
    base: float,
    maximum: float,
    platform_time: datetime | None = None,
    rng: random.Random | None = None,
) -> datetime:
    """When to try again: the platform's reset time if it gave one, else backoff."""
    if platform_time is not None and platform_time > now:
        return platform_time
    return now + backoff_delay(failures, base=base, maximum=maximum, rng=rng)


def next_poll_time(
    now: datetime,
    *,
    interval: timedelta,
    jitter: timedelta,
    fresh_until: datetime | None = None,
    retry_after: datetime | None = None,
    rng: random.Random | None = None,
) -> datetime:
    """The next poll: the interval plus jitter, never before the server allows.

    Cache-Control max-age (`fresh_until`) and Retry-After push it later, never sooner.
    """
    r = (rng or random).random()
    at = now + interval + jitter * r
    for limit in (fresh_until, retry_after):
        if limit is not None and limit > at:
            at = limit
    return at


@dataclass(frozen=True, slots=True)
class Pacing:
    """A channel's pacing limits (0 = off)."""

    min_interval: timedelta = timedelta(0)
    daily_cap: int = 0
    monthly_cap: int = 0


def month_start(now: datetime) -> datetime:
    now = now.astimezone(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def day_start(now: datetime) -> datetime:
    now = now.astimezone(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def next_month_start(now: datetime) -> datetime:
    start = month_start(now)
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def pacing_wait(
    pacing: Pacing,
    *,
    now: datetime,
    last_sent: datetime | None,
    sent_today: int,
    sent_this_month: int,
) -> tuple[datetime, str] | None:
    """None when the channel may post now, else (earliest time, reason).

    Windows are UTC calendar days and months, like the platforms' billing.
    A capped delivery waits for the next window; it is never dropped.
    """
    if pacing.monthly_cap and sent_this_month >= pacing.monthly_cap:
        return next_month_start(now), f"monthly cap of {pacing.monthly_cap} reached"
    if pacing.daily_cap and sent_today >= pacing.daily_cap:
        return day_start(now) + timedelta(days=1), f"daily cap of {pacing.daily_cap} reached"
    if pacing.min_interval and last_sent is not None and now < last_sent + pacing.min_interval:
        return last_sent + pacing.min_interval, f"minimum interval of {pacing.min_interval} between posts"
    return None


def is_due(state: str, due_at: datetime, now: datetime) -> bool:
    return state == "pending" and due_at <= now


def estimated_cost(posts: int, price_per_post: float) -> float:
    return round(posts * price_per_post, 2)


def newest_first(summaries: Iterable[Summary]) -> list[Summary]:
    return sorted(summaries, key=lambda s: s.edited_at, reverse=True)


# ---------------------------------------------------------------- feed dates


def first_published(source_date: datetime, known_since: datetime) -> datetime:
    """A summary's published time: the earliest time it is known to have existed.

    `source_date` is the item's date in the feed (its last edit); `known_since`
    is when the bot first saw it (or the published time stored so far). A first
    poll finds summaries written long before, so their source date wins; one
    that appears in a later poll is published when it appeared, or at its
    source date if that is earlier.
    """
    return min(source_date, known_since)


def entry_dates(
    published_at: datetime | None, first_seen_at: datetime, edited_at: datetime
) -> tuple[datetime, datetime]:
    """(published, updated) of a summary's feed entry: the earliest known time and the latest edit.

    `published_at` is the stored value (migration 0002 and every poll fill it;
    None is derived the same way, as a fallback).
    Updated is never before published (a source date may lag the bot's clock).
    """
    published = published_at if published_at is not None else first_published(edited_at, first_seen_at)
    return published, max(published, edited_at)


# ---------------------------------------------------------------- the digest

#: digest.day_of_week values, Monday first (datetime.weekday() order)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class DigestSchedule:
    """When the weekly digest goes out: a weekday and a wall-clock time in a time zone."""

    #: 0 = Monday
    weekday: int
    hour: int
    minute: int
    tz: ZoneInfo

    @classmethod
    def parse(cls, day_of_week: str, at: str, timezone: str) -> DigestSchedule:
        """From the settings' values (already validated by bot.settings)."""
        hh, _, mm = at.partition(":")
        return cls(WEEKDAYS.index(day_of_week), int(hh), int(mm), ZoneInfo(timezone))

    def _on(self, day: date) -> datetime:
        # A wall time that does not exist that day (a DST gap) comes out shifted
        # by the gap; one that exists twice is the first of the two.
        return datetime.combine(day, dtime(self.hour, self.minute), tzinfo=self.tz).astimezone(UTC)

    def latest(self, now: datetime) -> datetime:
        """The last scheduled time at or before `now` (aware UTC)."""
        local = now.astimezone(self.tz)
        day = local.date() - timedelta(days=(local.weekday() - self.weekday) % 7)
        at = self._on(day)
        return at if at <= now else self._on(day - timedelta(days=7))

    def following(self, now: datetime) -> datetime:
        """The first scheduled time after `now` (aware UTC)."""
        latest = self.latest(now)
        return self._on(latest.astimezone(self.tz).date() + timedelta(days=7))


@dataclass(frozen=True, slots=True)
class DigestPeriod:
    """What one issue covers: summaries first seen in [start, end)."""

    start: datetime
    end: datetime


def digest_period(end: datetime, last_end: datetime | None) -> DigestPeriod | None:
    """The period an issue ending at `end` covers; None when the last issue already reaches `end`.

    Periods follow on from each other with neither gap nor overlap, however
    irregular the sends (`--now`, missed weeks): a missed week widens the next
    issue instead of making one issue per week. The first issue covers the week
    before its end.
    """
    if last_end is None:
        return DigestPeriod(end - timedelta(days=7), end)
    if end <= last_end:
        return None
    return DigestPeriod(last_end, end)


def digest_catch_up(now: datetime, last_end: datetime | None, schedule: DigestSchedule) -> bool:
    """At start-up: did a scheduled send pass that no issue covers (the process was down)?

    One catch-up run then covers everything since the last issue.
    """
    return last_end is None or schedule.latest(now) > last_end


def digest_order(items: Sequence[tuple[int | None, datetime]]) -> list[int]:
    """Indexes of (votes, date) pairs in digest order: most votes first, then newest first."""

    def key(i: int) -> tuple[int, float]:
        votes, when = items[i]
        return (-(votes if votes is not None else -1), -when.timestamp())

    return sorted(range(len(items)), key=key)


def digest_selection(wanted: Sequence[str], item_categories: Sequence[Sequence[str]]) -> tuple[int, ...]:
    """Indexes of the items a subscriber gets: all without wanted categories, else those sharing one."""
    if not wanted:
        return tuple(range(len(item_categories)))
    folded = {c.casefold() for c in wanted}
    return tuple(i for i, cats in enumerate(item_categories) if any(c.casefold() in folded for c in cats))


class SendTry(enum.StrEnum):
    """How one try of one digest send ended, in the words of ``digest_send_verdict``."""

    #: the server took the message
    ACCEPTED = "accepted"
    #: 4xx, or the connection dropped before the final dot
    TRANSIENT = "transient"
    #: the answer to the final dot was lost: the server may have it
    MAYBE_DELIVERED = "maybe_delivered"
    #: 5xx for this recipient
    REFUSED = "refused"
    #: the run stopped first, or the server refused *us*: not this recipient's fault, the try does not count
    NOT_SENT = "not_sent"


def digest_send_verdict(
    outcome: SendTry,
    *,
    attempts: int,
    now: datetime,
    base: float,
    maximum: float,
    max_attempts: int,
    rng: random.Random | None = None,
) -> tuple[SendState, datetime | None]:
    """What becomes of one digest send after one try: (new state, when to try again)."""
    if outcome == SendTry.ACCEPTED:
        return SendState.SENT, None
    if outcome == SendTry.NOT_SENT:
        return SendState.PENDING, now
    if outcome == SendTry.REFUSED:
        return SendState.FAILED, None
    if outcome in (SendTry.TRANSIENT, SendTry.MAYBE_DELIVERED):
        if attempts >= max_attempts:
            return SendState.FAILED, None
        return SendState.PENDING, now + backoff_delay(attempts, base=base, maximum=maximum, rng=rng)
    raise ValueError(f"unknown send outcome {outcome!r}")


class PublishVerdict(enum.Enum):
    """What becomes of a delivery whose publish call failed (see ``publish_failure_verdict``)."""

    #: the channel's credentials are bad: pause the channel, keep the delivery pending (due now)
    PAUSE = "pause"
    #: the post will never go through as it is: failed
    FAIL = "fail"
    #: the post may be out: uncertain, reconciled (not posted again) at the backoff time
    RECONCILE = "reconcile"
    #: out of attempts: dead
    GIVE_UP = "give_up"
    #: try again at the backoff time, or the platform's reset time when it gave one
    RETRY = "retry"


def publish_failure_verdict(
    error: PublishError,
    *,
    attempts: int,
    max_attempts: int,
    now: datetime,
    base: float,
    maximum: float,
    rng: random.Random | None = None,
) -> tuple[PublishVerdict, datetime | None]:
    """What becomes of a delivery after its `attempts`-th try failed with `error`: (verdict, when to try again).

    The time is None for FAIL and GIVE_UP, `now` for PAUSE. A post that may be
    out is reconciled however many attempts it took: posting it again could
    post it twice.
    """
    if isinstance(error, AuthPublishError):
        return PublishVerdict.PAUSE, now
    if isinstance(error, PermanentPublishError):
        return PublishVerdict.FAIL, None
    if isinstance(error, TransientPublishError) and error.maybe_sent:
        return PublishVerdict.RECONCILE, retry_time(now, attempts, base=base, maximum=maximum, rng=rng)
    if attempts >= max_attempts:
        return PublishVerdict.GIVE_UP, None
    platform_time = error.retry_at if isinstance(error, TransientPublishError) else None
    return PublishVerdict.RETRY, retry_time(
        now, attempts, base=base, maximum=maximum, platform_time=platform_time, rng=rng
    )


def bounce_due(permanent_failures: int, bounce_after: int) -> bool:
    """An address refused this many times in a row (5xx) is bounced: never mailed again."""
    return permanent_failures >= bounce_after


def rate_window(
    now: datetime, window_start: datetime | None, count: int, *, window: timedelta, limit: int
) -> tuple[bool, datetime, int]:
    """A fixed-window rate limit: (allowed, new window start, new count) for one more request."""
    if window_start is None or now - window_start >= window or now < window_start:
        return True, now, 1
    if count >= limit:
        return False, window_start, count
    return True, window_start, count + 1
