"""The dispatcher: claims due deliveries, calls one publisher each, records the outcome.

Safe to run in several processes: a worker reserves a due row (SKIP LOCKED on
PostgreSQL, an immediate transaction on SQLite), renders its post, and marks
it `in_flight` with that exact post in a commit made before the network call.
Rows left in flight by a dead worker become `uncertain` and are reconciled
with proof, never blindly re-sent. While one post is on the network the next
is reserved and rendered. A lost database connection is waited out: the
outcome of a post already made is kept in memory and written once the
database is back.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot import content
from bot.channels import CHANNELS, channel_mode, channel_spec, enabled_channels
from bot.claims import claimant_id, holder_is_dead, running
from bot.decide import Pacing, PublishVerdict, pacing_wait, publish_failure_verdict, retry_time
from bot.dispatch_report import DispatchReport, Outcomes
from bot.errors import (
    AuthPublishError,
    BotError,
    PermanentPublishError,
    PublishError,
    RenderError,
    StoreError,
    TransientPublishError,
)
from bot.records import Attempt, Delivery, DeliveryClaim, DeliveryState, Post

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)

#: uncertain deliveries that reconciliation could not settle wait this long for an operator
OPERATOR_HOLD = timedelta(days=3650)
#: longest wait between two tries to write an outcome while the database is unreachable
STORE_RETRY_MAX_SECONDS = 5.0


@dataclass(frozen=True)
class _Ready:
    """A reserved delivery with its post rendered (not saved yet), or the reason it could not be."""

    reserved: DeliveryClaim
    post: Post | None
    error: RenderError | None = None


class Dispatcher:
    """One pass (`run_once`) over due deliveries; `worker` repeats it (bot.scheduler.drain_pass)."""

    def __init__(self, app: App, *, stop: threading.Event | None = None, worker: str | None = None) -> None:
        self.app = app
        self.stop = stop or threading.Event()
        self.worker = worker or claimant_id("dispatch")
        s = app.settings.dispatch
        self.lease = timedelta(seconds=s.lease_seconds)

    # ---- decisions around the loop (data in, data out) ----

    def _allowed_channels(
        self, report: DispatchReport, paused: Collection[str], only: Collection[str] | None = None
    ) -> list[str]:
        """Channels that may post now: not paused, within pacing and caps (the claim skips ones paused since);
        with `only`, just those."""
        allowed = []
        for channel in CHANNELS:
            if only is not None and channel not in only:
                continue
            if channel in paused or channel in report.paused:
                if channel not in report.paused:
                    report.paused.append(channel)
                continue
            if self._paced(channel, report):
                continue
            allowed.append(channel)
        return allowed

    def _lane_channels(self, paused: Collection[str]) -> list[str]:
        """The channels more than one lane may post to: live, not paused, without pacing or caps (their
        counts must be exact: one post at a time), and whose publisher may post several at once."""
        settings = self.app.settings
        return [
            c
            for c in enabled_channels(settings)
            if c not in paused and channel_spec(c).parallel and self._pacing(c) is None and channel_mode(settings, c)[0]
        ]

    def _pacing(self, channel: str) -> Pacing | None:
        cs = self.app.settings.channel(channel)
        pacing = Pacing(timedelta(minutes=cs.min_interval_minutes), cs.daily_cap, cs.monthly_cap)
        return None if pacing == Pacing() else pacing

    def _paced(self, channel: str, report: DispatchReport) -> bool:
        """True when the channel's pacing or caps say wait (noted in the report); no query without pacing."""
        pacing = self._pacing(channel)
        if pacing is None:
            return False
        now = self.app.clock()
        today, month, last = self.app.store.sent_counts(channel, now=now)
        wait = pacing_wait(pacing, now=now, last_sent=last, sent_today=today, sent_this_month=month)
        if wait is None:
            return False
        report.waiting[channel] = f"{wait[1]}; next post at {wait[0].isoformat(timespec='minutes')}"
        return True

    # ---- the loop ----

    def run_once(self) -> DispatchReport:
        """Recover abandoned claims, reconcile uncertain ones, then send what is due; exit when nothing is."""
        with running(self.worker):
            return self._pass()

    def _pass(self) -> DispatchReport:
        report = DispatchReport()
        store = self.app.store
        # Between passes this dispatcher holds no claim: any still marked as ours was
        # abandoned when the database went away mid-delivery.
        gone = store.expire_in_flight(
            now=self.app.clock(), dead_workers=lambda w: w == self.worker or holder_is_dead(w)
        )
        for did in gone:
            log.warning("delivery %d was in flight when its worker stopped: now uncertain, reconciling", did)
        while not self.stop.is_set():
            d = store.claim_uncertain(
                now=self.app.clock(), channels=list(CHANNELS), worker=self.worker, lease=self.lease
            )
            if d is None:
                break
            self._reconcile(d, report)
        paused = store.paused_channels()
        most = self.app.settings.dispatch.lanes
        parallel = self._lane_channels(paused) if most > 1 else []
        # A lane per delivery due on the channels that allow several at once, up to `lanes`: a pass with
        # nothing or one post to send starts no thread (nor its empty reservation query).
        due = store.due_count(now=self.app.clock(), channels=parallel, limit=most) if parallel else 0
        if due < 2 or self.stop.is_set():
            self._send_lane(report, paused)
            return report
        # More lanes, each a pass of its own (its own claims, alive while it runs), taking only the
        # channels that allow it; this one takes every channel, so paced ones post one at a time.
        lanes = [
            (Dispatcher(self.app, stop=self.stop, worker=f"{self.worker}:lane{k}"), DispatchReport())
            for k in range(1, due)
        ]
        with ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix="dispatch-lane") as pool:
            others = [pool.submit(lane.run_lane, r, paused, parallel) for lane, r in lanes]
            self._send_lane(report, paused)
            for other in others:
                other.result()
        for _, r in lanes:
            report.merge(r)
        return report

    def run_lane(self, report: DispatchReport, paused: Collection[str], only: Collection[str]) -> None:
        """Send what is due on `only` (another lane of a pass), as this pass's own claimant."""
        with running(self.worker):
            self._send_lane(report, paused, only)

    def _send_lane(self, report: DispatchReport, paused: Collection[str], only: Collection[str] | None = None) -> None:
        # One delivery ahead: the next is reserved and its post rendered while this one
        # is on the network, so a worker's time per delivery is little more than the
        # network's. It is marked in flight (with its post) only right before its own
        # network call: a crash leaves nothing more to reconcile than without it. The
        # outcome of a post made is written on the same helper thread while the next
        # post is on the network: until then a crash leaves it in flight, which
        # reconciliation settles with proof, as for a crash during the network call.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dispatch-ahead") as ahead:
            upcoming: Future[_Ready | None] | None = None
            outcomes = Outcomes(ahead)

            def next_ahead() -> None:
                nonlocal upcoming
                if upcoming is None:
                    upcoming = ahead.submit(self._prepare, self._allowed_channels(report, paused, only))

            def sending() -> None:
                outcomes.start()
                next_ahead()

            if not self.stop.is_set():
                next_ahead()
            try:
                while upcoming is not None:
                    ready = upcoming.result()
                    upcoming = None
                    if ready is None:
                        break
                    if self.stop.is_set():
                        self._give_back(ready, "the worker stopped before sending it")
                        break
                    # The next one is prepared once this one is marked in flight: rendering
                    # (CPU) beside this thread's own database calls would slow them down,
                    # since both need Python's interpreter lock; beside the network wait it is free.
                    self._deliver(ready, report, sending=sending, outcomes=outcomes)
                    next_ahead()
            finally:
                if upcoming is not None:
                    self._give_back_later(upcoming)
                outcomes.flush()

    def _prepare(self, channels: list[str]) -> _Ready | None:
        """Reserve the next due delivery and render its post (not saved yet); None when nothing is due."""
        reserved = self.app.store.reserve(now=self.app.clock(), channels=channels, worker=self.worker, lease=self.lease)
        if reserved is None:
            return None
        d = reserved.delivery
        if reserved.post is not None or d.channel not in enabled_channels(self.app.settings):
            return _Ready(reserved, reserved.post)  # retries send exactly the text fixed on the first attempt
        try:
            return _Ready(
                reserved,
                content.post_for(
                    self.app,
                    d.channel,
                    reserved.summary,
                    text=reserved.text,
                    papers=reserved.papers,
                    text_cached=reserved.text is not None,  # the reservation read the render cache
                ),
            )
        except RenderError as exc:
            return _Ready(reserved, None, exc)

    def _give_back(self, ready: _Ready, reason: str) -> None:
        """Return a reservation that was not sent (no attempt is counted)."""
        log.info("delivery %d given back: %s", ready.reserved.delivery.id, reason)
        self.app.store.unreserve(ready.reserved.delivery.id, worker=self.worker)

    def _give_back_later(self, upcoming: Future[_Ready | None]) -> None:
        """Return the reservation made ahead when the pass ends early; if the database is gone,
        the next pass frees it."""
        try:
            ready = upcoming.result()
            if ready is not None:
                self._give_back(ready, "the pass ended before sending it")
        except BotError as exc:
            log.warning("a delivery reserved ahead could not be given back now: %s", exc)

    def _settle(self, write: Callable[[], None]) -> None:
        """Write an outcome, waiting out a lost database connection.

        The network call is done and its outcome known: losing it would leave the
        delivery to reconciliation (another call to the network). Only a stop
        request ends the wait; the claim then expires into reconciliation.
        """
        wait = 0.5
        while True:
            try:
                write()
                return
            except StoreError as exc:
                if self.stop.is_set():
                    raise
                log.warning("cannot record a delivery's outcome (%s); trying again in %g s", exc, wait)
            self.stop.wait(wait)
            wait = min(wait * 2, STORE_RETRY_MAX_SECONDS)

    def _deliver(
        self, ready: _Ready, report: DispatchReport, *, sending: Callable[[], None], outcomes: Outcomes
    ) -> None:
        """Send one reserved delivery and record the outcome; `sending` is called once it is marked in flight."""
        store = self.app.store
        d = ready.reserved.delivery
        if self._pacing(d.channel) is not None:
            outcomes.flush()  # pacing counts the posts made: all of them written first
        if d.channel not in enabled_channels(self.app.settings):
            store.mark_final(
                d.id,
                state=DeliveryState.SKIPPED,
                attempt=Attempt(d.id, self.app.clock(), "skipped", message=f"channel {d.channel} is disabled"),
            )
            return
        if d.channel in report.paused or self._paced(d.channel, report):
            # Reserved ahead, before the previous post paused the channel or reached its cap.
            self._give_back(ready, f"channel {d.channel} is paused or capped")
            return
        if ready.error is not None or ready.post is None:
            now = self.app.clock()
            store.mark_final(
                d.id,
                state=DeliveryState.FAILED,
                attempt=Attempt(d.id, now, "permanent", message=f"render: {ready.error}"),
            )
            report.failed += 1
            log.error("delivery %d (%s) failed to render: %s", d.id, d.channel, ready.error)
            return
        post = ready.post
        publisher = self.app.publisher(d.channel)
        # From this commit on, the post may be on the network: a crash is reconciled.
        fixed_before = ready.reserved.post is not None
        if not store.start_sending(
            d.id, worker=self.worker, post=None if fixed_before else post, now=self.app.clock(), lease=self.lease
        ):
            log.warning("delivery %d: its reservation ran out before it was sent; another worker has it", d.id)
            return
        sending()
        d = dataclasses.replace(d, state=DeliveryState.IN_FLIGHT, attempts=d.attempts + 1)
        try:
            published = publisher.publish(post)
        except PublishError as exc:
            self._failed(d, exc, report)
            return
        except Exception as exc:  # a bug in one channel must not stop the others
            log.exception("delivery %d (%s): unexpected error", d.id, d.channel)
            self._failed(d, TransientPublishError(f"unexpected {type(exc).__name__}: {exc}"), report)
            return
        now = self.app.clock()
        outcomes.add(lambda: self._settle(lambda: store.mark_sent(d.id, published, now=now)))
        report.sent += 1
        report.published.append((d.channel, d.guid, post.text.splitlines()[0] if post.text else ""))
        log.info(
            "delivery %d sent on %s%s: post %s",
            d.id,
            d.channel,
            "" if publisher.live else " (dry-run)",
            published.post_id,
        )

    def _failed(self, d: Delivery, exc: PublishError, report: DispatchReport) -> None:
        store = self.app.store
        settings = self.app.settings.dispatch
        now = self.app.clock()
        attempt = Attempt(d.id, now, _outcome(exc), exc.status, exc.code, str(exc))
        verdict, at = publish_failure_verdict(
            exc,
            attempts=d.attempts,
            max_attempts=settings.max_attempts,
            now=now,
            base=settings.backoff_base_seconds,
            maximum=settings.backoff_max_seconds,
        )
        if verdict is PublishVerdict.PAUSE:
            # The post is fine; the credentials are not. Pause and keep it pending.
            self._settle(lambda: store.pause_channel(d.channel, str(exc), now=now))
            self._settle(lambda: store.mark_retry(d.id, due_at=now, attempt=attempt))
            if d.channel not in report.paused:
                report.paused.append(d.channel)
            log.error("channel %s paused: %s", d.channel, exc)
        elif verdict is PublishVerdict.FAIL:
            self._settle(lambda: store.mark_final(d.id, state=DeliveryState.FAILED, attempt=attempt))
            report.failed += 1
            log.error("delivery %d (%s) failed for good: %s", d.id, d.channel, exc)
        elif verdict is PublishVerdict.GIVE_UP:
            self._settle(lambda: store.mark_final(d.id, state=DeliveryState.DEAD, attempt=attempt))
            report.failed += 1
            log.error("delivery %d (%s) given up after %d attempts: %s", d.id, d.channel, d.attempts, exc)
        elif verdict is PublishVerdict.RECONCILE:
            # The post may be out: the next attempt reconciles instead of posting again.
            assert at is not None
            self._settle(
                lambda: store.mark_retry(d.id, due_at=at, attempt=attempt, state=DeliveryState.UNCERTAIN.value)
            )
            report.retried += 1
            log.warning(
                "delivery %d (%s) may or may not be out; reconciling at %s: %s",
                d.id,
                d.channel,
                at.isoformat(timespec="seconds"),
                exc,
            )
        else:
            assert at is not None
            self._settle(lambda: store.mark_retry(d.id, due_at=at, attempt=attempt))
            report.retried += 1
            log.warning(
                "delivery %d (%s) will be retried at %s: %s", d.id, d.channel, at.isoformat(timespec="seconds"), exc
            )

    def _reconcile(self, d: Delivery, report: DispatchReport) -> None:
        store = self.app.store
        now = self.app.clock()
        post = store.stored_post(d.id)
        if post is None:
            # The post is saved before any network call: without it, nothing was sent.
            store.release(d.id, now=now, due_at=now, reason="claimed but never sent; queued again")
            log.info("delivery %d was never sent before the crash: queued again", d.id)
            return
        if d.channel in store.paused_channels():
            store.mark_retry(
                d.id,
                due_at=now + timedelta(minutes=5),
                attempt=Attempt(d.id, now, "unproven", message="channel paused; reconciliation waits"),
                state=DeliveryState.UNCERTAIN.value,
            )
            return
        try:
            proof = self.app.publisher(d.channel).reconcile(post, since=d.created_at)
        except AuthPublishError as exc:
            store.pause_channel(d.channel, str(exc), now=now)
            store.mark_retry(
                d.id,
                due_at=now,
                attempt=Attempt(d.id, now, "auth", exc.status, exc.code, str(exc)),
                state=DeliveryState.UNCERTAIN.value,
            )
            return
        except PublishError as exc:
            at = retry_time(
                now,
                max(d.attempts, 1),
                base=self.app.settings.dispatch.backoff_base_seconds,
                maximum=self.app.settings.dispatch.backoff_max_seconds,
            )
            store.mark_retry(
                d.id,
                due_at=at,
                attempt=Attempt(d.id, now, "unproven", exc.status, exc.code, f"reconciliation failed: {exc}"),
                state=DeliveryState.UNCERTAIN.value,
            )
            log.warning("delivery %d: reconciliation failed, will try again: %s", d.id, exc)
            return
        if proof is not None:
            self._settle(lambda: store.mark_sent(d.id, proof, now=now, outcome="reconciled"))
            report.reconciled += 1
            log.info("delivery %d reconciled on %s: post %s", d.id, d.channel, proof.post_id)
        else:
            self._hold_for_operator(d, now, report)

    def _hold_for_operator(self, d: Delivery, now: datetime, report: DispatchReport) -> None:
        """No proof either way after a crash mid-post: only the operator can tell, so the delivery waits for them."""
        self.app.store.mark_retry(
            d.id,
            due_at=now + OPERATOR_HOLD,
            attempt=Attempt(
                d.id,
                now,
                "unproven",
                message=(
                    f"no proof that it was posted; check the {d.channel} account, then run `retry {d.id}` or "
                    f"`skip {d.id}`"
                ),
            ),
            state=DeliveryState.UNCERTAIN.value,
        )
        report.held += 1
        log.error("delivery %d (%s) held for the operator: no proof it was posted", d.id, d.channel)


def _outcome(exc: PublishError) -> str:
    if isinstance(exc, AuthPublishError):
        return "auth"
    if isinstance(exc, PermanentPublishError):
        return "duplicate" if exc.duplicate else "permanent"
    return "transient"
