"""What the console tests share: a newsroom whose deliveries need the operator, served with the console."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from conftest import make_settings
from digest_util import BASE, FROM, MONDAY, SECRET, Newsroom
from feeds_util import Item

from bot.admin import routes as console_routes
from bot.records import Attempt, DeliveryState
from bot.settings import Settings
from bot.subscribe import routes
from bot.web import create_app

PASSWORD = "correct horse battery staple"


@functools.cache
def password_hash() -> str:
    from bot.admin.auth import hash_password

    return hash_password(PASSWORD)


def console_settings(
    tmp_path: Path, db_url: str, *, enabled: bool = True, env: dict[str, str] | None = None, **web: Any
) -> Settings:
    environ = {"DATABASE_URL": db_url, "DIGEST_FROM": FROM, "SECRET_KEY": SECRET, "PUBLIC_BASE_URL": BASE}
    if enabled:
        environ["OPERATOR_PASSWORD_HASH"] = password_hash()
    environ.update(env or {})
    return make_settings(tmp_path, environ, arxiv={"enabled": False}, web=web)


def troubled_room(settings: Settings) -> tuple[Newsroom, dict[str, int]]:
    """Two summaries posted on every channel; three deliveries failed, dead and uncertain. Returns their ids by
    state."""
    room = Newsroom.open(settings, start=MONDAY)
    room.publish(
        [
            Item(
                key="journals/corr/1706.03762",
                title="Attention <Is> All You Need",
                votes=9,
                text="Self-attention <b>replaces</b> recurrence: $QK^T/\\sqrt{d}$.",
            ),
            Item(key="journals/corr/1512.03385", title="Deep Residual Learning", votes=7),
        ]
    )
    store = room.app.store
    now = room.clock()
    ids = sorted(d.id for d in store.deliveries(limit=10))
    marks = {"failed": ids[0], "dead": ids[1], "uncertain": ids[2]}
    store.mark_final(
        marks["failed"],
        state=DeliveryState.FAILED,
        attempt=Attempt(marks["failed"], now, "failed", 400, None, "duplicate content"),
    )
    store.mark_final(
        marks["dead"],
        state=DeliveryState.DEAD,
        attempt=Attempt(marks["dead"], now, "retry", 503, None, "service unavailable"),
    )
    store.mark_retry(
        marks["uncertain"],
        due_at=now,
        attempt=Attempt(marks["uncertain"], now, "uncertain", None, None, "worker died"),
        state=DeliveryState.UNCERTAIN.value,
    )
    return room, marks


def console_app(room: Newsroom) -> Any:
    return create_app(room.app.settings, extra_routes=[*routes(room.app), *console_routes(room.app)])


def delivery_state(url: str, delivery_id: int) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """A delivery's row and its attempts, without the times (the CLI and the console run at other moments)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            row = dict(
                conn.execute(sa.text("SELECT * FROM deliveries WHERE id = :i"), {"i": delivery_id}).mappings().one()
            )
            attempts = [
                tuple(r)
                for r in conn.execute(
                    sa.text(
                        "SELECT delivery_id, outcome, http_status, code, message FROM attempts WHERE "
                        "delivery_id = :i ORDER BY id"
                    ),
                    {"i": delivery_id},
                )
            ]
    finally:
        engine.dispose()
    for key in ("due_at", "updated_at", "lease_until"):
        row.pop(key, None)
    return row, attempts
