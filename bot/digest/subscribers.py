"""The subscriber commands: add, remove, list, import from CSV, and the confirmation e-mail."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bot.digest.addresses import split_categories, validate_address
from bot.errors import ConfigError, MailError, SubscriberError
from bot.mail import signed_link
from bot.mail.tokens import subscription_version
from bot.records import Subscriber, SubscriberState

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)


def send_confirmation(app: App, subscriber: Subscriber) -> str:
    """Mail the double opt-in link; MailError if it cannot go out now. Returns where it went."""
    now = app.clock()
    link = signed_link(app.settings, "confirm", subscriber.address, now=now, version=subscription_version(subscriber))
    email = app.composer.confirmation(subscriber.address, link, now=now)
    app.mailer.send(email)
    app.store.confirmation_sent(subscriber.id, now=now)
    return "SMTP" if app.mailer.live else str(app.settings.outbox_dir / "email")


def add_subscriber(
    app: App, email: str, *, confirmed: bool, categories: Sequence[str] = (), source: str = "cli"
) -> str:
    """`subscribers add`: one line on what happened."""
    address = validate_address(email)
    cats = split_categories(categories)
    result, sub = app.store.add_subscriber(
        address, now=app.clock(), confirmed=confirmed, categories=cats, source=source
    )
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
    return (
        f"{address}: {'already pending' if result == 'pending' else 'added as pending'} ({wants}); "
        f"confirmation e-mail sent{again} ({where}), link valid {app.settings.digest.confirm_ttl_hours} h"
    )


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
        note = (
            f"  ({sub.permanent_failures} refusals: {sub.last_error[:80]})"
            if sub.last_error and sub.permanent_failures
            else ""
        )
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
                yield (
                    reader.line_num,
                    row[col] if col < len(row) else "",
                    row[cats] if cats is not None and cats < len(row) else "",
                )
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: line {reader.line_num}: not a readable CSV file: {exc}") from None


# long: the chunked import and its report share counters (flush is a closure over them); moved verbatim
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
        parts.append(
            f"confirmation e-mails: {mailed} sent" + (f", {mail_failed} failed (see the log)" if mail_failed else "")
        )
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
