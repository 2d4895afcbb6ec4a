"""What each console page shows, gathered from the store and settings (no HTML, no request).

The figures come from the functions `status`, `preview` and `digest preview`
use (``bot.status``, ``bot.digest``), so the console and the CLI say the same.
Credentials are reported as set / not set / failing since …, never their values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bot.errors import BotError, StoreError
from bot.records import Attempt, AuditEntry, Delivery, SourceState, StoredSummary, Subscriber
from bot.status import ChannelView, Rendering, attention_deliveries, channel_renderings, channel_views, describe_post

if TYPE_CHECKING:
    from bot.app import App

#: most subscribers one search shows; a prefix needs this many characters at least
SEARCH_CAP = 10
SEARCH_MIN_PREFIX = 3


@dataclass(frozen=True, slots=True)
class Overview:
    now: datetime
    sources: list[SourceState]
    #: source URL → summaries the flood guard holds
    held: dict[str, int]
    channels: list[ChannelView]
    #: the digest section of `status`, line by line
    digest: list[str]
    database_ok: bool
    #: arXiv's last error and the papers without details (as `status` says them)
    papers: list[str]
    #: (what, "set" / "not set" / "failing since …")
    credentials: list[tuple[str, str]]


def overview(app: App) -> Overview:
    from bot.digest.reports import digest_status
    from bot.status import _paper_trouble, _when

    now = app.clock()
    store = app.store
    database_ok = store.ping()
    channels = channel_views(app, now)
    since = store.paused_since()
    env = app.settings.env
    credentials = [
        ("SECRET_KEY", "set" if env.secret_key else "not set"),
        ("SMTP_URL", "set" if env.smtp_url else "not set (e-mails go to the outbox)"),
        ("DATABASE_URL", "set" if env.database_url else "not set (SQLite under BOT_DATA_DIR)"),
    ]
    for view in channels:
        if view.paused is not None:
            state = f"failing since {_when(since.get(view.name), now)}: {view.paused}"
        else:
            state = "set" if view.live else f"not set: {view.mode}"
        credentials.append((view.title, state))
    return Overview(
        now,
        store.all_sources() or [],
        store.held_counts(),
        channels,
        digest_status(app),
        database_ok,
        _paper_trouble(app, now),
        credentials,
    )


@dataclass(frozen=True, slots=True)
class AttentionRow:
    delivery: Delivery
    #: the last few attempts, oldest first
    attempts: list[Attempt]


def attention(app: App) -> tuple[list[AttentionRow], list[ChannelView]]:
    """Deliveries waiting for the operator, and the channels (to pause or resume)."""
    rows = [AttentionRow(d, app.store.attempts(d.id)[-5:]) for d in attention_deliveries(app)]
    return rows, channel_views(app, app.clock())


@dataclass(frozen=True, slots=True)
class ChannelHistory:
    delivery: Delivery
    attempts: list[Attempt]
    #: the post as stored for sending (fixed at its first attempt), or None before that
    sent: Rendering | None
    #: a link to the published post, when its id is one
    post_url: str | None


@dataclass(frozen=True, slots=True)
class SummaryPage:
    stored: StoredSummary
    history: list[ChannelHistory]
    #: posts of the channels that have no stored post yet: as they would be sent now
    upcoming: list[Rendering]
    notes: list[str]


def summary_page(app: App, summary_id: int) -> SummaryPage | None:
    """None when there is no such summary."""
    store = app.store
    try:
        stored = store.summary(summary_id)
    except StoreError:
        return None
    history = []
    deliveries = store.summary_deliveries(summary_id)
    urls = store.post_urls([d.id for d in deliveries])
    for d in deliveries:
        post = store.stored_post(d.id)
        url = urls.get(d.id)
        history.append(
            ChannelHistory(
                d,
                store.attempts(d.id),
                describe_post(post) if post else None,
                url if url and url.startswith(("https://", "http://")) else None,
            )
        )
    have = {h.delivery.channel for h in history if h.sent is not None}
    try:
        upcoming, notes = channel_renderings(app, stored.summary)
    except BotError as exc:  # a summary that cannot be rendered is what this page helps to see
        upcoming, notes = [], [f"could not render: {exc}"]
    return SummaryPage(stored, history, [r for r in upcoming if r.channel not in have], notes)


@dataclass(frozen=True, slots=True)
class DigestPage:
    #: the next issue: number, summaries so far, since, goes out at, subject
    next_issue: str
    past: list[str]
    query: str
    found: list[Subscriber]
    #: why the search shows nothing ("" when it ran or was not asked)
    search_note: str


def digest_page(app: App, query: str) -> DigestPage:
    from bot.digest.issues import describe_issue, next_issue
    from bot.wording import plural

    try:
        upcoming = next_issue(app)
        issue = upcoming.issue
        head = (
            f"#{issue.issue}: {plural(len(issue.items), 'summary')} first seen since "
            f"{upcoming.since:%Y-%m-%d %H:%M} UTC; "
            f"goes out at {issue.period_end:%Y-%m-%d %H:%M} UTC; subject: {upcoming.email.message['Subject']}"
        )
    except BotError as exc:
        head = f"cannot be built now: {exc}"
    past = [describe_issue(app, d) for d in app.store.recent_digests(limit=20)]
    query = query.strip()[:320]
    found: list[Subscriber] = []
    note = ""
    if query:
        if "@" not in query and len(query) < SEARCH_MIN_PREFIX:
            note = f"type at least {SEARCH_MIN_PREFIX} characters of the address"
        else:
            found = app.store.find_subscribers(query, limit=SEARCH_CAP)
            note = "" if found else "no subscriber with that address or prefix"
    return DigestPage(head, past, query, found, note)


def preview_html(app: App) -> str:
    """The next issue's HTML part, for the sandboxed frame."""
    from bot.digest.issues import next_issue

    part = next_issue(app).email.message.get_body(("html",))
    return part.get_content() if part is not None else ""


def audit_log(app: App) -> list[AuditEntry]:
    return app.store.audit_entries(limit=200)
