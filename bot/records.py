"""The typed, immutable records that travel between stages.

``Summary`` (a source's item) → ``Post`` (a rendering for one channel) →
``Delivery`` (the outbox row that publishes it). ``PaperDetails`` comes from
arXiv. These are plain data: no I/O, no behaviour beyond derived values.
All datetimes are timezone-aware UTC.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.wording import plural


def content_hash(title: str, author: str, text: str) -> str:
    """The hash that tells an edit from an unchanged summary (not the date)."""
    h = hashlib.sha256()
    for part in (title, author, text):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


#: what one poll came to, as the poll log records it (bot.store.charts; bot.idle writes it without the store)
POLL_OK = "ok"
POLL_NOT_MODIFIED = "not_modified"
POLL_FAILED = "failed"
#: poll log rows older than this are deleted as new ones are written (the charts show 90 days at most)
POLL_LOG_DAYS = 400


@dataclass(frozen=True, slots=True)
class Summary:
    """One community summary of a paper, as a source gives it."""

    #: identity across edits: the item's guid (the summary's permalink on ShortScience)
    guid: str
    #: the paper's title, plain text (the feed's HTML escaping undone)
    title: str
    #: the summary author's display name, or "Anonymous"
    author: str
    #: the summary itself: Markdown with LaTeX math, as written (untrusted)
    text: str
    #: the summary's page
    link: str
    #: the time of the last edit (the feed's pubDate)
    edited_at: datetime
    #: the site's vote count, when the source gives one
    votes: int | None = None
    #: the paper's arXiv id (e.g. "1803.08494"), when the paper is on arXiv
    arxiv_id: str | None = None
    #: the site's BibTeX key of the paper
    bibtex_key: str | None = None
    #: categories the source itself gives (generic feeds); arXiv adds more later
    categories: tuple[str, ...] = ()
    #: sha256 of title, author and text; filled in from them when left empty
    content_hash: str = ""

    def __post_init__(self) -> None:
        if not self.content_hash:
            object.__setattr__(self, "content_hash", content_hash(self.title, self.author, self.text))


@dataclass(frozen=True, slots=True)
class PaperDetails:
    """What arXiv knows about a paper (the site's feed carries none of it)."""

    #: the arXiv id, without version suffix
    arxiv_id: str
    #: the paper's title as arXiv has it
    title: str
    #: the paper's authors, in order
    authors: tuple[str, ...]
    #: the first version's publication time
    published: datetime | None
    #: arXiv categories, primary first (e.g. "cs.LG", "stat.ML")
    categories: tuple[str, ...]

    @property
    def year(self) -> int | None:
        return self.published.year if self.published else None


@dataclass(frozen=True, slots=True)
class Post:
    """Exactly what one channel will send for one summary."""

    #: channel name ("twitter", "facebook", ...)
    channel: str
    #: the summary this post announces
    summary_guid: str
    #: the text of the (first) post, exactly as it will be sent
    text: str
    #: the summary's URL (Facebook puts it in the `link` field; X has it in the text)
    link: str
    #: the continuation of a thread, one text per reply, in order
    replies: tuple[str, ...] = ()
    #: an image to attach (http(s) URL), when images are on
    image_url: str | None = None


@dataclass(frozen=True, slots=True)
class Published:
    """A channel's proof that a post went out."""

    #: the network's id of the (first) post
    post_id: str
    #: the post's public URL, when the network tells it
    url: str | None = None
    #: the ids of the replies of a thread
    reply_ids: tuple[str, ...] = ()


class DeliveryState(enum.StrEnum):
    """Where a delivery is in its life.

    pending → in_flight → sent | failed | dead; in_flight found after a crash →
    uncertain (reconciled, or resolved by an operator with retry / skip).
    """

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"
    UNCERTAIN = "uncertain"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One summary to be published on one channel (an outbox row)."""

    #: the row's id (what `retry ID` and `skip ID` take)
    id: int
    #: the summary's row id
    summary_id: int
    #: the summary's guid
    guid: str
    #: channel name
    channel: str
    #: current state
    state: DeliveryState
    #: how many attempts were made so far
    attempts: int
    #: when the delivery may next be attempted
    due_at: datetime
    #: the network's id of the post, once sent
    post_id: str | None = None
    #: the last error, with its class (transient / permanent / auth)
    last_error: str | None = None
    #: the text that was (or will be) sent, fixed when first attempted
    text: str | None = None
    #: when the delivery was queued: its post cannot have gone out before
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeliveryClaim:
    """A delivery a worker has reserved, with what sending it needs (read in the same transaction)."""

    #: the delivery, still pending (reserved for the worker) until it starts sending
    delivery: Delivery
    #: the post fixed on an earlier attempt; None when it is still to be rendered
    post: Post | None
    #: the summary the delivery announces
    summary: StoredSummary
    #: its plain text from the render cache; None when its current version is not rendered yet
    text: str | None = None
    #: arXiv details cached for its paper (arxiv id → details, None when arXiv does not know
    #: the paper); empty when nothing is cached
    papers: dict[str, PaperDetails | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one poll of a source brought back."""

    #: the body, or None when the server said 304 Not Modified
    body: bytes | None
    #: the validators to send next time
    etag: str | None = None
    last_modified: str | None = None
    #: the earliest time the server wants to be asked again (Cache-Control max-age)
    fresh_until: datetime | None = None
    #: the HTTP status (200, 304), or 200 for a local file
    status: int = 200
    #: the response's Content-Type, if any
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class ParseResult:
    """A parsed feed: its good items, and what was wrong with the others."""

    summaries: tuple[Summary, ...]
    #: one line per rejected item: "source: item guid: problem"
    problems: tuple[str, ...] = ()
    #: the feed's own title, when it has one
    title: str | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at publishing a delivery, kept for `status`."""

    delivery_id: int
    at: datetime
    #: "sent", "transient", "permanent", "auth", "reconciled", "unproven"
    outcome: str
    http_status: int | None = None
    code: int | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class PollReport:
    """What one poll of one source did, for logs and `status`."""

    source: str
    status: int
    new: int = 0
    edited: int = 0
    unchanged: int = 0
    queued: int = 0
    problems: tuple[str, ...] = ()
    first_poll: bool = False
    #: new summaries a first poll only marked as seen
    backfilled: int = 0
    new_ids: tuple[int, ...] = field(default=())
    #: new summaries the flood guard held back from the social channels
    held: int = 0

    def describe(self) -> str:
        if self.status == 0:
            return f"poll {self.source}: not due yet"
        if self.status == 304:
            return f"poll {self.source}: not modified (nothing parsed, nothing queued)"
        seen = f" ({self.backfilled} older ones marked as seen on this first poll)" if self.backfilled else ""
        held = (
            f"; {self.held} older new ones held by the flood guard (source.max_new_per_poll), not posted:"
            " `python -m bot release` queues them"
            if self.held
            else ""
        )
        return (
            f"poll {self.source}: {self.new} new{seen}, {self.edited} edited, {self.unchanged} unchanged, "
            f"{plural(self.queued, 'delivery')} queued, {plural(len(self.problems), 'item')} skipped{held}"
        )


@dataclass(frozen=True, slots=True)
class StoredSummary:
    """A summary as the store keeps it: the item plus what the bot knows of it."""

    #: the row id
    id: int
    summary: Summary
    #: when a poll first found it
    first_seen_at: datetime
    #: the current version number (1 = as first seen)
    version: int
    #: when the bot last saw its content change (first seen, or the latest edit)
    changed_at: datetime
    #: True when a first poll marked it as seen without announcing it
    backfilled: bool
    #: the earliest time known for it: its first source date or the first poll that found it, whichever is earlier
    published_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the store remembers of one source between polls."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    fresh_until: datetime | None = None
    last_poll_at: datetime | None = None
    last_ok_at: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None
    failures: int = 0
    next_poll_at: datetime | None = None
    first_polled_at: datetime | None = None
    items_seen: int = 0


class SubscriberState(enum.StrEnum):
    """Where a digest subscriber is.

    pending → confirmed (the confirmation link, or the operator's --confirmed) →
    unsubscribed | bounced. Nothing but the subscriber's own confirmation
    (double opt-in through /subscribe) makes an unsubscribed or bounced address
    confirmed again.
    """

    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


@dataclass(frozen=True, slots=True)
class Subscriber:
    """One address on the digest's list (rows are kept after unsubscribing)."""

    #: the row id
    id: int
    #: the address mail goes to (normalised by email-validator)
    address: str
    state: SubscriberState
    #: the categories wanted; empty: every summary
    categories: tuple[str, ...]
    #: web, cli or import:<file>
    consent_source: str
    created_at: datetime
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    bounced_at: datetime | None = None
    #: permanent (5xx) refusals in a row
    permanent_failures: int = 0
    #: the last refusal's reason
    last_error: str | None = None
    #: categories asked for on /subscribe, applied on confirmation
    requested_categories: tuple[str, ...] | None = None


class SendState(enum.StrEnum):
    """Where one digest send (one issue to one subscriber) is.

    pending → claimed (a worker's lease; nothing handed over) → handing_over
    (committed before its SMTP transaction starts: the server may have it from
    here on) → sent | failed | skipped. A retry makes it pending again. After a crash,
    claimed rows are simply pending again; handing_over rows are sent again
    and marked possibly duplicated.
    """

    PENDING = "pending"
    CLAIMED = "claimed"
    HANDING_OVER = "handing_over"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


class DigestState(enum.StrEnum):
    """Where one digest issue is: sending while any of its sends is open, then sent."""

    SENDING = "sending"
    SENT = "sent"


@dataclass(frozen=True, slots=True)
class StoredDigest:
    """One issue of the digest as the store keeps it."""

    #: the row id
    id: int
    #: the issue number shown in the subject (1, 2, ...)
    issue: int
    #: the summaries first seen in [period_start, period_end) are in it
    period_start: datetime
    period_end: datetime
    #: when it was built (also its messages' Date, so a re-send is the same message)
    created_at: datetime
    #: when its last send was settled
    completed_at: datetime | None
    #: "sending" or "sent"
    state: str
    #: random, part of every Message-ID of this issue
    nonce: str
    #: sends created when it was built
    recipients: int
    #: the items as sent: JSON objects with DigestItem's fields
    items: tuple[Any, ...] = ()
    #: distinct selections of item indexes; each send names one
    variants: tuple[tuple[int, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class SendClaim:
    """A digest send a worker holds: whom to mail and which selection of items."""

    digest_id: int
    subscriber_id: int
    address: str
    #: index into the digest's variants
    variant: int
    #: tries so far, this one included
    attempts: int
    #: it was sent before without a known outcome (crash, lost answer after the final dot)
    possibly_duplicated: bool
    #: the subscriber's permanent refusals in a row so far
    failures: int = 0


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the operator console's audit log: a login, or an action taken there."""

    #: the row id
    id: int
    #: when it happened (aware UTC)
    at: datetime
    #: login, login_failed, login_refused, logout, retry, skip, pause, resume
    action: str
    #: what it acted on ("delivery 12", "channel twitter"), "" for logins
    target: str
    #: the client's address, by the web process's proxy rule
    client: str
    #: what came of it, or why it was refused
    detail: str = ""
