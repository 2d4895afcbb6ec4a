"""One poll of the source: fetch, parse, decide, store — the thin loop around bot.decide.

It never renders or publishes: it writes new summaries and their deliveries
(one transaction) and leaves publishing to the dispatcher.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from bot.channels import enabled_channels
from bot.decide import next_poll_time, plan_poll, retry_time
from bot.errors import SourceError
from bot.records import PollReport
from bot.store.charts import POLL_FAILED, POLL_NOT_MODIFIED, POLL_OK

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)


# long: one poll in order (fetch, parse, decide, store, log), each step a call; split, it would hide the order
def poll(
    app: App,
    *,
    backfill: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    force: bool = True,
) -> PollReport:
    """Poll the configured source once.

    `force=False` (the scheduler) respects the stored next-poll time, which
    carries backoff, Retry-After and Cache-Control; a command line poll asks anyway.
    Raises SourceError when the source failed (after recording it).
    """
    settings = app.settings
    store = app.store
    source = app.source
    now = app.clock()
    state = store.source_state(source.url)
    if not force and state.next_poll_at is not None and state.next_poll_at > now:
        log.debug("poll skipped: next poll of %s due at %s", source.url, state.next_poll_at.isoformat())
        return PollReport(source=source.url, status=0)
    interval = timedelta(minutes=settings.source.poll_interval_minutes)
    jitter = timedelta(seconds=settings.source.poll_jitter_seconds)

    try:
        fetch = source.fetch(state, now=now)
        # The next poll counts from the end of this download, which may have taken a while.
        fetched_at = app.clock()
        if fetch.body is None:
            store.record_not_modified(
                source.url,
                now=now,
                fetch=fetch,
                next_poll_at=next_poll_time(
                    fetched_at, interval=interval, jitter=jitter, fresh_until=fetch.fresh_until
                ),
            )
            store.log_poll(source.url, now=now, result=POLL_NOT_MODIFIED)
            # DEBUG: the caller (command or scheduler job) reports the poll's line, once.
            log.debug("poll %s: not modified", source.url)
            return PollReport(source=source.url, status=fetch.status)

        from bot.sources.parse import parse_feed

        parsed = parse_feed(
            fetch.body, source.url, content_type=fetch.content_type, min_votes=settings.source.min_votes
        )
    except SourceError as exc:
        failures = state.failures + 1
        # From when it failed, not when it started: a "next try" already past would poll again at once.
        at = retry_time(
            app.clock(),
            failures,
            base=settings.source.backoff_base_seconds,
            maximum=settings.source.backoff_max_seconds,
            platform_time=exc.retry_after,
        )
        store.record_poll_error(source.url, now=now, error=str(exc), status=None, next_poll_at=at)
        store.log_poll(source.url, now=now, result=POLL_FAILED)
        log.error(
            "poll %s failed (%d in a row; next try %s): %s", source.url, failures, at.isoformat(timespec="seconds"), exc
        )
        raise

    for problem in parsed.problems:
        log.warning("skipped item: %s", problem)
    first = state.first_polled_at is None
    channels = {
        c: settings.channel(c).republish_on_edit or settings.source.on_edit == "republish"
        for c in enabled_channels(settings)
    }
    known = store.known_versions([s.guid for s in parsed.summaries])
    plan = plan_poll(
        parsed.summaries,
        known,
        first_poll=first,
        backfill=settings.source.backfill if backfill is None else backfill,
        channels=channels,
        limit=settings.source.max_new_per_poll,
    )
    total = len(plan.new) or 1
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total)

    ids = store.apply_poll(
        source.url,
        plan,
        now=now,
        fetch=fetch,
        next_poll_at=next_poll_time(fetched_at, interval=interval, jitter=jitter, fresh_until=fetch.fresh_until),
        problems=parsed.problems,
        progress=step,
    )
    store.log_poll(source.url, now=now, result=POLL_OK)
    report = PollReport(
        source=source.url,
        status=fetch.status,
        new=len(plan.new),
        edited=len(plan.edited),
        unchanged=plan.unchanged,
        queued=len(plan.queue),
        problems=parsed.problems,
        first_poll=first,
        backfilled=len(plan.backfilled),
        new_ids=tuple(ids.values()),
        held=len(plan.held),
    )
    log.debug("%s", report.describe())  # reported by the caller, once (held summaries included)
    return report
