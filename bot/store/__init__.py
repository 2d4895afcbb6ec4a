"""The store: every row the bot keeps, on SQLite or PostgreSQL, behind one class.

It owns transactions and migrations; it never fetches, renders or publishes.
SQLAlchemy errors are translated into ``StoreError`` here, at the edge.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bot.decide import PollPlan, day_start, first_published, month_start
from bot.errors import StoreError
from bot.records import (
    Attempt,
    Delivery,
    DeliveryClaim,
    DeliveryState,
    FetchResult,
    PaperDetails,
    Post,
    Published,
    SourceState,
    StoredSummary,
    Summary,
)
from bot.store import schema as t
from bot.store.charts import ChartStore
from bot.store.console import ConsoleStore
from bot.store.digests import DigestStore
from bot.store.held import HeldStore

log = logging.getLogger(__name__)

#: the newest migration; `Store.open` upgrades any older database to it
HEAD_REVISION = "0006"
_MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _redact_url(message: str) -> str:
    # Driver errors may quote the connection URL; never show its password.
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", message)


#: a pooled connection idle this long is pinged before use
PING_AFTER_IDLE_SECONDS = 1.0


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine with the per-database settings the bot relies on."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let us issue BEGIN ourselves: pysqlite's implicit transactions
            # would let two dispatchers read the same due row.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # IMMEDIATE takes the write lock up front: claims are serialised.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size)

    # A connection that sat in the pool is tested before use (the server may have
    # restarted meanwhile); one a worker handed back a moment ago is not: a ping on
    # every checkout would cost a round trip per transaction, several per delivery. Should
    # it have died anyway, the query fails, SQLAlchemy discards the pool's
    # connections and the caller's retry gets fresh ones.
    @sa.event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            with dbapi_conn.cursor() as cur:
                cur.execute("SELECT 1")
        except Exception as exc:
            # The pool replaces the connection and checks out another (SQLAlchemy's pessimistic recipe).
            raise sa.exc.DisconnectionError(str(exc)) from exc

    return engine


def migrate(engine: Engine) -> bool:
    """Bring the schema to HEAD_REVISION; True when something was applied."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Two processes starting at once must not both create tables.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727001)")
        if current_revision(conn) == HEAD_REVISION:
            return False
        # Only now: importing Alembic costs every command a fifth of a second.
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return True


def current_revision(conn: Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def _upsert(conn: Connection, table: sa.Table, key: list[str], rows: list[dict[str, Any]]) -> None:
    """Insert rows, replacing those whose key exists.

    Several workers may cache the same render or paper at once: a delete then
    insert would fail on PostgreSQL when two of them race. Rows go in key order
    so two concurrent upserts never wait on each other in a cycle.
    """
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(table)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
    stmt = stmt.on_conflict_do_update(index_elements=key, set_={c.name: stmt.excluded[c.name] for c in table.c if c.name not in key})
    conn.execute(stmt, sorted(rows, key=lambda r: tuple(r[k] for k in key)))


def _summary_from_row(row: Row[Any]) -> Summary:
    m = row._mapping
    return Summary(
        guid=m["guid"],
        title=m["title"],
        author=m["author"],
        text=m["text"],
        link=m["link"],
        edited_at=m["edited_at"],
        votes=m["votes"],
        arxiv_id=m["arxiv_id"],
        bibtex_key=m["bibtex_key"],
        categories=tuple(m["categories"] or ()),
        content_hash=m["content_hash"],
    )


def _stored_from_row(row: Row[Any]) -> StoredSummary:
    m = row._mapping
    return StoredSummary(
        id=m["id"],
        summary=_summary_from_row(row),
        first_seen_at=m["first_seen_at"],
        version=m["version"],
        changed_at=m["changed_at"],
        backfilled=m["backfilled"],
        published_at=m.get("published_at"),
    )


#: a paper's cached columns, named apart from the summaries' (reserve reads both at once)
_PAPER_COLUMNS = (
    t.papers.c.arxiv_id.label("paper_arxiv_id"),
    t.papers.c.title.label("paper_title"),
    t.papers.c.authors.label("paper_authors"),
    t.papers.c.published.label("paper_published"),
    t.papers.c.categories.label("paper_categories"),
    t.papers.c.found.label("paper_found"),
)


_SELECT_PAPERS: sa.Select[Any] = sa.select(*_PAPER_COLUMNS)


def _paper_from_row(row: Row[Any]) -> tuple[str, PaperDetails | None]:
    m = row._mapping
    details = PaperDetails(
        arxiv_id=m["paper_arxiv_id"],
        title=m["paper_title"] or "",
        authors=tuple(m["paper_authors"] or ()),
        published=m["paper_published"],
        categories=tuple(m["paper_categories"] or ()),
    )
    return m["paper_arxiv_id"], details if m["paper_found"] else None


def _attempt_row(attempt: Attempt) -> dict[str, Any]:
    return {
        "delivery_id": attempt.delivery_id,
        "at": attempt.at,
        "outcome": attempt.outcome,
        "http_status": attempt.http_status,
        "code": attempt.code,
        "message": attempt.message[:1000],
    }


def _delivery_from_row(row: Row[Any]) -> Delivery:
    m = row._mapping
    post = m["post"]
    return Delivery(
        id=m["id"],
        summary_id=m["summary_id"],
        guid=m["guid"],
        channel=m["channel"],
        state=DeliveryState(m["state"]),
        attempts=m["attempts"],
        due_at=m["due_at"],
        post_id=m["post_id"],
        last_error=m["last_error"],
        text=post.get("text") if isinstance(post, dict) else None,
        created_at=m["created_at"],
    )


def post_to_json(post: Post) -> dict[str, Any]:
    data = asdict(post)
    data["replies"] = list(post.replies)
    return data


def post_from_json(data: Mapping[str, Any]) -> Post:
    return Post(
        channel=data["channel"],
        summary_guid=data["summary_guid"],
        text=data["text"],
        link=data["link"],
        replies=tuple(data.get("replies") or ()),
        image_url=data.get("image_url"),
    )


_DELIVERY_COLUMNS = (
    t.deliveries.c.id,
    t.deliveries.c.summary_id,
    t.summaries.c.guid,
    t.deliveries.c.channel,
    t.deliveries.c.state,
    t.deliveries.c.attempts,
    t.deliveries.c.due_at,
    t.deliveries.c.post_id,
    t.deliveries.c.last_error,
    t.deliveries.c.post,
    t.deliveries.c.created_at,
)


# The dispatch loop's statements, built once with parameters: building a statement
# costs more CPU than running it, several times per delivery.
_P = sa.bindparam
_PENDING = DeliveryState.PENDING.value
_SELECT_DELIVERY: sa.Select[Any] = sa.select(*_DELIVERY_COLUMNS).select_from(
    t.deliveries.join(t.summaries, t.summaries.c.id == t.deliveries.c.summary_id)
)
_DELIVERY_BY_ID = _SELECT_DELIVERY.where(t.deliveries.c.id == _P("p_id"))
#: the oldest due, unreserved pending delivery of channels that are not paused, locked (SKIP LOCKED)
_DUE = (
    sa.select(t.deliveries.c.id)
    .where(
        t.deliveries.c.state == _PENDING,
        t.deliveries.c.due_at <= _P("p_now"),
        t.deliveries.c.channel.in_(_P("p_channels", expanding=True)),
        # Reserved by a worker that is rendering its post.
        sa.or_(t.deliveries.c.lease_until.is_(None), t.deliveries.c.lease_until < _P("p_now")),
        # A channel another worker paused a moment ago is skipped at once.
        t.deliveries.c.channel.not_in(sa.select(t.channels.c.name).where(t.channels.c.paused.is_(True))),
    )
    .order_by(t.deliveries.c.due_at, t.deliveries.c.id)
    .limit(1)
    .with_for_update(skip_locked=True)
)
_CLAIM = t.deliveries.update().where(t.deliveries.c.id == _P("p_id")).values(claimed_by=_P("p_worker"), lease_until=_P("p_lease_until"))
#: a summary with what rendering its post reads from the caches: the plain text of its
#: current version, and its paper's details
_SUMMARY_FOR_POST = (
    sa.select(t.summaries, t.renders.c.text.label("render_text"), *_PAPER_COLUMNS)
    .select_from(
        t.summaries.outerjoin(
            t.renders, sa.and_(t.renders.c.summary_id == t.summaries.c.id, t.renders.c.content_hash == t.summaries.c.content_hash)
        ).outerjoin(t.papers, t.papers.c.arxiv_id == t.summaries.c.arxiv_id)
    )
    .where(t.summaries.c.id == _P("p_id"))
)
_START_SENDING = (
    t.deliveries.update()
    .where(t.deliveries.c.id == _P("p_id"), t.deliveries.c.state == _PENDING, t.deliveries.c.claimed_by == _P("p_worker"))
    .values(state=DeliveryState.IN_FLIGHT.value, attempts=t.deliveries.c.attempts + 1, lease_until=_P("p_lease_until"), updated_at=_P("p_now"))
)
_START_SENDING_WITH_POST = _START_SENDING.values(post=_P("p_post"))
_MARK_SENT = (
    t.deliveries.update()
    .where(t.deliveries.c.id == _P("p_id"))
    .values(lease_until=None, updated_at=_P("p_now"), state=DeliveryState.SENT.value, post_id=_P("p_post_id"), post_url=_P("p_post_url"), sent_at=_P("p_now"), last_error=None)
)
_ATTEMPT = t.attempts.insert()


class Store(DigestStore, HeldStore, ChartStore, ConsoleStore):
    """The bot's database. Every method is one transaction."""

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

    # ------------------------------------------------------------------ sources

    def source_state(self, url: str) -> SourceState:
        with self.tx() as conn:
            row = conn.execute(sa.select(t.sources).where(t.sources.c.url == url)).first()
        if row is None:
            return SourceState(url=url)
        m = row._mapping
        return SourceState(**{k: m[k] for k in SourceState.__dataclass_fields__})

    def all_sources(self) -> list[SourceState]:
        with self.tx() as conn:
            rows = conn.execute(sa.select(t.sources).order_by(t.sources.c.id)).all()
        return [SourceState(**{k: r._mapping[k] for k in SourceState.__dataclass_fields__}) for r in rows]

    def _source_id(self, conn: Connection, url: str) -> int:
        sid = conn.execute(sa.select(t.sources.c.id).where(t.sources.c.url == url)).scalar()
        if sid is None:
            sid = conn.execute(t.sources.insert().values(url=url, failures=0, items_seen=0)).inserted_primary_key[0]  # type: ignore[index]
        return int(sid)

    def record_not_modified(self, url: str, *, now: datetime, fetch: FetchResult, next_poll_at: datetime) -> None:
        """A 304: remember the poll, nothing else."""
        with self.tx() as conn:
            sid = self._source_id(conn, url)
            conn.execute(
                t.sources.update()
                .where(t.sources.c.id == sid)
                .values(
                    last_poll_at=now,
                    last_ok_at=now,
                    last_status=fetch.status,
                    last_error=None,
                    failures=0,
                    fresh_until=fetch.fresh_until,
                    next_poll_at=next_poll_at,
                )
            )

    def record_poll_error(self, url: str, *, now: datetime, error: str, status: int | None, next_poll_at: datetime) -> int:
        """A failed poll: count it and schedule the next; returns the failure count."""
        with self.tx() as conn:
            sid = self._source_id(conn, url)
            failures = int(conn.execute(sa.select(t.sources.c.failures).where(t.sources.c.id == sid)).scalar() or 0) + 1
            conn.execute(
                t.sources.update()
                .where(t.sources.c.id == sid)
                .values(last_poll_at=now, last_status=status, last_error=error, failures=failures, next_poll_at=next_poll_at)
            )
        return failures

    def known_versions(self, guids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """guid → (content hash, version) for the guids the store has."""
        out: dict[str, tuple[str, int]] = {}
        with self.tx() as conn:
            for i in range(0, len(guids), 500):
                chunk = guids[i : i + 500]
                rows = conn.execute(
                    sa.select(t.summaries.c.guid, t.summaries.c.content_hash, t.summaries.c.version).where(
                        t.summaries.c.guid.in_(chunk)
                    )
                )
                for guid, h, v in rows:
                    out[guid] = (h, v)
        return out

    def apply_poll(
        self,
        url: str,
        plan: PollPlan,
        *,
        now: datetime,
        fetch: FetchResult,
        next_poll_at: datetime,
        problems: Sequence[str] = (),
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]:
        """Write a poll's outcome in ONE transaction: summaries, versions, deliveries, source state.

        Either all of it is stored or none: a crash never leaves a summary
        without its deliveries. Returns guid → summary id of new summaries.
        """
        ids: dict[str, int] = {}
        with self.tx() as conn:
            sid = self._source_id(conn, url)
            first = conn.execute(sa.select(t.sources.c.first_polled_at).where(t.sources.c.id == sid)).scalar() is None
            if plan.new:
                rows = [
                    {
                        "source_id": sid,
                        "guid": s.guid,
                        "title": s.title,
                        "author": s.author,
                        "text": s.text,
                        "link": s.link,
                        "votes": s.votes,
                        "arxiv_id": s.arxiv_id,
                        "bibtex_key": s.bibtex_key,
                        "categories": list(s.categories),
                        "content_hash": s.content_hash,
                        "version": 1,
                        "edited_at": s.edited_at,
                        "first_seen_at": now,
                        "published_at": first_published(s.edited_at, now),
                        "changed_at": now,
                        "backfilled": s.guid in plan.backfilled,
                        "held": s.guid in plan.held,
                    }
                    for s in plan.new
                ]
                for i in range(0, len(rows), 200):
                    conn.execute(t.summaries.insert(), rows[i : i + 200])
                    if progress:
                        progress(len(rows[i : i + 200]))
                for guid, rid in conn.execute(
                    sa.select(t.summaries.c.guid, t.summaries.c.id).where(t.summaries.c.guid.in_([s.guid for s in plan.new]))
                ):
                    ids[guid] = rid
                conn.execute(
                    t.summary_versions.insert(),
                    [
                        {
                            "summary_id": ids[s.guid],
                            "version": 1,
                            "title": s.title,
                            "author": s.author,
                            "text": s.text,
                            "content_hash": s.content_hash,
                            "edited_at": s.edited_at,
                            "seen_at": now,
                        }
                        for s in plan.new
                    ],
                )
            edited_ids: dict[str, int] = {}
            for s in plan.edited:
                row = conn.execute(
                    sa.select(t.summaries.c.id, t.summaries.c.version, t.summaries.c.published_at, t.summaries.c.first_seen_at)
                    .where(t.summaries.c.guid == s.guid)
                ).one()
                version = row.version + 1
                edited_ids[s.guid] = row.id
                conn.execute(
                    t.summaries.update()
                    .where(t.summaries.c.id == row.id)
                    .values(
                        title=s.title,
                        author=s.author,
                        text=s.text,
                        link=s.link,
                        votes=s.votes,
                        arxiv_id=s.arxiv_id,
                        bibtex_key=s.bibtex_key,
                        categories=list(s.categories),
                        content_hash=s.content_hash,
                        version=version,
                        edited_at=s.edited_at,
                        published_at=first_published(s.edited_at, row.published_at or row.first_seen_at),
                        changed_at=now,
                    )
                )
                conn.execute(
                    t.summary_versions.insert().values(
                        summary_id=row.id,
                        version=version,
                        title=s.title,
                        author=s.author,
                        text=s.text,
                        content_hash=s.content_hash,
                        edited_at=s.edited_at,
                        seen_at=now,
                    )
                )
            if plan.queue:
                all_ids = {**ids, **edited_ids}
                conn.execute(
                    t.deliveries.insert(),
                    [
                        {
                            "summary_id": all_ids[guid],
                            "channel": channel,
                            "revision": revision,
                            "state": DeliveryState.PENDING.value,
                            "attempts": 0,
                            "due_at": now,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for guid, channel, revision in plan.queue
                    ],
                )
            values: dict[str, Any] = {
                "etag": fetch.etag,
                "last_modified": fetch.last_modified,
                "fresh_until": fetch.fresh_until,
                "last_poll_at": now,
                "last_ok_at": now,
                "last_status": fetch.status,
                "last_error": "; ".join(problems)[:2000] if problems else None,
                "failures": 0,
                "next_poll_at": next_poll_at,
                "items_seen": t.sources.c.items_seen + len(plan.new),
            }
            if first:
                values["first_polled_at"] = now
            conn.execute(t.sources.update().where(t.sources.c.id == sid).values(**values))
        return ids

    # ---------------------------------------------------------------- summaries

    def summary(self, summary_id: int) -> StoredSummary:
        with self.tx() as conn:
            row = conn.execute(sa.select(t.summaries).where(t.summaries.c.id == summary_id)).first()
        if row is None:
            raise StoreError(f"no summary with id {summary_id}")
        return _stored_from_row(row)

    def summary_by_guid(self, guid: str) -> StoredSummary | None:
        with self.tx() as conn:
            row = conn.execute(sa.select(t.summaries).where(t.summaries.c.guid == guid)).first()
        return _stored_from_row(row) if row else None

    def latest_summaries(self, limit: int | None = None, *, with_text: bool = True) -> list[StoredSummary]:
        """Newest edit first. `with_text=False` leaves `text` empty: a cheap listing for feeds."""
        columns: list[Any] = [c for c in t.summaries.c if with_text or c.name != "text"]
        if not with_text:
            columns.append(sa.literal("").label("text"))
        q = sa.select(*columns).order_by(t.summaries.c.edited_at.desc(), t.summaries.c.id.desc())
        if limit:
            q = q.limit(limit)
        with self.tx() as conn:
            return [_stored_from_row(r) for r in conn.execute(q)]

    def summaries_by_ids(self, ids: Sequence[int]) -> list[StoredSummary]:
        out: list[StoredSummary] = []
        with self.tx() as conn:
            for i in range(0, len(ids), 500):
                rows = conn.execute(sa.select(t.summaries).where(t.summaries.c.id.in_(list(ids[i : i + 500]))))
                out.extend(_stored_from_row(r) for r in rows)
        return out

    def summaries_first_seen_between(self, start: datetime, end: datetime) -> list[StoredSummary]:
        """Summaries a poll found as news in [start, end) (backfilled ones excluded)."""
        q = (
            sa.select(t.summaries)
            .where(t.summaries.c.first_seen_at >= start, t.summaries.c.first_seen_at < end, t.summaries.c.backfilled.is_(False))
            .order_by(t.summaries.c.votes.desc(), t.summaries.c.edited_at.desc())
        )
        with self.tx() as conn:
            return [_stored_from_row(r) for r in conn.execute(q)]

    def versions(self, summary_id: int) -> list[tuple[int, str, datetime]]:
        with self.tx() as conn:
            rows = conn.execute(
                sa.select(t.summary_versions.c.version, t.summary_versions.c.content_hash, t.summary_versions.c.edited_at)
                .where(t.summary_versions.c.summary_id == summary_id)
                .order_by(t.summary_versions.c.version)
            ).all()
        return [(r[0], r[1], r[2]) for r in rows]

    def count_summaries(self) -> int:
        with self.tx() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t.summaries)).scalar() or 0)

    # ------------------------------------------------------------ render cache

    def cached_renders(self, ids_hashes: Mapping[int, str]) -> dict[int, tuple[str, str]]:
        """summary id → (html, text) for those whose cached render matches the current hash."""
        out: dict[int, tuple[str, str]] = {}
        ids = list(ids_hashes)
        with self.tx() as conn:
            for i in range(0, len(ids), 500):
                rows = conn.execute(
                    sa.select(t.renders.c.summary_id, t.renders.c.content_hash, t.renders.c.html, t.renders.c.text).where(
                        t.renders.c.summary_id.in_(ids[i : i + 500])
                    )
                )
                for sid, h, html, text in rows:
                    if ids_hashes.get(sid) == h:
                        out[sid] = (html, text)
        return out

    def put_renders(self, items: Sequence[tuple[int, str, str, str]], *, now: datetime) -> None:
        """Store (summary id, content hash, html, text), replacing older versions' renders."""
        if not items:
            return
        with self.tx() as conn:
            _upsert(
                conn, t.renders, ["summary_id"],
                [{"summary_id": s, "content_hash": h, "html": html, "text": text, "rendered_at": now} for s, h, html, text in items],
            )

    # ------------------------------------------------------------------ papers

    def papers(self, arxiv_ids: Sequence[str]) -> dict[str, PaperDetails | None]:
        """Cached arXiv details; None for ids arXiv said it does not know."""
        if not arxiv_ids:
            return {}
        with self.tx() as conn:
            rows = conn.execute(_SELECT_PAPERS.where(t.papers.c.arxiv_id.in_(list(arxiv_ids))))
            return dict(_paper_from_row(r) for r in rows)

    def papers_without_details(self) -> list[str]:
        """arXiv ids of stored summaries whose paper details were never fetched (arXiv failed or was off)."""
        query = (
            sa.select(t.summaries.c.arxiv_id).distinct()
            .outerjoin(t.papers, t.papers.c.arxiv_id == t.summaries.c.arxiv_id)
            .where(t.summaries.c.arxiv_id.is_not(None), t.papers.c.arxiv_id.is_(None))
            .order_by(t.summaries.c.arxiv_id)
        )
        with self.tx() as conn:
            return [r[0] for r in conn.execute(query)]

    def put_papers(self, found: Mapping[str, PaperDetails], missing: Sequence[str], *, now: datetime) -> None:
        keys = list(found) + [m for m in missing if m not in found]
        if not keys:
            return
        with self.tx() as conn:
            rows = [
                {
                    "arxiv_id": k,
                    "title": d.title,
                    "authors": list(d.authors),
                    "published": d.published,
                    "categories": list(d.categories),
                    "found": True,
                    "fetched_at": now,
                }
                for k, d in found.items()
            ] + [
                {"arxiv_id": k, "title": None, "authors": [], "published": None, "categories": [], "found": False, "fetched_at": now}
                for k in missing
                if k not in found
            ]
            _upsert(conn, t.papers, ["arxiv_id"], rows)

    # -------------------------------------------------------------- deliveries

    def delivery(self, delivery_id: int) -> Delivery:
        with self.tx() as conn:
            row = conn.execute(_DELIVERY_BY_ID, {"p_id": delivery_id}).first()
        if row is None:
            raise StoreError(f"no delivery with id {delivery_id}")
        return _delivery_from_row(row)

    def deliveries(self, *, states: Sequence[str] | None = None, channel: str | None = None, limit: int = 100) -> list[Delivery]:
        q = _SELECT_DELIVERY.order_by(t.deliveries.c.id)
        if states:
            q = q.where(t.deliveries.c.state.in_(list(states)))
        if channel:
            q = q.where(t.deliveries.c.channel == channel)
        with self.tx() as conn:
            return [_delivery_from_row(r) for r in conn.execute(q.limit(limit))]

    def stored_post(self, delivery_id: int) -> Post | None:
        with self.tx() as conn:
            data = conn.execute(sa.select(t.deliveries.c.post).where(t.deliveries.c.id == delivery_id)).scalar()
        return post_from_json(data) if data else None

    def expire_in_flight(self, *, now: datetime, dead_workers: Callable[[str], bool]) -> list[int]:
        """In-flight rows whose worker is gone become `uncertain` (never blindly retried).

        A row counts as abandoned when its lease ran out, or when its worker
        ran on this host and that process no longer exists. A reservation
        (pending) or a reconciliation (uncertain) of a worker that died is
        freed too: its lease would hold the row back otherwise.
        """
        held = (DeliveryState.PENDING.value, DeliveryState.UNCERTAIN.value)
        with self.tx() as conn:
            rows = conn.execute(
                sa.select(t.deliveries.c.id, t.deliveries.c.state, t.deliveries.c.claimed_by, t.deliveries.c.lease_until).where(
                    sa.or_(
                        t.deliveries.c.state == DeliveryState.IN_FLIGHT.value,
                        sa.and_(t.deliveries.c.state.in_(held), t.deliveries.c.lease_until >= now),
                    )
                )
            ).all()
            freed = [r.id for r in rows if r.state in held and dead_workers(r.claimed_by or "")]
            if freed:
                conn.execute(
                    t.deliveries.update()
                    .where(t.deliveries.c.id.in_(freed), t.deliveries.c.state.in_(held))
                    .values(lease_until=None)
                )
            gone = [
                r.id for r in rows
                if r.state == DeliveryState.IN_FLIGHT.value
                and ((r.lease_until is not None and r.lease_until < now) or dead_workers(r.claimed_by or ""))
            ]
            if gone:
                conn.execute(
                    t.deliveries.update()
                    .where(t.deliveries.c.id.in_(gone), t.deliveries.c.state == DeliveryState.IN_FLIGHT.value)
                    .values(state=DeliveryState.UNCERTAIN.value, updated_at=now, lease_until=None,
                            last_error="the worker stopped during the network call; reconciling")
                )
        return gone

    def reserve(self, *, now: datetime, channels: Sequence[str], worker: str, lease: timedelta) -> DeliveryClaim | None:
        """Reserve the oldest due pending delivery of the given channels, with its stored post and summary.

        The row stays pending (nothing can be on the network yet) but other
        workers leave it alone while this one renders its post; `start_sending`
        then marks it in flight. A reservation of a worker that died is freed
        by `expire_in_flight`, or when its lease runs out.
        """
        if not channels:
            return None
        with self.tx() as conn:
            did = conn.execute(_DUE, {"p_now": now, "p_channels": list(channels)}).scalar()
            if did is None:
                return None
            conn.execute(_CLAIM, {"p_id": did, "p_worker": worker, "p_lease_until": now + lease})
            row = conn.execute(_DELIVERY_BY_ID, {"p_id": did}).one()
            # With its cached plain text and paper details: rendering the post then needs no query.
            summary = conn.execute(_SUMMARY_FOR_POST, {"p_id": row.summary_id}).one()
        post = row._mapping["post"]
        return DeliveryClaim(
            _delivery_from_row(row),
            post_from_json(post) if post else None,
            _stored_from_row(summary),
            text=summary.render_text,
            papers=dict([_paper_from_row(summary)]) if summary.paper_arxiv_id is not None else {},
        )

    def start_sending(self, delivery_id: int, *, worker: str, post: Post | None, now: datetime, lease: timedelta) -> bool:
        """Mark a reserved delivery in_flight with the exact post it sends, and COMMIT.

        From this commit on the post may be on the network (a crash is
        reconciled). `post` None keeps the post fixed on an earlier attempt.
        False when the reservation was lost (it ran out and another worker took the row).
        """
        params = {"p_id": delivery_id, "p_worker": worker, "p_lease_until": now + lease, "p_now": now}
        with self.tx() as conn:
            if post is None:
                return bool(conn.execute(_START_SENDING, params).rowcount)
            return bool(conn.execute(_START_SENDING_WITH_POST, {**params, "p_post": post_to_json(post)}).rowcount)

    def unreserve(self, delivery_id: int, *, worker: str) -> None:
        """Give back a reservation (the worker stops, or the channel got paused or capped meanwhile)."""
        with self.tx() as conn:
            conn.execute(
                t.deliveries.update()
                .where(
                    t.deliveries.c.id == delivery_id,
                    t.deliveries.c.state == DeliveryState.PENDING.value,
                    t.deliveries.c.claimed_by == worker,
                )
                .values(lease_until=None)
            )

    def claim_uncertain(self, *, now: datetime, channels: Sequence[str], worker: str, lease: timedelta) -> Delivery | None:
        """Claim an uncertain delivery for reconciliation (it stays uncertain, with a lease)."""
        with self.tx() as conn:
            q = (
                sa.select(t.deliveries.c.id)
                .where(
                    t.deliveries.c.state == DeliveryState.UNCERTAIN.value,
                    t.deliveries.c.channel.in_(list(channels)),
                    t.deliveries.c.due_at <= now,
                    sa.or_(t.deliveries.c.lease_until.is_(None), t.deliveries.c.lease_until < now),
                )
                .order_by(t.deliveries.c.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            did = conn.execute(q).scalar()
            if did is None:
                return None
            conn.execute(
                t.deliveries.update().where(t.deliveries.c.id == did).values(claimed_by=worker, lease_until=now + lease)
            )
            row = conn.execute(_DELIVERY_BY_ID, {"p_id": did}).one()
        return _delivery_from_row(row)

    def _finish(self, conn: Connection, delivery_id: int, attempt: Attempt, **values: Any) -> None:
        conn.execute(
            t.deliveries.update()
            .where(t.deliveries.c.id == delivery_id)
            .values(lease_until=None, updated_at=attempt.at, **values)
        )
        conn.execute(_ATTEMPT, _attempt_row(attempt))

    def mark_sent(self, delivery_id: int, published: Published, *, now: datetime, outcome: str = "sent") -> None:
        with self.tx() as conn:
            conn.execute(_MARK_SENT, {"p_id": delivery_id, "p_now": now, "p_post_id": published.post_id, "p_post_url": published.url})
            conn.execute(_ATTEMPT, _attempt_row(Attempt(delivery_id, now, outcome, message=f"post id {published.post_id}")))

    def mark_retry(self, delivery_id: int, *, due_at: datetime, attempt: Attempt, state: str = DeliveryState.PENDING.value) -> None:
        with self.tx() as conn:
            self._finish(conn, delivery_id, attempt, state=state, due_at=due_at, last_error=f"{attempt.outcome}: {attempt.message}")

    def mark_final(self, delivery_id: int, *, state: DeliveryState, attempt: Attempt) -> None:
        with self.tx() as conn:
            self._finish(conn, delivery_id, attempt, state=state.value, last_error=f"{attempt.outcome}: {attempt.message}")

    def release(self, delivery_id: int, *, now: datetime, due_at: datetime, reason: str) -> None:
        """Give back a claim without an attempt (the channel got paused or capped meanwhile)."""
        with self.tx() as conn:
            conn.execute(
                t.deliveries.update()
                .where(t.deliveries.c.id == delivery_id)
                .values(
                    state=DeliveryState.PENDING.value,
                    attempts=sa.case((t.deliveries.c.attempts > 0, t.deliveries.c.attempts - 1), else_=0),
                    lease_until=None,
                    due_at=due_at,
                    updated_at=now,
                    last_error=reason,
                )
            )

    def attempts(self, delivery_id: int) -> list[Attempt]:
        with self.tx() as conn:
            rows = conn.execute(
                sa.select(t.attempts).where(t.attempts.c.delivery_id == delivery_id).order_by(t.attempts.c.id)
            ).all()
        return [Attempt(r.delivery_id, r.at, r.outcome, r.http_status, r.code, r.message) for r in rows]

    def operator_retry(self, delivery_id: int, *, now: datetime) -> Delivery:
        """`retry ID`: an uncertain, failed or dead delivery goes back to pending."""
        d = self.delivery(delivery_id)
        if d.state not in (DeliveryState.UNCERTAIN, DeliveryState.FAILED, DeliveryState.DEAD, DeliveryState.SKIPPED):
            raise StoreError(f"delivery {delivery_id} is {d.state.value}; only uncertain, failed, dead or skipped ones can be retried")
        with self.tx() as conn:
            self._finish(
                conn,
                delivery_id,
                Attempt(delivery_id, now, "operator", message="retry requested by the operator"),
                state=DeliveryState.PENDING.value,
                due_at=now,
                attempts=0,
            )
        return self.delivery(delivery_id)

    def operator_skip(self, delivery_id: int, *, now: datetime) -> Delivery:
        """`skip ID`: the delivery is closed without (re)publishing."""
        d = self.delivery(delivery_id)
        if d.state in (DeliveryState.SENT, DeliveryState.IN_FLIGHT):
            raise StoreError(f"delivery {delivery_id} is {d.state.value}; it cannot be skipped")
        with self.tx() as conn:
            self._finish(
                conn,
                delivery_id,
                Attempt(delivery_id, now, "operator", message="skipped by the operator"),
                state=DeliveryState.SKIPPED.value,
            )
        return self.delivery(delivery_id)

    def sent_counts(self, channel: str, *, now: datetime) -> tuple[int, int, datetime | None]:
        """(posts today, posts this month, last post time) for pacing and cost."""
        with self.tx() as conn:
            base = sa.select(sa.func.count()).select_from(t.deliveries).where(
                t.deliveries.c.channel == channel, t.deliveries.c.state == DeliveryState.SENT.value
            )
            today = conn.execute(base.where(t.deliveries.c.sent_at >= day_start(now))).scalar() or 0
            month = conn.execute(base.where(t.deliveries.c.sent_at >= month_start(now))).scalar() or 0
            last = conn.execute(
                sa.select(sa.func.max(t.deliveries.c.sent_at)).where(
                    t.deliveries.c.channel == channel, t.deliveries.c.state == DeliveryState.SENT.value
                )
            ).scalar()
        return int(today), int(month), last

    def delivery_counts(self) -> dict[str, dict[str, int]]:
        with self.tx() as conn:
            rows = conn.execute(
                sa.select(t.deliveries.c.channel, t.deliveries.c.state, sa.func.count()).group_by(
                    t.deliveries.c.channel, t.deliveries.c.state
                )
            ).all()
        out: dict[str, dict[str, int]] = {}
        for channel, state, n in rows:
            out.setdefault(channel, {})[state] = int(n)
        return out

    def next_due(self, channel: str) -> datetime | None:
        with self.tx() as conn:
            return conn.execute(
                sa.select(sa.func.min(t.deliveries.c.due_at)).where(
                    t.deliveries.c.channel == channel, t.deliveries.c.state == DeliveryState.PENDING.value
                )
            ).scalar()

    # ---------------------------------------------------------------- channels

    def paused_channels(self) -> dict[str, str]:
        with self.tx() as conn:
            rows = conn.execute(sa.select(t.channels.c.name, t.channels.c.paused_reason).where(t.channels.c.paused.is_(True)))
            return {name: reason or "" for name, reason in rows}

    def pause_channel(self, name: str, reason: str, *, now: datetime) -> None:
        with self.tx() as conn:
            updated = conn.execute(
                t.channels.update().where(t.channels.c.name == name).values(paused=True, paused_reason=reason, paused_at=now)
            ).rowcount
            if not updated:
                conn.execute(t.channels.insert().values(name=name, paused=True, paused_reason=reason, paused_at=now))

    def resume_channel(self, name: str) -> bool:
        with self.tx() as conn:
            return bool(
                conn.execute(
                    t.channels.update().where(t.channels.c.name == name, t.channels.c.paused.is_(True)).values(paused=False, paused_reason=None)
                ).rowcount
            )

    # -------------------------------------------------------------------- jobs

    def record_job(self, name: str, *, now: datetime, ok: bool, error: str | None = None, info: Mapping[str, Any] | None = None) -> None:
        values: dict[str, Any] = {"last_run_at": now, "last_error": None if ok else error}
        if ok:
            values["last_ok_at"] = now
        if info is not None:
            values["info"] = json.loads(json.dumps(info, default=str))
        with self.tx() as conn:
            if not conn.execute(t.jobs.update().where(t.jobs.c.name == name).values(**values)).rowcount:
                try:
                    with conn.begin_nested():
                        conn.execute(t.jobs.insert().values(name=name, **values))
                except IntegrityError:
                    conn.execute(t.jobs.update().where(t.jobs.c.name == name).values(**values))

    def feeds_built_since_last_change(self) -> bool:
        """Whether the last good feeds build came after every change to a summary and to paper details."""
        with self.tx() as conn:
            built = conn.execute(sa.select(t.jobs.c.last_ok_at).where(t.jobs.c.name == "feeds")).scalar()
            summaries = conn.execute(sa.select(sa.func.max(t.summaries.c.changed_at))).scalar()
            papers = conn.execute(sa.select(sa.func.max(t.papers.c.fetched_at))).scalar()
        return built is not None and all(at is None or at <= built for at in (summaries, papers))

    def jobs(self) -> dict[str, dict[str, Any]]:
        with self.tx() as conn:
            rows = conn.execute(sa.select(t.jobs)).all()
        return {r.name: dict(r._mapping) for r in rows}
