"""The digest section of `status`: subscribers by state, the last issue, the next, open sends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.digest.issues import _describe, _schedule
from bot.mail import SmtpMailer
from bot.records import SubscriberState

if TYPE_CHECKING:
    from bot.app import App


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
        out.append(
            f"  next issue: {schedule.following(now):%Y-%m-%d %H:%M} UTC "
            f"(every {app.settings.digest.day_of_week} at {app.settings.digest.time} {app.settings.digest.timezone})"
        )
    else:
        out.append("  next issue: the scheduler sends none (digest.enabled = false); `digest send` still works")
    open_ = store.open_send_counts()
    if open_:
        nxt = store.next_send_due()
        out.append(
            "  open sends: "
            + " · ".join(f"{k} {v}" for k, v in sorted(open_.items()))
            + (f"; next due {nxt:%Y-%m-%d %H:%M} UTC" if nxt else "")
        )
    mailer = app.mailer
    if isinstance(mailer, SmtpMailer):
        out.append(
            f"  mail: SMTP {mailer.config.where} ({mailer.config.security}), {app.settings.digest.connections} "
            f"connections, from {mailer.envelope_from}"
        )
    else:
        out.append(f"  mail: {mailer.check()}")
    return out
