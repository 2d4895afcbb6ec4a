"""The store's operator-console half: the audit log, login failures, and the console's read-only look-ups.

A mixin of ``Store`` (every method one transaction). Audit rows are only ever
added. Subscriber look-ups are by exact address or prefix, with a small cap:
the console never lists the addresses in bulk.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.records import AuditEntry, Delivery, StoredDigest, Subscriber
from bot.store import schema as t
from bot.store.digests import _digest
from bot.store.subscribers import _subscriber, address_key

#: the login outcomes the audit log records
LOGIN_OK = "login"
LOGIN_FAILED = "login_failed"


def _like_prefix(text: str) -> str:
    """A LIKE pattern matching `text` literally at the start (escape char: backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class ConsoleStore:
    """Audit and console look-ups (mixed into ``bot.store.Store``)."""

    if TYPE_CHECKING:

        def tx(self) -> AbstractContextManager[Connection]: ...

        def deliveries(
            self, *, states: Sequence[str] | None = None, channel: str | None = None, limit: int = 100
        ) -> list[Delivery]: ...

    def audit(self, action: str, *, now: datetime, target: str = "", client: str = "", detail: str = "") -> None:
        with self.tx() as conn:
            conn.execute(
                t.operator_audit.insert().values(
                    at=now, action=action[:32], target=target[:500], client=client[:64], detail=detail[:1000]
                )
            )

    def audited(self, action: str, target: str) -> bool:
        """Whether the log holds `action` on `target` (a session's logout, say)."""
        a = t.operator_audit
        with self.tx() as conn:
            return (
                conn.execute(sa.select(a.c.id).where(a.c.action == action, a.c.target == target).limit(1)).first()
                is not None
            )

    def audit_entries(self, *, limit: int = 100) -> list[AuditEntry]:
        """The newest entries first."""
        a = t.operator_audit
        with self.tx() as conn:
            rows = conn.execute(sa.select(a).order_by(a.c.id.desc()).limit(limit)).all()
        return [AuditEntry(r.id, r.at, r.action, r.target, r.client, r.detail) for r in rows]

    def login_failures(self, *, since: datetime, client: str | None = None) -> list[datetime]:
        """Times of failed logins after `since` and after the last successful one (of `client`, or anyone's)."""
        a = t.operator_audit
        with self.tx() as conn:
            ok = sa.select(sa.func.max(a.c.at)).where(a.c.action == LOGIN_OK)
            if client is not None:
                ok = ok.where(a.c.client == client)
            last_ok = conn.execute(ok).scalar()
            start = max(since, last_ok) if last_ok is not None else since
            q = sa.select(a.c.at).where(a.c.action == LOGIN_FAILED, a.c.at > start)
            if client is not None:
                q = q.where(a.c.client == client)
            return [r.at for r in conn.execute(q.order_by(a.c.at))]

    def recent_digests(self, *, limit: int = 20) -> list[StoredDigest]:
        with self.tx() as conn:
            rows = conn.execute(sa.select(t.digests).order_by(t.digests.c.issue.desc()).limit(limit)).all()
        return [_digest(r) for r in rows]

    def find_subscribers(self, query: str, *, limit: int) -> list[Subscriber]:
        """The subscriber with exactly this address, or those whose address starts with it (at most `limit`)."""
        key = address_key(query.strip()) if query.strip() else ""
        if not key:
            return []
        s = t.subscribers
        with self.tx() as conn:
            exact = conn.execute(sa.select(s).where(s.c.address_key == key)).first()
            if exact is not None:
                return [_subscriber(exact)]
            rows = conn.execute(
                sa.select(s)
                .where(s.c.address_key.like(_like_prefix(key), escape="\\"))
                .order_by(s.c.address_key)
                .limit(limit)
            ).all()
        return [_subscriber(r) for r in rows]

    def summary_deliveries(self, summary_id: int) -> list[Delivery]:
        """Every delivery of one summary, on every channel, oldest first."""
        from bot.store.rows import _delivery_from_row
        from bot.store.statements import _SELECT_DELIVERY

        with self.tx() as conn:
            rows = conn.execute(
                _SELECT_DELIVERY.where(t.deliveries.c.summary_id == summary_id).order_by(t.deliveries.c.id)
            ).all()
        return [_delivery_from_row(r) for r in rows]

    def paused_since(self) -> dict[str, datetime | None]:
        """Paused channels → when they were paused (credentials "failing since …")."""
        c = t.channels
        with self.tx() as conn:
            return {
                r.name: r.paused_at
                for r in conn.execute(sa.select(c.c.name, c.c.paused_at).where(c.c.paused.is_(True)))
            }

    def post_urls(self, delivery_ids: Sequence[int]) -> dict[int, str]:
        """Delivery id → where its published post can be seen (for those whose channel said)."""
        d = t.deliveries
        if not delivery_ids:
            return {}
        with self.tx() as conn:
            rows = conn.execute(
                sa.select(d.c.id, d.c.post_url).where(d.c.id.in_(list(delivery_ids)), d.c.post_url.is_not(None))
            )
            return {r.id: r.post_url for r in rows}
