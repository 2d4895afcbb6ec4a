"""The store: every row the bot keeps, on SQLite or PostgreSQL, behind one class.

It owns transactions and migrations; it never fetches, renders or publishes.
SQLAlchemy errors are translated into ``StoreError`` here, at the edge.

``Store`` composes one mixin per domain: ``sources``, ``summaries`` (and the render
cache), ``papers``, ``deliveries`` (and channel pauses), ``jobs``, ``subscribers``
(and rate limits), ``digests``, ``held``, ``charts``, ``console``. Infrastructure
lives apart: ``engine`` (engine, pool events, migrations, upserts), ``rows`` (rows to
records), ``statements`` (the dispatch loop's prebuilt statements), ``sending``
(the digest send path's driver SQL) and ``schema``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from bot.errors import StoreError
from bot.store.charts import ChartStore
from bot.store.console import ConsoleStore
from bot.store.deliveries import DeliveryStore
from bot.store.digests import DigestStore
from bot.store.engine import (
    _MIGRATIONS,
    HEAD_REVISION,
    PING_AFTER_IDLE_SECONDS,
    _redact_url,
    current_revision,
    make_engine,
    migrate,
)
from bot.store.held import HeldStore
from bot.store.jobs import JobStore
from bot.store.papers import PaperStore
from bot.store.rows import post_from_json, post_to_json
from bot.store.sources import SourceStore
from bot.store.subscribers import SubscriberStore
from bot.store.summaries import SummaryStore

__all__ = [
    "HEAD_REVISION",
    "PING_AFTER_IDLE_SECONDS",
    "_MIGRATIONS",
    "Store",
    "_redact_url",
    "current_revision",
    "make_engine",
    "migrate",
    "post_from_json",
    "post_to_json",
]


class Store(
    SourceStore,
    SummaryStore,
    PaperStore,
    DeliveryStore,
    JobStore,
    SubscriberStore,
    DigestStore,
    HeldStore,
    ChartStore,
    ConsoleStore,
):
    """The bot's database, one mixin per domain. Every method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True, pool_size: int = 5) -> Store:
        try:
            engine = make_engine(url, pool_size=pool_size)
            if migrate_schema:
                migrate(engine)
        except SQLAlchemyError as exc:
            detail = getattr(exc, "orig", None) or exc
            raise StoreError(f"database {_redact_url(url)}: {_redact_url(str(detail)).splitlines()[0]}") from None
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def tx(self) -> Iterator[Connection]:
        """One transaction; database errors come out as StoreError."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            detail = getattr(exc, "orig", None) or exc
            raise StoreError(f"database error: {_redact_url(str(detail)).splitlines()[0]}") from exc

    def ping(self) -> bool:
        try:
            with self.tx() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except StoreError:
            return False
