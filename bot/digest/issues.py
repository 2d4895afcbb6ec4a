"""Building an issue: its period and schedule, its items, the issue itself, the next one, and how one reads.

The thin loop around pure decisions (bot.decide: periods, schedule, item order and
selection) and the store's digest half (bot.store.digests).
"""

from __future__ import annotations

import dataclasses
import html
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot import content
from bot.decide import DigestPeriod, DigestSchedule, digest_order, digest_period, digest_selection
from bot.errors import MailError
from bot.mail import Digest, DigestItem, Email, signed_link
from bot.mail.message import digest_message_id, format_period
from bot.records import StoredDigest, StoredSummary
from bot.render import authors_line
from bot.render.posts import cut_sentences, paper_url
from bot.render.teaser import teaser_source
from bot.wording import plural

if TYPE_CHECKING:
    from bot.app import App
    from bot.digest.sending import SendTally

log = logging.getLogger(__name__)


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
        teaser = _teaser(texts[s.id], limit)
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


def _teaser(text: str, limit: int) -> str:
    """cut_sentences(teaser_source(text), limit), reading only the paragraphs the cut can reach.

    The cut depends only on the first limit + 1 characters of the prose (and on there being
    more), so the paragraphs past those are never collapsed: summaries run to 30,000 characters.
    """
    paragraphs = text.split("\n\n")
    kept = 0
    for n, paragraph in enumerate(paragraphs, 1):
        kept += len(teaser_source(paragraph))
        if kept > limit + 1:
            text = "\n\n".join(paragraphs[:n])
            break
    return cut_sentences(teaser_source(text), limit)


_ITEM_FIELDS = dataclasses.fields(DigestItem)


def _as_stored(item: DigestItem) -> dict[str, Any]:
    # dataclasses.asdict deep-copies every value; these are strings, numbers and a tuple of strings.
    return {f.name: getattr(item, f.name) for f in _ITEM_FIELDS}


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
        items=[_as_stored(i) for i in items],
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
        log.info(
            "digest #%d built: %s, %s", made.issue, plural(len(items), "summary"), plural(made.recipients, "recipient")
        )
    return made


def _period_text(app: App, start: datetime, end: datetime) -> str:
    return format_period(start, end, _schedule(app).tz)


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
        sample,
        signed_link(app.settings, "unsubscribe", sample, now=now),
        signed_link(app.settings, "preferences", sample, now=now),
        now=now,
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
    note = (
        "" if items or not app.settings.digest.skip_empty else " (empty: with digest.skip_empty it would not be sent)"
    )
    return "\n".join(
        [
            f"digest #{issue.issue} so far: {plural(len(items), 'summary')} first seen"
            f" since {upcoming.since:%Y-%m-%d %H:%M} UTC{note}; "
            f"it goes out at {ends:%Y-%m-%d %H:%M} UTC",
            f"subject: {message['Subject']}",
            f"html: {written[0]}",
            f"text: {written[1]}",
            f"eml:  {eml}",
        ]
    )
