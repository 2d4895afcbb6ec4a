"""Shared by the digest and subscription tests: settings, an app with news in it, messages parsed back."""

from __future__ import annotations

import email
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from conftest import FakeClock, make_settings
from feeds_util import Item, site_feed
from smtp_server import Received, SmtpTestServer

from bot.app import App, build_app
from bot.pipeline import poll
from bot.records import PaperDetails
from bot.settings import Settings
from bot.sources.memory import MemorySource

SECRET = "digest-test-secret-key-0123456789"
FROM = "ShortScience weekly <digest@example.org>"
BASE = "https://bot.example.org"
#: a Monday 09:00 UTC: the default schedule (Monday 08:00 UTC) passed an hour ago
MONDAY = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def digest_settings(
    tmp_path: Path, db_url: str, server: SmtpTestServer | None = None, env: dict[str, str] | None = None, **digest: Any
) -> Settings:
    environ = {"DATABASE_URL": db_url, "DIGEST_FROM": FROM, "SECRET_KEY": SECRET, "PUBLIC_BASE_URL": BASE}
    if server is not None:
        environ["SMTP_URL"] = server.url()
    environ.update(env or {})
    return make_settings(tmp_path, environ, arxiv={"enabled": False}, digest={"smtp_timeout_seconds": 5.0, **digest})


@dataclass
class Newsroom:
    """An app on the test database whose feed the test writes, with a clock it moves."""

    app: App
    source: MemorySource
    clock: FakeClock
    polls: int = 0

    @classmethod
    def open(cls, settings: Settings, *, start: datetime = MONDAY - timedelta(days=5), **overrides: Any) -> Newsroom:
        clock = FakeClock(start)
        source = MemorySource(b"")
        app = build_app(settings, source=source, clock=clock, arxiv=False, **overrides)
        return cls(app, source, clock)

    def publish(self, items: Sequence[Item], *, at: datetime | None = None) -> None:
        """Poll a feed holding `items`: every one not seen before is news (none is backfilled)."""
        if at is not None:
            self.clock.now = at
        self.source.body = site_feed(list(items))
        poll(self.app, backfill=len(items))
        self.polls += 1

    def papers(self, categories: dict[str, tuple[str, ...]]) -> None:
        """arXiv details (the digest's categories come from them) as if fetched before."""
        found = {
            arxiv: PaperDetails(
                arxiv_id=arxiv,
                title=f"Paper {arxiv}",
                authors=("Ada Lovelace", "Alan Turing"),
                published=datetime(2026, 10, 1, tzinfo=UTC),
                categories=cats,
            )
            for arxiv, cats in categories.items()
        }
        self.app.store.put_papers(found, [], now=self.clock())

    def subscribe(self, address: str, *, state: str = "confirmed", categories: Iterable[str] = ()) -> int:
        """Put a subscriber in `state` the way the bot would, and return its id."""
        from bot.digest import validate_address

        store = self.app.store
        now = self.clock()
        address = validate_address(address)
        store.add_subscriber(
            address, now=now, confirmed=state != "pending", categories=tuple(categories), source="test"
        )
        if state == "unsubscribed":
            store.unsubscribe(address, now=now)
        elif state == "bounced":
            from bot.store import schema as t

            with store.tx() as conn:
                conn.execute(
                    t.subscribers.update()
                    .where(t.subscribers.c.address_key == address.casefold())
                    .values(state="bounced", bounced_at=now)
                )
        sub = store.subscriber(address)
        assert sub is not None
        return sub.id

    def close(self) -> None:
        self.app.close()


def parse(received: Received) -> EmailMessage:
    msg = email.message_from_bytes(received.data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def parts(msg: EmailMessage) -> tuple[str, str]:
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and html is not None
    return plain.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


def by_recipient(server: SmtpTestServer) -> dict[str, list[EmailMessage]]:
    out: dict[str, list[EmailMessage]] = {}
    for received in server.messages:
        for rcpt in received.rcpt_tos:
            out.setdefault(rcpt, []).append(parse(received))
    return out


def sends(app: App, digest_id: int | None = None) -> list[dict[str, Any]]:
    """Every digest send row (of one issue), as dicts with the subscriber's address."""
    import sqlalchemy as sa

    from bot.store import schema as t

    ds, sub = t.digest_sends, t.subscribers
    q = (
        sa.select(ds, sub.c.address)
        .select_from(ds.join(sub, sub.c.id == ds.c.subscriber_id))
        .order_by(ds.c.subscriber_id)
    )
    if digest_id is not None:
        q = q.where(ds.c.digest_id == digest_id)
    with app.store.tx() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]
