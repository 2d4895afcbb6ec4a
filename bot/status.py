"""What operators read: `status`, `check` and `preview`, as text built from the store and settings.

Read-only apart from `check`, which resumes a paused channel once its
credentials work again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bot.channels import CHANNELS
from bot.decide import estimated_cost
from bot.errors import ConfigError, MailError, PublishError, SourceError
from bot.records import Delivery, DeliveryState, Post, StoredSummary, Summary
from bot.wording import plural

if TYPE_CHECKING:
    from bot.app import App


def _when(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "never"
    delta = (at - now).total_seconds()
    span = abs(delta)
    if span < 90:
        rel = f"{span:.0f} s"
    elif span < 5400:
        rel = f"{span / 60:.0f} min"
    elif span < 172800:
        rel = f"{span / 3600:.1f} h"
    else:
        rel = f"{span / 86400:.1f} days"
    return f"{at.strftime('%Y-%m-%d %H:%M:%S')} UTC ({'in ' + rel if delta > 0 else rel + ' ago'})"


def _safe_db_url(url: str) -> str:
    from bot.store import _redact_url

    return _redact_url(url)


def _paper_trouble(app: App, now: datetime) -> list[str]:
    """arXiv's last error (while it lasts) and the papers posts went out without: both cost posts their authors and
    hashtags."""
    from bot.content import ARXIV_JOB

    out = []
    job = app.store.jobs().get(ARXIV_JOB) or {}
    if job.get("last_error"):
        out.append(
            f"  arXiv failed {_when(job.get('last_run_at'), now)} (last ok "
            f"{_when(job.get('last_ok_at'), now)}): {job['last_error'][:300]}"
        )
    # With arXiv turned off (arxiv.enabled = false) no paper has details, by the operator's choice.
    missing = app.store.papers_without_details() if app.arxiv is not None else []
    if missing:
        shown = ", ".join(missing[:10]) + (", …" if len(missing) > 10 else "")
        out.append(
            f"  {plural(len(missing), 'paper')} without details (their posts had no authors, no hashtags; "
            f"asked again when a feeds build or a digest needs them): {shown}"
        )
    return out


#: the delivery states that wait for the operator (`retry ID` / `skip ID`)
ATTENTION_STATES = (DeliveryState.UNCERTAIN, DeliveryState.FAILED, DeliveryState.DEAD)


@dataclass(frozen=True, slots=True)
class ChannelView:
    """One channel as `status` and the console show it."""

    name: str
    #: what operators call it ("X")
    title: str
    enabled: bool
    live: bool
    #: "live", or why it is dry-run (names the unset variables, never their values)
    mode: str
    #: why it is paused, or None
    paused: str | None
    #: deliveries by state value
    counts: Mapping[str, int]
    today: int
    month: int
    last_post: datetime | None
    next_due: datetime | None
    #: estimated cost of this month's posts (0 when dry-run)
    cost: float
    price_per_post: float
    #: X's price per post read back after a crash (None: the channel reads nothing back)
    read_price: float | None
    daily_cap: int
    monthly_cap: int
    min_interval_minutes: int

    @property
    def needing_attention(self) -> int:
        return sum(self.counts.get(st.value, 0) for st in ATTENTION_STATES)


def channel_views(app: App, now: datetime) -> list[ChannelView]:
    """Every channel of the registry: mode, pause, deliveries, this month's posts and cost, caps."""
    from bot.channels import channel_mode, channel_spec

    s = app.settings
    store = app.store
    counts = store.delivery_counts()
    paused = store.paused_channels()
    out = []
    for channel in CHANNELS:
        cs = s.channel(channel)
        live, why = channel_mode(s, channel)
        today, month, last = store.sent_counts(channel, now=now)
        read_price = getattr(cs, "read_price", None)
        out.append(
            ChannelView(
                name=channel,
                title=channel_spec(channel).title,
                enabled=cs.enabled,
                live=live,
                mode=why,
                paused=paused.get(channel),
                counts=dict(counts.get(channel, {})),
                today=today,
                month=month,
                last_post=last,
                next_due=store.next_due(channel),
                cost=estimated_cost(month, cs.price_per_post) if live else 0.0,
                price_per_post=cs.price_per_post,
                read_price=read_price
                if read_price is not None and not getattr(cs, "reconcile_resend", False)
                else None,
                daily_cap=cs.daily_cap,
                monthly_cap=cs.monthly_cap,
                min_interval_minutes=cs.min_interval_minutes,
            )
        )
    return out


def attention_deliveries(app: App, *, limit: int = 50) -> list[Delivery]:
    """Uncertain, failed and dead deliveries: what `retry ID` / `skip ID` resolve."""
    return app.store.deliveries(states=[st.value for st in ATTENTION_STATES], limit=limit)


# long: the report's sections in the order an operator reads them, each a few lines
def render_status(app: App) -> str:
    s = app.settings
    store = app.store
    now = app.clock()
    out = [f"ShortScience feed bot — status at {now.strftime('%Y-%m-%d %H:%M:%S')} UTC", ""]
    out.append(f"database: {_safe_db_url(s.database_url)} ({plural(store.count_summaries(), 'summary')})")
    out.append("")
    out.append("sources:")
    sources = store.all_sources() or []
    held = store.held_counts()
    if not sources:
        out.append(f"  {s.feed_url}: never polled (run `python -m bot poll` or `run`)")
    for src in sources:
        result = "ok" if not src.failures else f"failing ({src.failures} in a row)"
        out.append(f"  {src.url}")
        out.append(f"    last poll: {_when(src.last_poll_at, now)} — {result}, HTTP {src.last_status or '-'}")
        out.append(f"    last good poll: {_when(src.last_ok_at, now)}; next poll: {_when(src.next_poll_at, now)}")
        out.append(f"    summaries seen: {src.items_seen}")
        if held.get(src.url):
            out.append(
                f"    HELD by the flood guard: {held[src.url]} new summaries in the feeds but not posted"
                f" (more than source.max_new_per_poll = {s.source.max_new_per_poll} in one poll);"
                f" `python -m bot release --source {src.url}` queues them, `--discard` lets them go"
            )
        if src.last_error:
            label = "last error" if src.failures else "skipped items"
            out.append(f"    {label}: {src.last_error[:500]}")
    out.append("")
    out.append("channels:")
    for view in channel_views(app, now):
        out.append(f"  {view.name}: {view.mode if view.enabled else 'disabled'}")
        if view.paused is not None:
            out.append(f"    PAUSED: {view.paused} — fix it, then run `python -m bot check` to resume")
        c = view.counts
        states = " · ".join(
            f"{st.value} {c.get(st.value, 0)}"
            for st in DeliveryState
            if c.get(st.value, 0) or st in (DeliveryState.PENDING, DeliveryState.SENT)
        )
        out.append(f"    deliveries: {states}")
        caps = (
            f"daily cap {view.daily_cap or 'off'}, monthly cap {view.monthly_cap or 'off'}, min interval "
            f"{view.min_interval_minutes or 'off'}{' min' if view.min_interval_minutes else ''}"
        )
        # X bills reads too: reconciliation after a crash reads the account's posts back.
        reads = f", reading back ${view.read_price:.3f}/post read" if view.read_price is not None else ""
        out.append(
            f"    posts today {view.today}, this month {view.month}"
            + (
                f" (est. ${view.cost:.2f} at ${view.price_per_post:.2f}/post{reads})"
                if view.live
                else " (dry-run: no cost)"
            )
        )
        out.append(f"    pacing: {caps}; last post {_when(view.last_post, now)}; next due {_when(view.next_due, now)}")
    attention = attention_deliveries(app)
    out.append("")
    if attention:
        out.append("needs attention (retry ID / skip ID):")
        for d in attention:
            out.append(f"  #{d.id} {d.channel} {d.state.value}: {d.guid}")
            if d.last_error:
                out.append(f"      {d.last_error[:300]}")
            for a in store.attempts(d.id)[-3:]:
                code = f" HTTP {a.http_status}" if a.http_status else ""
                code += f" code {a.code}" if a.code is not None else ""
                out.append(f"      {a.at.strftime('%Y-%m-%d %H:%M')} {a.outcome}{code}: {a.message[:200]}")
    papers = _paper_trouble(app, now)
    if papers:
        out.append("needs attention (paper details):")
        out.extend(papers)
    if not attention and not papers:
        out.append("needs attention: nothing")
    from bot.digest.reports import digest_status

    out.append("")
    out.extend(digest_status(app))
    from bot.charts import status_sparklines

    out.append("")
    out.extend(status_sparklines(store, now))
    jobs = store.jobs()
    if jobs:
        out.append("")
        out.append("jobs:")
        for name, j in sorted(jobs.items()):
            err = f" — last error: {j['last_error'][:200]}" if j.get("last_error") else ""
            out.append(
                f"  {name}: last run {_when(j.get('last_run_at'), now)}, last ok {_when(j.get('last_ok_at'), now)}{err}"
            )
    return "\n".join(out)


def run_check(app: App) -> tuple[bool, list[str]]:
    """Database reachable; each live channel answers an authenticated call. Resumes channels that work again."""
    from bot.channels import channel_mode, enabled_channels

    lines = []
    ok = True
    if app.store.ping():
        lines.append(f"database: ok ({app.store.dialect})")
    else:
        lines.append("database: unreachable")
        ok = False
    paused = app.store.paused_channels()
    for channel in enabled_channels(app.settings):
        live, why = channel_mode(app.settings, channel)
        if not live:
            lines.append(f"{channel}: {why}: nothing to check")
            continue
        try:
            result = app.publisher(channel).check()
        except PublishError as exc:
            ok = False
            lines.append(f"{channel}: FAILED: {exc}")
            continue
        lines.append(f"{channel}: {result}")
        if channel in paused and app.store.resume_channel(channel):
            lines.append(f"{channel}: resumed (was paused: {paused[channel]})")
    # The digest's transport: SMTP connects and logs in (or the outbox folder when mail is not live).
    try:
        lines.append(f"e-mail: {app.mailer.check()}")
    except (MailError, ConfigError) as exc:
        ok = False
        lines.append(f"e-mail: FAILED: {exc}")
    return ok, lines


@dataclass(frozen=True, slots=True)
class Rendering:
    """One channel's post for one summary, as `preview` and the console show it."""

    channel: str
    post: Post
    #: the length against the channel's limit, e.g. "weighted length 212/280"
    measure: str
    #: each reply with its "count/limit"
    replies: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...]


def describe_post(post: Post) -> Rendering:
    """A post with its channel's measure, its replies' lengths and its warnings."""
    from bot.channels import channel_spec
    from bot.render import post_warnings

    measure = channel_spec(post.channel).measure
    replies = tuple((reply, f"{measure.count(reply)}/{measure.limit}") for reply in post.replies)
    return Rendering(post.channel, post, measure.describe(post), replies, tuple(post_warnings(post)))


def channel_renderings(app: App, summary: Summary, text: str | None = None) -> tuple[list[Rendering], list[str]]:
    """Each enabled channel's post for `summary` as it would be sent now, and notes (paper details missing)."""
    from bot.channels import enabled_channels

    details = None
    notes: list[str] = []
    if summary.arxiv_id:
        details = app.store.papers([summary.arxiv_id]).get(summary.arxiv_id)
        if details is None and app.arxiv is not None:
            try:
                details = app.arxiv.fetch([summary.arxiv_id]).get(summary.arxiv_id)
            except SourceError as exc:
                notes.append(f"note: paper details unavailable, rendered without them: {exc}")
    posts = [
        describe_post(app.renderer.post(channel, summary, details, text=text))
        for channel in enabled_channels(app.settings)
    ]
    return posts, notes


def _preview_one(app: App, summary: Summary, text: str | None = None) -> list[str]:
    renderings, notes = channel_renderings(app, summary, text)
    lines = [f"=== {summary.title} — by {summary.author}", f"    {summary.link}", *(f"  {n}" for n in notes)]
    for r in renderings:
        lines.append(f"--- {r.channel} ({r.measure})")
        lines.append(r.post.text)
        for i, (reply, count) in enumerate(r.replies, 2):
            lines.append(f"  [reply {i}, {count}] {reply}")
        for w in r.warnings:
            lines.append(f"  warning: {w}")
    return lines


def render_preview(app: App, *, guid: str | None, feed: str | None, limit: int) -> str:
    summaries: Sequence[Summary]
    if feed:
        from bot.records import SourceState
        from bot.sources.fetch import make_source
        from bot.sources.parse import parse_feed

        src = make_source(
            feed,
            timeout=app.settings.source.timeout_seconds,
            max_bytes=app.settings.source.max_bytes,
            user_agent=app.settings.source.user_agent,
            deadline=app.settings.source.download_deadline_seconds,
        )
        fetched = src.fetch(SourceState(url=feed), now=app.clock())
        parsed = parse_feed(
            fetched.body or b"", feed, content_type=fetched.content_type, min_votes=app.settings.source.min_votes
        )
        summaries = sorted(parsed.summaries, key=lambda x: x.edited_at, reverse=True)[:limit]
        problems = list(parsed.problems)
    else:
        stored: list[StoredSummary]
        if guid:
            one = app.store.summary_by_guid(guid)
            if one is None:
                raise SourceError(f"no stored summary with guid {guid!r} (see `status`, or use --feed)")
            stored = [one]
        else:
            stored = app.store.latest_summaries(limit)
            if not stored:
                raise SourceError("the store has no summaries yet: run `python -m bot poll`, or use --feed PATH_OR_URL")
        summaries = [s.summary for s in stored]
        problems = []
    out: list[str] = []
    for summary in summaries:
        out.extend(_preview_one(app, summary))
        out.append("")
    out.extend(f"skipped item: {p}" for p in problems)
    return "\n".join(out).rstrip()
