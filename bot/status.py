"""What operators read: `status`, `check` and `preview`, as text built from the store and settings.

Read-only apart from `check`, which resumes a paused channel once its
credentials work again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from bot.channels import CHANNELS
from bot.decide import estimated_cost
from bot.errors import ConfigError, MailError, PublishError, SourceError
from bot.records import DeliveryState, StoredSummary, Summary
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
    """arXiv's last error (while it lasts) and the papers posts went out without: both cost posts their authors and hashtags."""
    from bot.content import ARXIV_JOB

    out = []
    job = app.store.jobs().get(ARXIV_JOB) or {}
    if job.get("last_error"):
        out.append(f"  arXiv failed {_when(job.get('last_run_at'), now)} (last ok {_when(job.get('last_ok_at'), now)}): {job['last_error'][:300]}")
    # With arXiv turned off (arxiv.enabled = false) no paper has details, by the operator's choice.
    missing = app.store.papers_without_details() if app.arxiv is not None else []
    if missing:
        shown = ", ".join(missing[:10]) + (", …" if len(missing) > 10 else "")
        out.append(
            f"  {plural(len(missing), 'paper')} without details (their posts had no authors, no hashtags; "
            f"asked again when a feeds build or a digest needs them): {shown}"
        )
    return out


def render_status(app: App) -> str:
    from bot.channels import channel_mode

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
            out.append(f"    HELD by the flood guard: {held[src.url]} new summaries in the feeds but not posted"
                       f" (more than source.max_new_per_poll = {s.source.max_new_per_poll} in one poll);"
                       f" `python -m bot release --source {src.url}` queues them, `--discard` lets them go")
        if src.last_error:
            label = "last error" if src.failures else "skipped items"
            out.append(f"    {label}: {src.last_error[:500]}")
    out.append("")
    out.append("channels:")
    counts = store.delivery_counts()
    paused = store.paused_channels()
    for channel in CHANNELS:
        cs = s.channel(channel)
        live, why = channel_mode(s, channel)
        state = "disabled" if not cs.enabled else why
        out.append(f"  {channel}: {state}")
        if channel in paused:
            out.append(f"    PAUSED: {paused[channel]} — fix it, then run `python -m bot check` to resume")
        c = counts.get(channel, {})
        states = " · ".join(f"{st.value} {c.get(st.value, 0)}" for st in DeliveryState if c.get(st.value, 0) or st in (DeliveryState.PENDING, DeliveryState.SENT))
        out.append(f"    deliveries: {states}")
        today, month, last = store.sent_counts(channel, now=now)
        cost = estimated_cost(month, cs.price_per_post) if live else 0.0
        caps = f"daily cap {cs.daily_cap or 'off'}, monthly cap {cs.monthly_cap or 'off'}, min interval {cs.min_interval_minutes or 'off'}{' min' if cs.min_interval_minutes else ''}"
        # X bills reads too: reconciliation after a crash reads the account's posts back.
        read_price = getattr(cs, "read_price", None)
        reads = f", reading back ${read_price:.3f}/post read" if read_price is not None and not getattr(cs, "reconcile_resend", False) else ""
        out.append(f"    posts today {today}, this month {month}" + (f" (est. ${cost:.2f} at ${cs.price_per_post:.2f}/post{reads})" if live else " (dry-run: no cost)"))
        out.append(f"    pacing: {caps}; last post {_when(last, now)}; next due {_when(store.next_due(channel), now)}")
    attention = store.deliveries(states=[DeliveryState.UNCERTAIN.value, DeliveryState.FAILED.value, DeliveryState.DEAD.value], limit=50)
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
    from bot.digest import digest_status

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
            out.append(f"  {name}: last run {_when(j.get('last_run_at'), now)}, last ok {_when(j.get('last_ok_at'), now)}{err}")
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


def _preview_one(app: App, summary: Summary, text: str | None = None) -> list[str]:
    from bot.channels import channel_spec, enabled_channels
    from bot.render import post_warnings

    details = None
    notes: list[str] = []
    if summary.arxiv_id:
        details = app.store.papers([summary.arxiv_id]).get(summary.arxiv_id)
        if details is None and app.arxiv is not None:
            try:
                details = app.arxiv.fetch([summary.arxiv_id]).get(summary.arxiv_id)
            except SourceError as exc:
                notes.append(f"  note: paper details unavailable, rendered without them: {exc}")
    lines = [f"=== {summary.title} — by {summary.author}", f"    {summary.link}", *notes]
    for channel in enabled_channels(app.settings):
        post = app.renderer.post(channel, summary, details, text=text)
        measure = channel_spec(channel).measure
        lines.append(f"--- {channel} ({measure.describe(post)})")
        lines.append(post.text)
        for i, reply in enumerate(post.replies, 2):
            lines.append(f"  [reply {i}, {measure.count(reply)}/{measure.limit}] {reply}")
        for w in post_warnings(post):
            lines.append(f"  warning: {w}")
    return lines


def render_preview(app: App, *, guid: str | None, feed: str | None, limit: int) -> str:
    summaries: Sequence[Summary]
    if feed:
        from bot.records import SourceState
        from bot.sources.fetch import make_source
        from bot.sources.parse import parse_feed

        src = make_source(feed, timeout=app.settings.source.timeout_seconds, max_bytes=app.settings.source.max_bytes, user_agent=app.settings.source.user_agent,
                          deadline=app.settings.source.download_deadline_seconds)
        fetched = src.fetch(SourceState(url=feed), now=app.clock())
        parsed = parse_feed(fetched.body or b"", feed, content_type=fetched.content_type, min_votes=app.settings.source.min_votes)
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
