"""The dispatcher: claims due deliveries, calls one publisher each, records the outcome.

Safe to run in several processes: a claim is a committed `in_flight` row
(SKIP LOCKED on PostgreSQL, an immediate transaction on SQLite) made before
the network call. Rows left in flight by a dead worker become `uncertain`
and are reconciled with proof, never blindly re-sent.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from bot import content
from bot.decide import Pacing, pacing_wait, retry_time
from bot.errors import (
    AuthPublishError,
    PermanentPublishError,
    PublishError,
    RenderError,
    StoreError,
    TransientPublishError,
)
from bot.publishers import enabled_channels
from bot.records import Attempt, Delivery, DeliveryState, Post
from bot.settings import CHANNELS

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)

_HOST = socket.gethostname()
#: uncertain deliveries that reconciliation could not settle wait this long for an operator
OPERATOR_HOLD = timedelta(days=3650)


def worker_id() -> str:
    return f"{_HOST}:{os.getpid()}:{int(time.time())}"


def worker_is_dead(claimed_by: str) -> bool:
    """True when the claiming worker ran on this host and its process is gone."""
    host, _, rest = claimed_by.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass
class DispatchReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    reconciled: int = 0
    held: int = 0
    paused: list[str] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)
    #: (channel, summary guid, first line of the text) of each post made in this pass
    published: list[tuple[str, str, str]] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.sent} sent", f"{self.retried} to retry", f"{self.failed} failed"]
        if self.reconciled:
            parts.append(f"{self.reconciled} reconciled")
        if self.held:
            parts.append(f"{self.held} held for the operator")
        for channel, why in self.waiting.items():
            parts.append(f"{channel} waiting: {why}")
        for channel in self.paused:
            parts.append(f"{channel} paused")
        return ", ".join(parts)


class Dispatcher:
    """One pass (`run_once`) or passes until stopped (`run_forever`) over due deliveries."""

    def __init__(self, app: App, *, stop: threading.Event | None = None, worker: str | None = None) -> None:
        self.app = app
        self.stop = stop or threading.Event()
        self.worker = worker or worker_id()
        s = app.settings.dispatch
        self.lease = timedelta(seconds=s.lease_seconds)

    # ---- decisions around the loop (data in, data out) ----

    def _allowed_channels(self, report: DispatchReport) -> list[str]:
        """Channels that may post now: enabled, not paused, within pacing and caps."""
        store = self.app.store
        now = self.app.clock()
        paused = store.paused_channels()
        allowed = []
        for channel in CHANNELS:
            if channel in paused:
                if channel not in report.paused:
                    report.paused.append(channel)
                continue
            cs = self.app.settings.channel(channel)
            pacing = Pacing(timedelta(minutes=cs.min_interval_minutes), cs.daily_cap, cs.monthly_cap)
            if pacing != Pacing():
                today, month, last = store.sent_counts(channel, now=now)
                wait = pacing_wait(pacing, now=now, last_sent=last, sent_today=today, sent_this_month=month)
                if wait is not None:
                    report.waiting[channel] = f"{wait[1]}; next post at {wait[0].isoformat(timespec='minutes')}"
                    continue
            allowed.append(channel)
        return allowed

    # ---- the loop ----

    def run_once(self) -> DispatchReport:
        """Recover abandoned claims, reconcile uncertain ones, then send what is due; exit when nothing is."""
        report = DispatchReport()
        store = self.app.store
        gone = store.expire_in_flight(now=self.app.clock(), dead_workers=worker_is_dead)
        for did in gone:
            log.warning("delivery %d was in flight when its worker stopped: now uncertain, reconciling", did)
        while not self.stop.is_set():
            d = store.claim_uncertain(now=self.app.clock(), channels=list(CHANNELS), worker=self.worker, lease=self.lease)
            if d is None:
                break
            self._reconcile(d, report)
        while not self.stop.is_set():
            allowed = self._allowed_channels(report)
            d = store.claim(now=self.app.clock(), channels=allowed, worker=self.worker, lease=self.lease)
            if d is None:
                break
            self._deliver(d, report)
        return report

    def run_forever(self, *, idle_seconds: float | None = None) -> None:
        """Drain continuously (the `worker` command) until `stop` is set."""
        idle = idle_seconds if idle_seconds is not None else self.app.settings.dispatch.interval_seconds
        while not self.stop.is_set():
            try:
                report = self.run_once()
                if report.sent or report.failed or report.reconciled:
                    log.info("dispatch: %s", report.summary())
            except StoreError as exc:
                # A lost database connection is retried, not fatal.
                log.error("dispatch: %s; retrying in %g s", exc, idle)
            self.stop.wait(idle)

    def _post(self, d: Delivery) -> Post:
        stored = self.app.store.stored_post(d.id)
        if stored is not None:
            return stored  # retries send exactly the text fixed on the first attempt
        summary = self.app.store.summary(d.summary_id)
        post = content.post_for(self.app, d.channel, summary)
        self.app.store.save_post(d.id, post, now=self.app.clock())
        return post

    def _deliver(self, d: Delivery, report: DispatchReport) -> None:
        store = self.app.store
        if d.channel not in enabled_channels(self.app.settings):
            store.mark_final(d.id, state=DeliveryState.SKIPPED, attempt=Attempt(d.id, self.app.clock(), "skipped", message=f"channel {d.channel} is disabled"))
            return
        try:
            post = self._post(d)
        except RenderError as exc:
            now = self.app.clock()
            store.mark_final(d.id, state=DeliveryState.FAILED, attempt=Attempt(d.id, now, "permanent", message=f"render: {exc}"))
            report.failed += 1
            log.error("delivery %d (%s) failed to render: %s", d.id, d.channel, exc)
            return
        publisher = self.app.publisher(d.channel)
        try:
            published = publisher.publish(post)
        except PublishError as exc:
            self._failed(d, exc, report)
            return
        except Exception as exc:  # a bug in one channel must not stop the others
            log.exception("delivery %d (%s): unexpected error", d.id, d.channel)
            self._failed(d, TransientPublishError(f"unexpected {type(exc).__name__}: {exc}"), report)
            return
        store.mark_sent(d.id, published, now=self.app.clock())
        report.sent += 1
        report.published.append((d.channel, d.guid, post.text.splitlines()[0] if post.text else ""))
        log.info("delivery %d sent on %s%s: post %s", d.id, d.channel, "" if publisher.live else " (dry-run)", published.post_id)

    def _failed(self, d: Delivery, exc: PublishError, report: DispatchReport) -> None:
        store = self.app.store
        settings = self.app.settings.dispatch
        now = self.app.clock()
        attempt = Attempt(d.id, now, _outcome(exc), exc.status, exc.code, str(exc))
        if isinstance(exc, AuthPublishError):
            # The post is fine; the credentials are not. Pause and keep it pending.
            store.pause_channel(d.channel, str(exc), now=now)
            store.mark_retry(d.id, due_at=now, attempt=attempt)
            if d.channel not in report.paused:
                report.paused.append(d.channel)
            log.error("channel %s paused: %s", d.channel, exc)
        elif isinstance(exc, PermanentPublishError):
            store.mark_final(d.id, state=DeliveryState.FAILED, attempt=attempt)
            report.failed += 1
            log.error("delivery %d (%s) failed for good: %s", d.id, d.channel, exc)
        elif isinstance(exc, TransientPublishError) and exc.maybe_sent:
            # The post may be out: the next attempt reconciles instead of posting again.
            at = retry_time(now, d.attempts, base=settings.backoff_base_seconds, maximum=settings.backoff_max_seconds)
            store.mark_retry(d.id, due_at=at, attempt=attempt, state=DeliveryState.UNCERTAIN.value)
            report.retried += 1
            log.warning("delivery %d (%s) may or may not be out; reconciling at %s: %s", d.id, d.channel, at.isoformat(timespec="seconds"), exc)
        elif d.attempts >= settings.max_attempts:
            store.mark_final(d.id, state=DeliveryState.DEAD, attempt=attempt)
            report.failed += 1
            log.error("delivery %d (%s) given up after %d attempts: %s", d.id, d.channel, d.attempts, exc)
        else:
            at = retry_time(
                now, d.attempts, base=settings.backoff_base_seconds, maximum=settings.backoff_max_seconds,
                platform_time=getattr(exc, "retry_at", None),
            )
            store.mark_retry(d.id, due_at=at, attempt=attempt)
            report.retried += 1
            log.warning("delivery %d (%s) will be retried at %s: %s", d.id, d.channel, at.isoformat(timespec="seconds"), exc)

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
            store.mark_retry(d.id, due_at=now + timedelta(minutes=5), attempt=Attempt(d.id, now, "unproven", message="channel paused; reconciliation waits"), state=DeliveryState.UNCERTAIN.value)
            return
        try:
            proof = self.app.publisher(d.channel).reconcile(post)
        except AuthPublishError as exc:
            store.pause_channel(d.channel, str(exc), now=now)
            store.mark_retry(d.id, due_at=now, attempt=Attempt(d.id, now, "auth", exc.status, exc.code, str(exc)), state=DeliveryState.UNCERTAIN.value)
            return
        except PublishError as exc:
            at = retry_time(now, max(d.attempts, 1), base=self.app.settings.dispatch.backoff_base_seconds, maximum=self.app.settings.dispatch.backoff_max_seconds)
            store.mark_retry(d.id, due_at=at, attempt=Attempt(d.id, now, "unproven", exc.status, exc.code, f"reconciliation failed: {exc}"), state=DeliveryState.UNCERTAIN.value)
            log.warning("delivery %d: reconciliation failed, will try again: %s", d.id, exc)
            return
        if proof is not None:
            store.mark_sent(d.id, proof, now=now, outcome="reconciled")
            report.reconciled += 1
            log.info("delivery %d reconciled on %s: post %s", d.id, d.channel, proof.post_id)
        else:
            store.mark_retry(
                d.id, due_at=now + OPERATOR_HOLD,
                attempt=Attempt(d.id, now, "unproven", message=f"no proof that it was posted; check the {d.channel} account, then run `retry {d.id}` or `skip {d.id}`"),
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
