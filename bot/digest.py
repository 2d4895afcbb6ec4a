"""The weekly digest: which period an issue covers, building it, sending it, and the subscriber commands.

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
import csv
import dataclasses
import html
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot import content
from bot.claims import claimant_id, holder_is_dead, running
from bot.decide import (
    DigestPeriod,
    DigestSchedule,
    SendTry,
    digest_catch_up,
    digest_order,
    digest_period,
    digest_selection,
    digest_send_verdict,
)
from bot.errors import AddressTooLong, BotError, ConfigError, MailError, PermanentMailError, StoreError, SubscriberError
from bot.mail import (
    AddressNotSupported,
    ComposedDigest,
    Digest,
    DigestItem,
    Email,
    MailerPool,
    MaybeDelivered,
    NotSent,
    RecipientRefused,
    SenderRefused,
    SmtpMailer,
    signed_link,
)
from bot.mail.message import check_address, digest_message_id, format_period
from bot.mail.tokens import subscription_version
from bot.records import SendClaim, SendState, StoredDigest, StoredSummary, Subscriber, SubscriberState
from bot.render import authors_line
from bot.render.posts import cut_sentences, paper_url
from bot.render.text import teaser_source
from bot.store.digests import SendOutcome, SendRecorder
from bot.wording import plural

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from bot.app import App

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


# ------------------------------------------------------------------ addresses


def validate_address(raw: str) -> str:
    """The address, normalised (email-validator, no DNS lookup); SubscriberError if it is not one we can mail."""
    from email_validator import EmailNotValidError, validate_email

    text = raw.strip()
    local, _, domain = text.rpartition("@")
    # Checked before email-validator too, whose own messages for these are not for the form.
    if (reason := _too_long(local, domain if domain.isascii() else "")) is not None:
        raise AddressTooLong(text, reason)
    try:
        found = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise SubscriberError(f"not a valid e-mail address: {text!r}: {exc}") from None
    address = found.normalized
    if (reason := _too_long(found.local_part, found.ascii_domain or found.domain)) is not None:
        raise AddressTooLong(text, reason)
    try:
        check_address(address)
    except RecipientRefused:
        # Quoted local parts and the like: valid, but we keep To to one plain addr-spec.
        raise SubscriberError(f"not an e-mail address we can send to: {text!r} (quoted or unusual characters)") from None
    return address


def _too_long(local: str, ascii_domain: str) -> str | None:
    """Why an address is over SMTP's limits (RFC 5321 4.5.3.1, in octets; the domain in the ASCII form
    it is sent in), or None: servers refuse such addresses."""
    if len(local.encode("utf-8")) > 64:
        return "the part before the @ is longer than 64 characters (bytes)"
    if len(ascii_domain) > 253 or any(len(label) > 63 for label in ascii_domain.split(".")):
        return "the part after the @ is too long (at most 253 characters, and 63 between two dots)"
    return None


def split_categories(values: Sequence[str]) -> tuple[str, ...]:
    """Categories as given on the command line or in a CSV cell: split, trimmed, deduplicated."""
    out: dict[str, None] = {}
    for value in values:
        for part in re.split(r"[\s,;]+", value):
            if part:
                out[part] = None
    return tuple(out)


# ------------------------------------------------------------------ building


def _schedule(app: App) -> DigestSchedule:
    d = app.settings.digest
    return DigestSchedule.parse(d.day_of_week, d.time, d.timezone)


def digest_items(app: App, summaries: Sequence[StoredSummary]) -> list[DigestItem]:
    """The summaries as digest items: paper details (arXiv cache), a teaser from the render cache."""
    details = content.paper_details(app, summaries)
    texts = content.texts(app, summaries)
    limit = app.settings.digest.teaser_chars
    items = []
    for s in summaries:
        d = details.get(s.summary.arxiv_id or "")
        teaser = cut_sentences(teaser_source(texts[s.id]), limit)
        items.append(
            DigestItem(
                guid=s.summary.guid,
                title=s.summary.title,
                paper_authors=authors_line(d),
                summary_author=s.summary.author,
                teaser_text=teaser,
                teaser_html=f"<p>{html.escape(teaser)}</p>" if teaser else "",
                link=s.summary.link,
                paper_url=paper_url(d, s.summary.arxiv_id),
                votes=s.summary.votes,
                categories=content.categories(s, d),
            )
        )
    return items


def _items_of(stored: StoredDigest) -> tuple[DigestItem, ...]:
    return tuple(DigestItem(**{**x, "categories": tuple(x.get("categories") or ())}) for x in stored.items)


def _news(app: App, period: DigestPeriod) -> list[StoredSummary]:
    found = app.store.summaries_first_seen_between(period.start, period.end)
    order = digest_order([(s.summary.votes, s.summary.edited_at) for s in found])
    return [found[i] for i in order[: app.settings.digest.max_items]]


def build_digest(app: App, period: DigestPeriod, *, now: datetime) -> StoredDigest | str:
    """Make the issue of `period` with its sends; a line saying why not when there is nothing to send."""
    settings = app.settings.digest
    news = _news(app, period)
    if not news and settings.skip_empty:
        return f"no digest for {_period_text(app, period.start, period.end)}: no new summaries (digest.skip_empty)"
    items = digest_items(app, news)
    categories = [item.categories for item in items]

    def select(wanted: tuple[str, ...]) -> tuple[int, ...] | None:
        chosen = digest_selection(wanted, categories)
        return None if not chosen and settings.skip_empty else chosen

    nonce = secrets.token_hex(8)
    domain = app.composer.domain
    made = app.store.create_digest(
        period_start=period.start,
        period_end=period.end,
        items=[dataclasses.asdict(i) for i in items],
        nonce=nonce,
        now=now,
        select=select,
        message_id=lambda issue, sid: digest_message_id(issue, sid, nonce, domain),
    )
    if made is None:  # another process built this period's issue first: send it together
        made = app.store.digest_by_period_end(period.end)
        if made is None:  # pragma: no cover - the unique period_end guarantees it exists
            raise MailError(f"digest for {_period_text(app, period.start, period.end)} could not be created")
    else:
        log.info("digest #%d built: %s, %s", made.issue, plural(len(items), "summary"), plural(made.recipients, "recipient"))
    return made


def _period_text(app: App, start: datetime, end: datetime) -> str:
    return format_period(start, end, _schedule(app).tz)


# ------------------------------------------------------------------ sending


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
        return self.app.store.send_recorder(self.stored.id, worker=self.worker, bounce_after=self.app.settings.digest.bounce_after)

    def _outcome(self, email: Email, error: Exception | None, now: datetime) -> tuple[SendOutcome, bool]:
        claim = self.held[email]
        d = self.app.settings.digest
        kind = _outcome(error)
        state, due_at = digest_send_verdict(
            kind, attempts=claim.attempts, now=now, base=d.retry_base_seconds, maximum=d.retry_max_seconds,
            max_attempts=d.max_attempts,
        )
        self.decided[email] = (state, kind)
        outcome = SendOutcome(
            claim.subscriber_id, state, due_at=due_at,
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
                outcome, self.held[going].subscriber_id if going is not None else None,
                now=now, lease_until=now + self.lease, reset_failures=reset,
            )

    def close(self) -> None:
        with self._lock:
            for recorder in self._made:
                recorder.close()
            self._made.clear()


def send_issue(app: App, stored: StoredDigest, *, progress: Progress | None = None, stop: threading.Event | None = None) -> SendTally:
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
            log.warning("digest #%d: could not release this pass's sends now (%s); the next pass will", stored.issue, exc)


def _send_pass(
    app: App, stored: StoredDigest, worker: str, lease: timedelta, *, progress: Progress | None, stop: threading.Event | None
) -> SendTally:
    store = app.store
    settings = app.settings
    released, doubtful = store.release_abandoned_sends(now=app.clock(), dead_workers=holder_is_dead)
    if doubtful:
        log.warning(
            "digest #%d: %s handed over when their process stopped: sending them again with the "
            "same Message-ID (possibly duplicated after a crash)", stored.issue, plural(doubtful, "send was", "sends were") + " being",
        )
    if released:
        log.info("digest #%d: %s claimed by a stopped process pending again", stored.issue, plural(released, "send is", "sends are"))

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
            log.warning("digest #%d to %s: %s; it will be sent again (possibly duplicated, same Message-ID)",
                        stored.issue, claim.address, exc)
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


def _describe(app: App, stored: StoredDigest, tally: SendTally | None = None) -> str:
    counts = app.store.digest_send_counts(stored.id)
    current = app.store.stored_digest(stored.id)
    head = (
        f"digest #{stored.issue} ({_period_text(app, stored.period_start, stored.period_end)}, "
        f"{plural(len(stored.items), 'summary')}, {plural(stored.recipients, 'recipient')})"
    )
    if tally is not None:
        parts = [f"{tally.sent} sent", f"{tally.failed} failed", f"{tally.retrying} retrying"]
    else:
        parts = [f"{counts.get('sent', 0)} sent", f"{counts.get('failed', 0)} failed"]
    parts.append(f"{counts.get('skipped', 0)} skipped")
    line = f"{head}: " + ", ".join(parts)
    pending = counts.get("pending", 0) + counts.get("claimed", 0) + counts.get("handing_over", 0)
    if current.state == "sent":
        line += f" — complete: {counts.get('sent', 0)} of {stored.recipients} delivered to the server"
    elif pending:
        nxt = app.store.next_send_due(stored.id)
        line += f" — {pending} still to send" + (f" (next try {nxt:%Y-%m-%d %H:%M} UTC)" if nxt else "")
    if counts.get("possibly_duplicated"):
        line += (
            f"\n  {counts['possibly_duplicated']} possibly duplicated after a crash or a lost answer: "
            "sent again with the same Message-ID"
        )
    return line


def send_digest(app: App, *, end_now: bool = False, progress: Progress | None = None, stop: threading.Event | None = None) -> str:
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
            + ("" if end_now else f", past the last scheduled time ({end:%Y-%m-%d %H:%M} UTC); "
               "`digest send --now` ends a period now")
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
        raise MailError(f"{text}\nstopped: {stopped[0]}\nrun `digest send` again once this is fixed: it resumes where it stopped")
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


@dataclass(frozen=True, slots=True)
class NextIssue:
    """The next digest as it stands now, made out to a sample address (`digest preview`, the console)."""

    issue: Digest
    #: the summaries first seen since this time are in it
    since: datetime
    email: Email


def next_issue(app: App) -> NextIssue:
    """The next issue as it stands now, for a sample subscriber; nothing is stored or sent."""
    now = app.clock()
    schedule = _schedule(app)
    last = app.store.last_digest()
    period = digest_period(now, last.period_end if last else None) or DigestPeriod(now, now)
    news = _news(app, period)
    items = tuple(digest_items(app, news))
    ends = schedule.following(now)
    issue = Digest(issue=(last.issue + 1) if last else 1, period_start=period.start, period_end=ends, items=items)
    sample = "subscriber@example.org"
    email = app.composer.compose(issue).for_recipient(
        sample, signed_link(app.settings, "unsubscribe", sample, now=now),
        signed_link(app.settings, "preferences", sample, now=now), now=now,
    )
    return NextIssue(issue, period.start, email)


def describe_issue(app: App, stored: StoredDigest) -> str:
    """One past issue and its figures (sent, failed, skipped, possibly duplicated), as `status` says it."""
    return _describe(app, stored)


def preview_digest(app: App, *, out_dir: str | None = None) -> str:
    """`digest preview`: the next issue as it stands now, as HTML and text files."""
    upcoming = next_issue(app)
    issue, email, items, ends = upcoming.issue, upcoming.email, upcoming.issue.items, upcoming.issue.period_end
    message = email.message
    folder = Path(out_dir) if out_dir else app.settings.data_dir
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for subtype, name in (("html", "digest-preview.html"), ("plain", "digest-preview.txt")):
        part = message.get_body((subtype,))
        assert part is not None
        path = folder / name
        path.write_text(part.get_content(), encoding="utf-8")
        written.append(path)
    eml = folder / "digest-preview.eml"
    eml.write_bytes(email.as_bytes())
    note = "" if items or not app.settings.digest.skip_empty else " (empty: with digest.skip_empty it would not be sent)"
    return "\n".join(
        [
            f"digest #{issue.issue} so far: {plural(len(items), 'summary')} first seen since {upcoming.since:%Y-%m-%d %H:%M} UTC{note}; "
            f"it goes out at {ends:%Y-%m-%d %H:%M} UTC",
            f"subject: {message['Subject']}",
            f"html: {written[0]}",
            f"text: {written[1]}",
            f"eml:  {eml}",
        ]
    )


# ------------------------------------------------------------------ schedule


class _SchedulerStopping(threading.Event):
    """Set once the scheduler is shutting down, so a long send finishes the message in hand and returns."""

    def __init__(self, scheduler: BaseScheduler) -> None:
        super().__init__()
        self._scheduler = scheduler

    def is_set(self) -> bool:
        from apscheduler.schedulers.base import STATE_STOPPED

        return super().is_set() or self._scheduler.state == STATE_STOPPED


def digest_job(app: App, stop: threading.Event | None = None) -> str:
    """The scheduled run: `digest send` for the period that just ended, recorded for `status`."""
    try:
        result = send_digest(app, stop=stop)
    except BotError as exc:
        app.store.record_job("digest", now=app.clock(), ok=False, error=str(exc))
        raise
    app.store.record_job("digest", now=app.clock(), ok=True, info={"result": result})
    return result


def add_digest_job(app: App, scheduler: BaseScheduler, guarded: Callable[[str, Callable[[], Any]], Callable[[], None]],
                   common: dict[str, Any]) -> None:
    """The weekly digest and a retry pass every minute, on `run`'s scheduler.

    A scheduler that was down at the scheduled time runs the digest once at
    start-up (one issue covering everything since the last), not once per
    missed week; the cron trigger's grace and coalescing do the same for a
    busy scheduler.
    """
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    d = app.settings.digest
    schedule = _schedule(app)
    stop = _SchedulerStopping(scheduler)
    now = app.clock()
    last = app.store.last_digest()
    catch_up = digest_catch_up(now, last.period_end if last else None, schedule)
    first: dict[str, Any] = {"next_run_time": now} if catch_up else {}
    if catch_up:
        log.info("a scheduled digest was missed (last issue: %s): sending it now",
                 f"#{last.issue} up to {last.period_end:%Y-%m-%d %H:%M} UTC" if last else "none yet")
    scheduler.add_job(
        guarded("digest", lambda: digest_job(app, stop)),
        CronTrigger(day_of_week=d.day_of_week, hour=schedule.hour, minute=schedule.minute, timezone=schedule.tz),
        id="digest", misfire_grace_time=6 * 24 * 3600, **common, **first,
    )
    scheduler.add_job(
        guarded("digest-sends", lambda: f"digest sends: {drain_digest_sends(app, stop)} sent"),
        IntervalTrigger(minutes=1), id="digest-sends", misfire_grace_time=120, **common,
    )
    log.info("digest: every %s at %s %s; next at %s UTC", d.day_of_week, d.time, d.timezone,
             f"{schedule.following(now):%Y-%m-%d %H:%M}")


# ------------------------------------------------------------------ status


def digest_status(app: App) -> list[str]:
    """The digest section of `status`: subscribers by state, the last issue, the next, open sends."""
    store = app.store
    now = app.clock()
    schedule = _schedule(app)
    counts = store.subscriber_counts()
    out = ["digest:"]
    out.append("  subscribers: " + " · ".join(f"{s.value} {counts.get(s.value, 0)}" for s in SubscriberState))
    last = store.last_digest()
    if last is None:
        out.append("  last issue: none yet")
    else:
        out.append("  last issue: " + _describe(app, last).replace("\n", "\n  "))
    if app.settings.digest.enabled:
        out.append(f"  next issue: {schedule.following(now):%Y-%m-%d %H:%M} UTC "
                   f"(every {app.settings.digest.day_of_week} at {app.settings.digest.time} {app.settings.digest.timezone})")
    else:
        out.append("  next issue: the scheduler sends none (digest.enabled = false); `digest send` still works")
    open_ = store.open_send_counts()
    if open_:
        nxt = store.next_send_due()
        out.append("  open sends: " + " · ".join(f"{k} {v}" for k, v in sorted(open_.items()))
                   + (f"; next due {nxt:%Y-%m-%d %H:%M} UTC" if nxt else ""))
    mailer = app.mailer
    if isinstance(mailer, SmtpMailer):
        out.append(f"  mail: SMTP {mailer.config.where} ({mailer.config.security}), {app.settings.digest.connections} "
                   f"connections, from {mailer.envelope_from}")
    else:
        out.append(f"  mail: {mailer.check()}")
    return out


# ------------------------------------------------------------------ subscribers


def send_confirmation(app: App, subscriber: Subscriber) -> str:
    """Mail the double opt-in link; MailError if it cannot go out now. Returns where it went."""
    now = app.clock()
    link = signed_link(app.settings, "confirm", subscriber.address, now=now, version=subscription_version(subscriber))
    email = app.composer.confirmation(subscriber.address, link, now=now)
    app.mailer.send(email)
    app.store.confirmation_sent(subscriber.id, now=now)
    return "SMTP" if app.mailer.live else str(app.settings.outbox_dir / "email")


def add_subscriber(app: App, email: str, *, confirmed: bool, categories: Sequence[str] = (), source: str = "cli") -> str:
    """`subscribers add`: one line on what happened."""
    address = validate_address(email)
    cats = split_categories(categories)
    result, sub = app.store.add_subscriber(address, now=app.clock(), confirmed=confirmed, categories=cats, source=source)
    wants = ", ".join(sub.categories) or "all categories"
    if result in ("unsubscribed", "bounced"):
        when = sub.unsubscribed_at if result == "unsubscribed" else sub.bounced_at
        raise SubscriberError(
            f"{address} is {result}{f' since {when:%Y-%m-%d}' if when else ''}: not added back. Only they can "
            f"subscribe again, themselves, at {app.settings.env.public_base_url.rstrip('/')}/subscribe"
        )
    if result == "already":
        return f"{address}: already confirmed ({wants}); nothing changed"
    if result == "confirmed":
        return f"{address}: was pending, now confirmed ({wants})"
    if confirmed:
        return f"{address}: added, confirmed ({wants})"
    where = send_confirmation(app, sub)
    again = " again" if result == "pending" else ""
    return (f"{address}: {'already pending' if result == 'pending' else 'added as pending'} ({wants}); "
            f"confirmation e-mail sent{again} ({where}), link valid {app.settings.digest.confirm_ttl_hours} h")


def remove_subscriber(app: App, email: str) -> str:
    """`subscribers remove`: the address is unsubscribed for good (the row stays, so it is never mailed again)."""
    address = email.strip()
    before = app.store.subscriber(address)
    if before is None:
        return f"{address}: not on the list; nothing to do"
    after = app.store.unsubscribe(address, now=app.clock())
    assert after is not None
    if before.state in (SubscriberState.UNSUBSCRIBED, SubscriberState.BOUNCED):
        return f"{before.address}: already {before.state.value}; nothing to do"
    return f"{after.address}: unsubscribed (was {before.state.value}); it will not be mailed again"


def list_subscribers(app: App, *, state: str | None = None) -> Iterator[str]:
    """`subscribers list`: one line per subscriber (streamed), then the counts."""
    n = 0
    for sub in app.store.iter_subscribers(state=state):
        if n == 0:
            yield f"{'address':<40} {'state':<12} {'since':<10} categories"
        since = {
            SubscriberState.CONFIRMED: sub.confirmed_at,
            SubscriberState.UNSUBSCRIBED: sub.unsubscribed_at,
            SubscriberState.BOUNCED: sub.bounced_at,
        }.get(sub.state) or sub.created_at
        note = f"  ({sub.permanent_failures} refusals: {sub.last_error[:80]})" if sub.last_error and sub.permanent_failures else ""
        yield f"{sub.address:<40} {sub.state.value:<12} {since:%Y-%m-%d} {', '.join(sub.categories) or 'all'}{note}"
        n += 1
    counts = app.store.subscriber_counts()
    if n == 0:
        yield "no subscribers" + (f" in state {state}" if state else "")
    yield "total: " + " · ".join(f"{s.value} {counts.get(s.value, 0)}" for s in SubscriberState)


def _csv_rows(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line number, address cell, categories cell) of a CSV with an 'email' column (or one column, no header)."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                return
            names = [h.strip().lower() for h in header]
            col = next((names.index(n) for n in ("email", "e-mail", "address", "email_address") if n in names), None)
            cats = names.index("categories") if "categories" in names else None
            if col is None:
                if len(header) >= 1 and "@" in header[0]:
                    col = 0  # no header: the first line is an address already
                    yield reader.line_num, header[0], ""
                else:
                    raise ConfigError(f"{path}: no 'email' column (columns: {', '.join(header) or 'none'})")
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                yield (reader.line_num, row[col] if col < len(row) else "",
                       row[cats] if cats is not None and cats < len(row) else "")
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: line {reader.line_num}: not a readable CSV file: {exc}") from None


def import_subscribers(app: App, file: str, *, confirmed: bool) -> str:
    """`subscribers import`: add a list, report added and skipped (and why); never revives a departed address."""
    path = Path(file)
    source = f"import:{path.name}"
    seen: set[str] = set()
    skipped: dict[str, int] = {}
    invalid_lines: list[int] = []
    added_lines = 0
    confirmed_now = 0
    mailed = mail_failed = 0
    chunk: list[tuple[str, tuple[str, ...]]] = []

    def flush() -> None:
        nonlocal added_lines, confirmed_now, mailed, mail_failed
        if not chunk:
            return
        outcomes = app.store.import_subscribers(chunk, now=app.clock(), confirmed=confirmed, source=source)
        for outcome in outcomes:
            if outcome.result == "added":
                added_lines += 1
            elif outcome.result == "upgraded":
                confirmed_now += 1
            else:
                state = outcome.result.removeprefix("known:")
                reason = "already on the list" if state in ("pending", "confirmed") else state
                skipped[reason] = skipped.get(reason, 0) + 1
        if not confirmed:
            fresh = {o.address_key for o in outcomes if o.result == "added"}
            for address, _ in chunk:
                if address.casefold() in fresh:
                    sub = app.store.subscriber(address)
                    assert sub is not None
                    try:
                        send_confirmation(app, sub)
                        mailed += 1
                    except MailError as exc:
                        mail_failed += 1
                        log.warning("confirmation e-mail to %s failed: %s", address, exc)
        chunk.clear()

    for line, raw, cats in _csv_rows(path):
        try:
            address = validate_address(raw)
        except SubscriberError:
            skipped["invalid"] = skipped.get("invalid", 0) + 1
            invalid_lines.append(line)
            continue
        key = address.casefold()
        if key in seen:
            skipped["duplicate in the file"] = skipped.get("duplicate in the file", 0) + 1
            continue
        seen.add(key)
        chunk.append((address, split_categories([cats])))
        if len(chunk) >= 500:
            flush()
    flush()
    state = "confirmed" if confirmed else "pending"
    parts = [f"{added_lines} added as {state}"]
    if confirmed_now:
        parts.append(f"{confirmed_now} pending ones confirmed")
    if not confirmed and added_lines:
        parts.append(f"confirmation e-mails: {mailed} sent" + (f", {mail_failed} failed (see the log)" if mail_failed else ""))
    total_skipped = sum(skipped.values())
    reasons = []
    for reason in ("invalid", "duplicate in the file", "already on the list", "unsubscribed", "bounced"):
        if skipped.get(reason):
            detail = ""
            if reason == "invalid":
                shown = ", ".join(map(str, invalid_lines[:10])) + (", …" if len(invalid_lines) > 10 else "")
                detail = f" (line {shown})"
            reasons.append(f"{skipped[reason]} {reason}{detail}")
    report = f"import {path.name}: " + ", ".join(parts) + f"; {total_skipped} skipped"
    if reasons:
        report += ": " + ", ".join(reasons)
    if skipped.get("unsubscribed") or skipped.get("bounced"):
        report += "\n  unsubscribed and bounced addresses are never added back: only they can subscribe again"
    return report
