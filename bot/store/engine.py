"""The store's infrastructure: the engine and its pool events, migrations, upserts.

SQLAlchemy errors are translated into ``StoreError`` by ``Store.tx``; nothing here knows a domain.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

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
        revision = current_revision(conn)
        if revision == HEAD_REVISION:
            return False
        if revision is None and engine.dialect.name == "sqlite" and not sa.inspect(conn).get_table_names():
            # A new SQLite file (every first run, the quick start): the schema the migrations
            # build, made in one go and stamped, without loading Alembic and replaying them
            # (a fifth of a second). tests/test_fresh_schema.py checks that both give the same schema.
            create_head_schema(conn)
            return True
        # Only now: importing Alembic costs every command a fifth of a second.
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return True


def create_head_schema(conn: Connection) -> None:
    """The schema at HEAD_REVISION in an empty database, stamped as Alembic stamps it."""
    from bot.store.schema import metadata

    metadata.create_all(conn)
    conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    conn.exec_driver_sql("INSERT INTO alembic_version (version_num) VALUES (?)", (HEAD_REVISION,))


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
    stmt = _upsert_statement(conn.dialect.name, table, tuple(key))
    conn.execute(stmt, sorted(rows, key=lambda r: tuple(r[k] for k in key)))


#: (dialect, table, key) → its upsert statement: building one costs more CPU than running it (a render is cached
#: once per delivery on a first run)
_UPSERTS: dict[tuple[str, str, tuple[str, ...]], Any] = {}


def _upsert_statement(dialect: str, table: sa.Table, key: tuple[str, ...]) -> Any:
    found = _UPSERTS.get((dialect, table.name, key))
    if found is not None:
        return found
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(table)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(key), set_={c.name: stmt.excluded[c.name] for c in table.c if c.name not in key}
    )
    _UPSERTS[(dialect, table.name, key)] = stmt
    return stmt
