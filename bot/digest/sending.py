"""Sending an issue: claims, the pool's connections, leases and the hand-over, one pass and the retries.

The thin loop around pure decisions (bot.decide: periods, schedule, item
order and selection, what becomes of a send) and the store's digest half
(bot.store.digests). Sending goes through a ``MailerPool``: the calling thread
claims sends and builds their messages; each connection's thread records, in
one write per message, the outcome of its last send and that the next one is
handing over, before that one's SMTP transaction starts.

The crash window, exactly: a send is committed as ``handing_over`` before its
transaction and as ``sent`` right after the server's 250. A process that dies
in between (at most one send per connection) cannot know whether the server
kept the message: those rows are sent again with the same Message-ID and the
same bytes (mailbox providers deduplicate on it) and marked
``possibly_duplicated``; every other subscriber gets exactly one copy, and
nobody is skipped. A lost answer after the final dot (``MaybeDelivered``) is
handled the same way.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.claims import claimant_id, holder_is_dead, running
from bot.decide import SendTry, digest_period, digest_send_verdict
from bot.digest.issues import _describe, _items_of, _schedule, build_digest
from bot.errors import MailError, PermanentMailError, StoreError
from bot.mail import (
    AddressNotSupported,
    ComposedDigest,
    Digest,
    Email,
    MailerPool,
    MaybeDelivered,
    NotSent,
    RecipientRefused,
    SenderRefused,
    SmtpMailer,
    signed_link,
)
from bot.mail.message import digest_message_id
from bot.records import SendClaim, SendState, StoredDigest
from bot.store.sending import SendOutcome, SendRecorder
from bot.wording import plural

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass
class SendTally:
    """What one pass over one issue's sends did."""

    sent: int = 0
    failed: int = 0
    retrying: int = 0
    not_sent: int = 0
    stopped: str | None = None


def _outcome(exc: Exception | None) -> SendTry:
    """The kind of one try's result, in the words of decide.digest_send_verdict."""
    if exc is None:
        return SendTry.ACCEPTED
    if isinstance(exc, (NotSent, SenderRefused)):
        return SendTry.NOT_SENT  # not this recipient's fault: the try does not count
    if isinstance(exc, MaybeDelivered):
        return SendTry.MAYBE_DELIVERED
    if isinstance(exc, PermanentMailError):
        return SendTry.REFUSED
    return SendTry.TRANSIENT


def _pool(app: App) -> tuple[MailerPool, bool]:
    """digest.connections SMTP connections when mail is live; the app's one mailer otherwise. (pool, owned)"""
    if isinstance(app.mailer, SmtpMailer):
        return MailerPool([SmtpMailer(app.settings) for _ in range(app.settings.digest.connections)]), True
    return MailerPool([app.mailer]), False


class _Recorder:
    """The Handover of one issue's sending: each worker thread writes through its own SendRecorder.

    Each note is one write: the outcome of the worker's last send (decided by
    decide.digest_send_verdict) and the next send committed as handing_over
    before its SMTP transaction starts. The calling thread only claims, builds
    messages and counts.
    """

    def __init__(self, app: App, stored: StoredDigest, worker: str, held: dict[Email, SendClaim]) -> None:
        self.app = app
        self.stored = stored
        self.worker = worker
        self.held = held
        self.lease = timedelta(seconds=app.settings.dispatch.lease_seconds)
        #: email → (new state, outcome kind), for the calling thread's tally
        self.decided: dict[Email, tuple[SendState, SendTry]] = {}
        self._local = threading.local()
        self._made: list[SendRecorder] = []
        self._lock = threading.Lock()
        # SQLite takes one writer at a time anyway: this process's workers take turns here
        # (threads colliding in its busy handler wait milliseconds, here microseconds), on
        # one connection, whose page cache then stays warm. With a connection each, every
        # write would find its pages changed by another's and read them again.
        self._shared = app.store.dialect == "sqlite"
        self._writing: AbstractContextManager[Any] = threading.Lock() if self._shared else contextlib.nullcontext()

    def _recorder(self) -> SendRecorder:
        if self._shared:
            with self._lock:
                if not self._made:
                    self._made.append(self._new_recorder())
                return self._made[0]
        found: SendRecorder | None = getattr(self._local, "recorder", None)
        if found is None:
            found = self._local.recorder = self._new_recorder()
            with self._lock:
                self._made.append(found)
        return found

    def _new_recorder(self) -> SendRecorder:
        return self.app.store.send_recorder(
            self.stored.id, worker=self.worker, bounce_after=self.app.settings.digest.bounce_after
        )

    def _outcome(self, email: Email, error: Exception | None, now: datetime) -> tuple[SendOutcome, bool]:
        claim = self.held[email]
        d = self.app.settings.digest
        kind = _outcome(error)
        state, due_at = digest_send_verdict(
            kind,
            attempts=claim.attempts,
            now=now,
            base=d.retry_base_seconds,
            maximum=d.retry_max_seconds,
            max_attempts=d.max_attempts,
        )
        self.decided[email] = (state, kind)
        outcome = SendOutcome(
            claim.subscriber_id,
            state,
            due_at=due_at,
            error=None if error is None else f"{kind}: {error}"[:1000],
            possibly_duplicated=kind == SendTry.MAYBE_DELIVERED,
            released=kind == SendTry.NOT_SENT,
            # A server unable to take the address said nothing about the mailbox: no bounce.
            refused=kind == SendTry.REFUSED and not isinstance(error, AddressNotSupported),
        )
        return outcome, state == SendState.SENT and claim.failures > 0

    def note(self, done: tuple[Email, Exception | None] | None, going: Email | None) -> bool:
        now = self.app.clock()
        outcome, reset = self._outcome(*done, now) if done is not None else (None, False)
        recorder = self._recorder()
        with self._writing:
            return recorder.record(
                outcome,
                self.held[going].subscriber_id if going is not None else None,
                now=now,
                lease_until=now + self.lease,
                reset_failures=reset,
            )

    def close(self) -> None:
        with self._lock:
            for recorder in self._made:
                recorder.close()
            self._made.clear()


def send_issue(
    app: App, stored: StoredDigest, *, progress: Progress | None = None, stop: threading.Event | None = None
) -> SendTally:
    """Send whatever of one issue is due now, once; safe to run in several processes at once."""
    store = app.store
    settings = app.settings
    worker = claimant_id("digest")
    lease = timedelta(seconds=settings.dispatch.lease_seconds)
    try:
        with running(worker):
            return _send_pass(app, stored, worker, lease, progress=progress, stop=stop)
    finally:
        # Whatever is still marked as this pass's was abandoned (it stopped, or failed):
        # claimed ones are pending again, handing-over ones possibly duplicated. If the
        # database is what failed, the next pass does it (this pass is no longer running).
        try:
            store.release_abandoned_sends(now=app.clock(), dead_workers=lambda w: w == worker)
        except StoreError as exc:
            log.warning(
                "digest #%d: could not release this pass's sends now (%s); the next pass will", stored.issue, exc
            )


# long: one pass's closures (variant, message, emails, on_result) share its tally and claims; moved verbatim
def _send_pass(
    app: App,
    stored: StoredDigest,
    worker: str,
    lease: timedelta,
    *,
    progress: Progress | None,
    stop: threading.Event | None,
) -> SendTally:
    store = app.store
    settings = app.settings
    released, doubtful = store.release_abandoned_sends(now=app.clock(), dead_workers=holder_is_dead)
    if doubtful:
        log.warning(
            "digest #%d: %s handed over when their process stopped: sending them again with the "
            "same Message-ID (possibly duplicated after a crash)",
            stored.issue,
            plural(doubtful, "send was", "sends were") + " being",
        )
    if released:
        log.info(
            "digest #%d: %s claimed by a stopped process pending again",
            stored.issue,
            plural(released, "send is", "sends are"),
        )

    comp = app.composer
    items = _items_of(stored)
    composed: dict[int, ComposedDigest] = {}
    tally = SendTally()
    held: dict[Email, SendClaim] = {}
    due = store.digest_send_counts(stored.id).get("pending", 0)
    done = 0
    # Claims are committed in batches (a lease, nothing handed over yet): few enough statements per message.
    batch = max(128, 32 * settings.digest.connections)

    def variant(v: int) -> ComposedDigest:
        if v not in composed:
            chosen = tuple(items[i] for i in stored.variants[v]) if v < len(stored.variants) else items
            composed[v] = comp.compose(Digest(stored.issue, stored.period_start, stored.period_end, chosen))
        return composed[v]

    def message(claim: SendClaim) -> Email:
        # Links and Date are made at the issue's build time, so every copy of
        # one send, even after a crash, is the same message with the same Message-ID.
        at = stored.created_at
        return variant(claim.variant).for_recipient(
            claim.address,
            signed_link(settings, "unsubscribe", claim.address, now=at),
            signed_link(settings, "preferences", claim.address, now=at),
            now=at,
            message_id=digest_message_id(stored.issue, claim.subscriber_id, stored.nonce, comp.domain),
        )

    def emails() -> Iterator[Email]:
        nonlocal done
        after = 0
        while not (stop is not None and stop.is_set()):
            claims = store.claim_sends(stored.id, now=app.clock(), worker=worker, lease=lease, limit=batch, after=after)
            if not claims:
                return
            after = claims[-1].subscriber_id
            for claim in claims:
                try:
                    email = message(claim)
                except (RecipientRefused, ValueError) as exc:
                    store.fail_send(stored.id, claim.subscriber_id, worker=worker, error=f"message not built: {exc}")
                    tally.failed += 1
                    done += 1
                    continue
                held[email] = claim
                yield email

    recorder = _Recorder(app, stored, worker, held)

    def on_result(email: Email, exc: Exception | None) -> None:
        nonlocal done
        claim = held.pop(email)
        state, kind = recorder.decided.pop(email, (SendState.PENDING, SendTry.NOT_SENT))
        if kind == SendTry.MAYBE_DELIVERED:
            log.warning(
                "digest #%d to %s: %s; it will be sent again (possibly duplicated, same Message-ID)",
                stored.issue,
                claim.address,
                exc,
            )
        elif exc is not None and kind != SendTry.NOT_SENT:
            log.info("digest #%d to %s: %s (%s)", stored.issue, claim.address, exc, state)
        if state == SendState.SENT:
            tally.sent += 1
        elif state == SendState.FAILED:
            tally.failed += 1
        elif kind == SendTry.NOT_SENT:
            tally.not_sent += 1
        else:
            tally.retrying += 1
        done += 1
        if progress is not None:
            progress(min(done, due), due)

    pool, owned = _pool(app)
    try:
        report = pool.send_all(emails(), on_result, handover=recorder, stop=stop)
    finally:
        recorder.close()
        if owned:
            pool.close()
    # Claims taken but never offered to the pool (the run stopped): pending again, before
    # the issue is checked for completion.
    store.release_abandoned_sends(now=app.clock(), dead_workers=lambda w: w == worker)
    tally.stopped = report.stopped
    store.finish_digest(stored.id, now=app.clock())
    return tally


def send_digest(
    app: App, *, end_now: bool = False, progress: Progress | None = None, stop: threading.Event | None = None
) -> str:
    """`digest send`: finish unfinished issues, then the issue of the period ending at the last scheduled
    time (or now): built once, so sending a period again mails nobody twice."""
    store = app.store
    now = app.clock()
    lines = []
    stopped: list[str] = []
    for stored in store.unfinished_digests():
        tally = send_issue(app, stored, progress=progress, stop=stop)
        lines.append(_describe(app, stored, tally))
        if tally.stopped:
            stopped.append(tally.stopped)
    last = store.last_digest()
    end = now if end_now else _schedule(app).latest(now)
    period = digest_period(end, last.period_end if last else None)
    if stopped or (stop is not None and stop.is_set()):
        pass
    elif period is None:
        assert last is not None
        if not any(line.startswith(f"digest #{last.issue} ") for line in lines):
            lines.append(_describe(app, last))
        lines.append(
            f"nothing new to send: issue #{last.issue} already covers up to {last.period_end:%Y-%m-%d %H:%M} UTC"
            + (
                ""
                if end_now
                else f", past the last scheduled time ({end:%Y-%m-%d %H:%M} UTC); `digest send --now` ends a period now"
            )
        )
    else:
        built = build_digest(app, period, now=now)
        if isinstance(built, str):
            lines.append(built)
        else:
            tally = send_issue(app, built, progress=progress, stop=stop)
            lines.append(_describe(app, built, tally))
            if tally.stopped:
                stopped.append(tally.stopped)
    text = "\n".join(lines)
    if stopped and stopped[0] != "stopped on request":
        raise MailError(
            f"{text}\nstopped: {stopped[0]}\nrun `digest send` again once this is fixed: it resumes where it stopped"
        )
    return text


def drain_digest_sends(app: App, stop: threading.Event) -> int:
    """One pass over every unfinished issue: send what is due (retries, other processes' leftovers).

    For the `worker` command and the scheduler's retry job; returns how many were sent.
    """
    sent = 0
    for stored in app.store.unfinished_digests():
        if stop.is_set():
            break
        due = app.store.next_send_due(stored.id)
        if due is None or due > app.clock():
            app.store.finish_digest(stored.id, now=app.clock())
            continue
        tally = send_issue(app, stored, stop=stop)
        sent += tally.sent
        if tally.sent or tally.failed or tally.retrying:
            log.info("%s", _describe(app, stored, tally))
        if tally.stopped and tally.stopped != "stopped on request":
            log.error("digest #%d: sending stopped: %s", stored.issue, tally.stopped)
            break
    return sent
