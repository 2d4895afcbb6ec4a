"""`run --once` with nothing to do, answered without SQLAlchemy: the SQLite fast path of a no-op run.

Most runs of a cron'd `run --once` find the feed unchanged (304) and nothing
due. Building the app for that costs more than the work (SQLAlchemy alone
is a fifth of a second), so on SQLite this module reads the few facts that
prove there is nothing to do with the stdlib ``sqlite3``, makes the
conditional GET, and writes what a 304 poll and an empty dispatch pass write
(the source's poll times, the `poll` and `dispatch` job rows): the same rows
the full path writes, byte for byte (tests/test_idle.py compares them).

Anything else (another database, a schema not at head, a first poll, a
delivery due, in flight or uncertain, a paused channel, feeds older than the
data, a feed that changed, a failed fetch) returns the fetch result, if any,
for the full path (`bot.scheduler.run_once`), which is the only path that
decides, stores or publishes anything. It must not grow: the store's one
interface is ``bot.store.Store``; this reads four facts and writes two rows.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bot.errors import SourceError
from bot.records import POLL_LOG_DAYS, POLL_NOT_MODIFIED, FetchResult, SourceState

if TYPE_CHECKING:
    from bot.settings import Settings
    from bot.sources.fetch import Source

#: the feed builder's manifest (bot.feeds.MANIFEST; not imported: it loads lxml and feedgen)
FEEDS_MANIFEST = ".feeds-manifest.json"

_MIGRATIONS = Path(__file__).resolve().parent / "migrations" / "versions"
_REVISION = re.compile(r"^revision\s*=\s*['\"]([^'\"]+)['\"]", re.M)


def head_revision() -> str:
    """The newest migration's revision, read from the migration files (Alembic is not imported)."""
    newest = max(_MIGRATIONS.glob("[0-9]*.py"))
    found = _REVISION.search(newest.read_text(encoding="utf-8"))
    return found.group(1) if found else ""


def sqlite_path(database_url: str) -> Path | None:
    """The file of a plain `sqlite:///path` URL; None for anything else (the full path handles it)."""
    if not database_url.startswith("sqlite:///") or "?" in database_url:
        return None
    path = Path(database_url.split("///", 1)[1])
    return path if path.is_file() else None


def _stamp(value: datetime) -> str:
    """A datetime as SQLAlchemy stores UtcDateTime on SQLite: naive UTC, always with microseconds."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def idle_state(db: sqlite3.Connection, url: str, *, now: datetime) -> SourceState | None:
    """The source's state if this run has nothing to do but a conditional GET; None otherwise.

    Nothing to do: the schema is at head, the source was polled before, no
    delivery is due, reserved, in flight or uncertain, no channel is paused,
    and the last feeds build is newer than every summary and paper detail.
    """
    row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    if row is None or row[0] != head_revision():
        return None
    busy = db.execute(
        "SELECT 1 FROM deliveries WHERE state IN ('in_flight', 'uncertain') "
        "OR (state = 'pending' AND (due_at <= ? OR lease_until IS NOT NULL)) LIMIT 1",
        (_stamp(now),),
    ).fetchone()
    if busy or db.execute("SELECT 1 FROM channels WHERE paused LIMIT 1").fetchone():
        return None
    built = db.execute("SELECT last_ok_at FROM jobs WHERE name = 'feeds'").fetchone()
    changed = db.execute(
        "SELECT max(t) FROM (SELECT max(changed_at) AS t FROM summaries UNION ALL SELECT max(fetched_at) FROM papers)"
    ).fetchone()
    if built is None or built[0] is None or (changed[0] is not None and changed[0] > built[0]):
        return None
    source = db.execute(
        "SELECT etag, last_modified, first_polled_at, failures, items_seen FROM sources WHERE url = ?", (url,)
    ).fetchone()
    if source is None or source[2] is None:
        return None
    return SourceState(
        url=url,
        etag=source[0],
        last_modified=source[1],
        first_polled_at=_parse(source[2]),
        failures=source[3],
        items_seen=source[4],
    )


def record_idle_run(
    db: sqlite3.Connection,
    url: str,
    *,
    now: datetime,
    fetch: FetchResult,
    next_poll_at: datetime,
    jobs: dict[str, tuple[datetime, str]],
) -> None:
    """What the full path writes for a 304 and an empty dispatch pass: Store.record_not_modified and record_job."""
    db.execute("BEGIN IMMEDIATE")  # as the store's transactions: the write lock up front
    try:
        db.execute(
            "UPDATE sources SET last_poll_at = ?, last_ok_at = ?, last_status = ?, last_error = NULL, failures = 0, "
            "fresh_until = ?, next_poll_at = ? WHERE url = ?",
            (
                _stamp(now),
                _stamp(now),
                fetch.status,
                fetch.fresh_until and _stamp(fetch.fresh_until),
                _stamp(next_poll_at),
                url,
            ),
        )
        # The poll log the charts read: one row per poll, pruned as it is written (Store.log_poll).
        db.execute("INSERT INTO poll_log (source, at, result) VALUES (?, ?, ?)", (url, _stamp(now), POLL_NOT_MODIFIED))
        db.execute("DELETE FROM poll_log WHERE at < ?", (_stamp(now - timedelta(days=POLL_LOG_DAYS)),))
        for name, (at, result) in jobs.items():
            db.execute(
                "INSERT INTO jobs (name, last_run_at, last_ok_at, last_error, info) VALUES (?, ?, ?, NULL, ?) "
                "ON CONFLICT (name) DO UPDATE SET last_run_at = excluded.last_run_at, "
                "last_ok_at = excluded.last_ok_at, last_error = NULL, info = excluded.info",
                (name, _stamp(at), _stamp(at), json.dumps({"result": result})),
            )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@dataclass
class Prefetched:
    """A Source whose first fetch returns what the fast path already fetched (one GET per run, not two)."""

    source: Source
    result: FetchResult | None = None
    error: SourceError | None = None

    @property
    def url(self) -> str:
        return self.source.url

    def fetch(self, state: SourceState, *, now: datetime) -> FetchResult:
        result, error = self.result, self.error
        self.result = self.error = None
        if error is not None:
            raise error
        return result if result is not None else self.source.fetch(state, now=now)

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if callable(close):
            close()


def run_once_idle(settings: Settings, *, clock: Callable[[], datetime]) -> tuple[str | None, Prefetched | None]:
    """`run --once` on SQLite when the feed answers 304 and nothing is due: its output lines, or (None, what was
    fetched).

    None tells the caller to take the full path, handing it the fetch already
    made (a changed feed, an error) so the server sees one request per run.
    """
    path = sqlite_path(settings.database_url)
    if path is None:
        return None, None
    from filelock import FileLock, Timeout

    lock = FileLock(str(path) + ".scheduler.lock")  # the scheduler's own lock (bot.scheduler.scheduler_lock)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None, None  # the full path says who holds it
    try:
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            return _poll_if_idle(db, settings, clock)
        finally:
            db.close()
    finally:
        lock.release()


def _poll_if_idle(
    db: sqlite3.Connection, settings: Settings, clock: Callable[[], datetime]
) -> tuple[str | None, Prefetched | None]:
    from bot.decide import next_poll_time
    from bot.dispatch_report import DispatchReport
    from bot.records import PollReport
    from bot.scheduler import FEEDS_UNCHANGED, where_things_go
    from bot.sources.fetch import make_source

    url = settings.feed_url
    now = clock()
    try:
        state = idle_state(db, url, now=now)
    except sqlite3.Error:
        return None, None  # a schema this module does not know: the full path migrates or reports it
    if state is None or not (settings.public_dir / FEEDS_MANIFEST).is_file():
        return None, None
    s = settings.source
    source = make_source(
        url,
        timeout=s.timeout_seconds,
        max_bytes=s.max_bytes,
        user_agent=s.user_agent,
        deadline=s.download_deadline_seconds,
    )
    try:
        fetch = source.fetch(state, now=now)
    except SourceError as exc:
        return None, Prefetched(source, error=exc)
    if fetch.body is not None:
        return None, Prefetched(source, result=fetch)
    Prefetched(source).close()
    next_poll_at = next_poll_time(
        clock(),
        interval=timedelta(minutes=s.poll_interval_minutes),
        jitter=timedelta(seconds=s.poll_jitter_seconds),
        fresh_until=fetch.fresh_until,
    )
    poll, dispatch = PollReport(source=url, status=fetch.status), DispatchReport()
    record_idle_run(
        db,
        url,
        now=now,
        fetch=fetch,
        next_poll_at=next_poll_at,
        jobs={"poll": (clock(), str(poll)), "dispatch": (clock(), str(dispatch))},
    )
    lines = [
        poll.describe(),
        f"feeds: {FEEDS_UNCHANGED}",
        f"dispatch: {dispatch.summary()}",
        *where_things_go(settings),
    ]
    return "\n".join(lines), None
