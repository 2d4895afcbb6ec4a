"""The scheduler (`run`) and the worker (`worker`): when jobs run, and clean shutdown.

Exactly one scheduler runs against a database (a file lock beside an SQLite
database, a PostgreSQL advisory lock otherwise; a second PostgreSQL
scheduler waits as a hot standby). Any number of workers may drain the outbox.
SIGTERM/SIGINT finish the delivery in hand and exit 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from bot.errors import BotError, LockError, SourceError, StoreError

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from bot.app import App
    from bot.dispatcher import Dispatcher
    from bot.settings import Settings

log = logging.getLogger(__name__)

#: key of the PostgreSQL advisory lock that elects the scheduler
SCHEDULER_LOCK_KEY = 727_002

#: what `run --once` says when it leaves the feeds as they are
FEEDS_UNCHANGED = "nothing changed since the last build, nothing rebuilt"


@contextmanager
# long: both locks (a file on SQLite, an advisory lock on PostgreSQL) with their stand-by loop
def scheduler_lock(
    app: App,
    stop: threading.Event,
    *,
    wait: bool = True,
    standby: Callable[[], None] | None = None,
    standby_poll: float = 5.0,
) -> Iterator[Callable[[], bool]]:
    """Hold the one-scheduler lock while the block runs; yields a 'still leader?' check.

    On PostgreSQL a process that does not get the lock stands by (`wait`),
    calling `standby` (a dispatch pass) between tries, and takes over when the
    leader's session ends. SQLite has no standby: a second scheduler exits.
    """
    url = app.settings.database_url
    if url.startswith("sqlite"):
        from filelock import FileLock, Timeout

        db_path = Path(url.split("///", 1)[-1])
        lock = FileLock(str(db_path) + ".scheduler.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise LockError(
                f"another scheduler is already running against {db_path} (lock {lock.lock_file}); "
                "run one `run` per database and use `worker` for more throughput"
            ) from None
        try:
            yield lambda: True
        finally:
            lock.release()
        return

    import sqlalchemy as sa

    engine = app.store.engine
    conn = None
    announced = False
    while not stop.is_set():
        try:
            conn = engine.connect()
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": SCHEDULER_LOCK_KEY}).scalar()
            conn.commit()
            if got:
                break
            conn.close()
            conn = None
            if not wait:
                raise LockError("another scheduler is running against this database; `run --once` does not wait for it")
            if not announced:
                log.info("another scheduler holds the lock: standing by, draining the outbox meanwhile")
                announced = True
        except LockError:
            raise
        except Exception as exc:  # the database may be restarting: keep standing by
            log.warning("scheduler lock: %s; retrying", str(exc).splitlines()[0])
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass
                conn = None
        if standby is not None:
            try:
                standby()
            except BotError as exc:
                log.warning("standby dispatch: %s", exc)
        stop.wait(standby_poll)
    if conn is None:
        yield lambda: False
        return
    log.info("this process is now the scheduler")

    def still_leader() -> bool:
        try:
            conn.execute(sa.text("SELECT 1")).scalar()
            conn.commit()
            return True
        except Exception:
            return False  # the session and its lock are gone: another may lead now

    try:
        yield still_leader
    finally:
        try:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEDULER_LOCK_KEY})
            conn.close()
        except Exception:
            pass


def _record(app: App, name: str, fn: Callable[[], Any]) -> Any:
    """Run one job and remember how it went (for status and /healthz)."""
    try:
        result = fn()
    except BotError as exc:
        try:
            app.store.record_job(name, now=app.clock(), ok=False, error=str(exc))
        except StoreError:
            pass
        raise
    app.store.record_job(name, now=app.clock(), ok=True, info={"result": str(result)})
    return result


def poll_job(
    app: App,
    *,
    force: bool = False,
    backfill: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    build: bool = True,
) -> str:
    """One poll; with `build`, the feeds are rebuilt when it found something new or edited."""
    from bot.pipeline import poll

    report = _record(app, "poll", lambda: poll(app, force=force, backfill=backfill, progress=progress))
    if build and (report.new or report.edited):
        return f"{report.describe()}\nfeeds: {feeds_job(app)}"
    return str(report.describe())


def dispatch_job(app: App, stop: threading.Event | None = None) -> str:
    from bot.dispatcher import Dispatcher

    report = _record(app, "dispatch", lambda: Dispatcher(app, stop=stop).run_once())
    lines = [f"dispatch: {report.summary()}"]
    lines += [f"  {channel}: {text[:100]}" for channel, _guid, text in report.published]
    return "\n".join(lines)


def feeds_job(app: App) -> str:
    from bot.jobs import build_feeds

    return str(_record(app, "feeds", lambda: build_feeds(app)))


class _SchedulerStopping(threading.Event):
    """Set once the scheduler is shutting down, so a long send finishes the message in hand and returns."""

    def __init__(self, scheduler: BaseScheduler) -> None:
        super().__init__()
        self._scheduler = scheduler

    def is_set(self) -> bool:
        from apscheduler.schedulers.base import STATE_STOPPED

        return super().is_set() or self._scheduler.state == STATE_STOPPED


def digest_job(app: App, stop: threading.Event | None = None) -> str:
    """The scheduled run: `digest send` for the period that just ended, recorded for `status`."""
    from bot.digest.sending import send_digest

    try:
        result = send_digest(app, stop=stop)
    except BotError as exc:
        app.store.record_job("digest", now=app.clock(), ok=False, error=str(exc))
        raise
    app.store.record_job("digest", now=app.clock(), ok=True, info={"result": result})
    return result


def add_digest_job(
    app: App,
    scheduler: BaseScheduler,
    guarded: Callable[[str, Callable[[], Any]], Callable[[], None]],
    common: dict[str, Any],
) -> None:
    """The weekly digest and a retry pass every minute, on `run`'s scheduler.

    A scheduler that was down at the scheduled time runs the digest once at
    start-up (one issue covering everything since the last), not once per
    missed week; the cron trigger's grace and coalescing do the same for a
    busy scheduler.
    """
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    from bot.decide import digest_catch_up
    from bot.digest.issues import _schedule
    from bot.digest.sending import drain_digest_sends

    d = app.settings.digest
    schedule = _schedule(app)
    stop = _SchedulerStopping(scheduler)
    now = app.clock()
    last = app.store.last_digest()
    catch_up = digest_catch_up(now, last.period_end if last else None, schedule)
    first: dict[str, Any] = {"next_run_time": now} if catch_up else {}
    if catch_up:
        log.info(
            "a scheduled digest was missed (last issue: %s): sending it now",
            f"#{last.issue} up to {last.period_end:%Y-%m-%d %H:%M} UTC" if last else "none yet",
        )
    scheduler.add_job(
        guarded("digest", lambda: digest_job(app, stop)),
        CronTrigger(day_of_week=d.day_of_week, hour=schedule.hour, minute=schedule.minute, timezone=schedule.tz),
        id="digest",
        misfire_grace_time=6 * 24 * 3600,
        **common,
        **first,
    )
    scheduler.add_job(
        guarded("digest-sends", lambda: f"digest sends: {drain_digest_sends(app, stop)} sent"),
        IntervalTrigger(minutes=1),
        id="digest-sends",
        misfire_grace_time=120,
        **common,
    )
    log.info(
        "digest: every %s at %s %s; next at %s UTC",
        d.day_of_week,
        d.time,
        d.timezone,
        f"{schedule.following(now):%Y-%m-%d %H:%M}",
    )


def run_once(app: App, *, backfill: int | None = None, progress: Callable[[int, int], None] | None = None) -> str:
    """`run --once`: one poll, one dispatch pass, one feeds build; then say where things went."""
    lines = []
    failed: BotError | None = None
    with scheduler_lock(app, threading.Event(), wait=False):
        try:
            lines.append(poll_job(app, force=True, backfill=backfill, progress=progress, build=False))
        except SourceError as exc:
            failed = exc
            lines.append(f"poll failed: {exc}")
        # Posts first, feeds after: the dispatcher renders each summary (HTML and text, into the
        # render cache) while the previous post is on the network, so the build that follows
        # finds them rendered instead of rendering them all while the network waits.
        dispatched = dispatch_job(app)
        lines.append("feeds: " + (FEEDS_UNCHANGED if feeds_current(app) else feeds_job(app)))
        lines.append(dispatched)
    lines.extend(where_things_went(app))
    if failed is not None:
        for line in lines:
            log.info("%s", line)
        raise failed
    return "\n".join(lines)


def feeds_current(app: App) -> bool:
    """Whether the feed files reflect the database: built since the last change to a summary or paper detail.

    A poll that changed nothing then rebuilds nothing (after changing `feeds.*` settings, `feeds build`).
    """
    from bot.idle import FEEDS_MANIFEST

    return (app.settings.public_dir / FEEDS_MANIFEST).is_file() and app.store.feeds_built_since_last_change()


def where_things_went(app: App) -> list[str]:
    return where_things_go(app.settings)


def where_things_go(settings: Settings) -> list[str]:
    """Where each enabled channel's posts and the feeds go, one line each."""
    from bot.channels import channel_mode, enabled_channels

    out = []
    for channel in enabled_channels(settings):
        live, why = channel_mode(settings, channel)
        target = f"{settings.outbox_dir / (channel + '.jsonl')}" if not live else "the network"
        out.append(f"{channel}: {why} → {target}")
    out.append(f"feeds: {settings.public_dir}/feed.rss, feed.atom, feed.json")
    return out


def _install_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: finishing the work in hand, then exiting", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_scheduler(app: App, *, stop: threading.Event | None = None, standby_poll: float = 5.0) -> None:
    """`run`: the scheduler, until SIGTERM/SIGINT.

    On PostgreSQL, losing the lock (the database connection dropped) sends this
    process back to standby instead of exiting, so some process always leads.
    """
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        _install_signals(stop)
    from bot.dispatcher import Dispatcher

    dispatcher = Dispatcher(app, stop=stop)

    def standby() -> None:
        drain_pass(app, dispatcher, stop)

    while not stop.is_set():
        with scheduler_lock(app, stop, standby=standby, standby_poll=standby_poll) as still_leader:
            if stop.is_set():
                return
            _lead(app, stop, still_leader)
        if not stop.is_set():
            log.warning("no longer the scheduler: standing by")


# long: the scheduler's job table, one add_job per job, read best as one list
def _lead(app: App, stop: threading.Event, still_leader: Callable[[], bool]) -> None:
    """Run the jobs while this process holds the lock; return on stop or when the lock is lost."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    settings = app.settings
    scheduler = BackgroundScheduler(timezone="UTC")
    poll_every = settings.source.poll_interval_minutes * 60
    # Set on shutdown or when the lock is lost: a dispatch pass in hand stops after its
    # delivery instead of draining the whole outbox before this process can stand by.
    stepping_down = threading.Event()

    def guarded(name: str, fn: Callable[[], Any]) -> Callable[[], None]:
        def job() -> None:
            if stop.is_set() or stepping_down.is_set():
                return
            try:
                result = fn()
                log.info("%s", result)
            except BotError as exc:
                log.error("%s job failed: %s", name, exc)
            except Exception:
                log.exception("%s job crashed", name)

        # APScheduler names a job after its function ("Added job ..." and every run's log line).
        job.__name__ = job.__qualname__ = name
        return job

    # Explicit misfire/coalesce/max_instances: the defaults skip a run that is 1 s late.
    common: dict[str, Any] = {"coalesce": True, "max_instances": 1}
    # Checked every minute; the source's stored next-poll time (interval, jitter,
    # backoff, Retry-After, Cache-Control) decides whether a poll is due.
    scheduler.add_job(
        guarded("poll", lambda: poll_job(app)),
        IntervalTrigger(minutes=1),
        id="poll",
        misfire_grace_time=poll_every,
        next_run_time=app.clock(),
        **common,
    )
    scheduler.add_job(
        guarded("dispatch", lambda: dispatch_job(app, stepping_down)),
        IntervalTrigger(seconds=settings.dispatch.interval_seconds),
        id="dispatch",
        misfire_grace_time=max(30, settings.dispatch.interval_seconds * 3),
        **common,
    )
    if settings.digest.enabled:
        add_digest_job(app, scheduler, guarded, common)
    scheduler.start()
    log.info(
        "scheduler running: poll every %d min (jitter %d s), dispatch every %d s",
        settings.source.poll_interval_minutes,
        settings.source.poll_jitter_seconds,
        settings.dispatch.interval_seconds,
    )
    try:
        while not stop.wait(5):
            if not still_leader():
                log.error("lost the scheduler lock (database connection gone): stopping this scheduler")
                break
    finally:
        stepping_down.set()
        # wait=True: the job in hand finishes (dispatch checks `stepping_down` between deliveries).
        scheduler.shutdown(wait=True)
        log.info("scheduler stopped")


def drain_pass(app: App, dispatcher: Dispatcher, stop: threading.Event) -> None:
    """One pass over what is due: deliveries, then the sends of digest issues already built.

    What `worker` repeats and what a standby `run` does between tries for the
    lock. A lost database, or a mail transport that refuses us, is logged and
    tried again on the next pass; neither stops the other half.
    """
    from bot.digest.sending import drain_digest_sends

    try:
        report = dispatcher.run_once()
        if report.sent or report.failed or report.reconciled:
            log.info("dispatch: %s", report.summary())
    except StoreError as exc:
        log.error("dispatch: %s; trying again on the next pass", exc)
    if stop.is_set():
        return
    try:
        sent = drain_digest_sends(app, stop)
        if sent:
            log.info("digest sends: %d sent", sent)
    except BotError as exc:
        log.error("digest sends: %s; trying again on the next pass", exc)


def run_worker(app: App, *, stop: threading.Event | None = None) -> None:
    """`worker`: drain due deliveries and digest sends until SIGTERM/SIGINT; run any number of them."""
    from bot.dispatcher import Dispatcher

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        _install_signals(stop)
    log.info("worker started")
    dispatcher = Dispatcher(app, stop=stop)
    while not stop.is_set():
        drain_pass(app, dispatcher, stop)
        stop.wait(app.settings.dispatch.interval_seconds)
    log.info("worker stopped")
