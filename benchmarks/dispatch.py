"""Dispatch benchmark (issue 7): deliveries per second with 1, 2 and 4 worker processes.

5,000 deliveries go to the X stand-in (tests/fake_x.py, its own process, keep-alive)
answering every request 20 ms after it arrived, through the real publisher (tweepy,
OAuth 1.0a), on SQLite and on PostgreSQL. The database is prepared once per engine as
`run` leaves it after a poll: summaries stored, deliveries queued, and the feeds built
(which fills the render cache); each run starts from a copy. Each worker is a process
that builds the app and opens its connections first (as a running `worker` has), then
all start together; the time is from that start to the last delivery sent. Every run
checks that each post was made exactly once.

Prints one line per run:
    db=postgres workers=4 deliveries_per_s=180.2 overhead_ms=2.1
overhead_ms is the time one worker spends per delivery beyond the API's answer time
(elapsed × workers / deliveries − latency). Targets: on PostgreSQL 4 workers >= 3x one
worker (printed as `speedup_4x=`), overhead <= 2 ms. Also printed: the workers' CPU time
per delivery (worker_cpu_ms; the database server and the stand-in use more), the machine's
cores and load: once the workers' CPU fills the cores, more workers add nothing.

The floor, measured first in the same run: the bot's X publisher alone (tweepy's request,
OAuth signing, the same transport) posting prepared texts one after another in its own
process, no database. Its time per post beyond the latency is printed as client_ms, and
each run's overhead beyond it as beyond_client_ms: the dispatcher's own cost (claims,
commits, the loop), which is what the bot can change; client_ms is tweepy's.

PostgreSQL: BOT_TEST_POSTGRES_URL (a database is created per run), or a throwaway cluster
started with .ci/start-postgres when run as root; skipped otherwise.
Usage: python benchmarks/dispatch.py [--deliveries N] [--workers 1,2,4] [--db sqlite,postgres]
                                     [--latency-ms 20] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing as mp
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from stand_ins import X_KEYS as KEYS  # noqa: E402
from stand_ins import X_ONLY_CONFIG, fake_x_command  # noqa: E402

CONFIG = X_ONLY_CONFIG + "[digest]\nenabled = false\n"


class StandIn:
    """tests/fake_x.py as its own process, answering after `latency` seconds."""

    def __init__(self, latency: float) -> None:
        command = fake_x_command(latency)
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}"

    def control(self, path: str, post: bool = False) -> Any:
        request = urllib.request.Request(
            self.url + path, data=b"{}" if post else None, method="POST" if post else "GET"
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def environment(data_dir: Path, db_url: str, api_url: str, feed: Path) -> dict[str, str]:
    return {
        "BOT_DATA_DIR": str(data_dir),
        "DATABASE_URL": db_url,
        "SHORTSCIENCE_FEED_URL": str(feed),
        "TWITTER_API_BASE_URL": api_url,
        "BOT_CONFIG": str(data_dir / "bot.toml"),
        **KEYS,
    }


def worker(env: dict[str, str], barrier: Any, results: Any, profile: bool) -> None:
    """One worker process: get ready, wait for the others, drain the outbox, report."""
    from bot.app import build_app
    from bot.channels.twitter.fitting import parse_tweet
    from bot.dispatcher import Dispatcher
    from bot.settings import load_settings

    app = build_app(load_settings(env), arxiv=False)
    app.store.ping()  # connected, as a running worker is
    app.publisher("twitter")
    app.renderer  # noqa: B018
    parse_tweet("")  # twitter-text imported, as a worker that has fitted a post has (0.3 s of regex compiling)
    profiler = cProfile.Profile() if profile else None
    barrier.wait()
    t0, cpu0 = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    report = Dispatcher(app).run_once()
    if profiler:
        profiler.disable()
    t1, cpu = time.perf_counter(), time.process_time() - cpu0
    text = ""
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        out.write("\n")
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
        text = out.getvalue()
    results.put((report.sent, t0, t1, text, cpu))
    app.close()


@contextmanager
def postgres_server() -> Iterator[str | None]:
    """An admin URL of a PostgreSQL server: the test one, a throwaway cluster, or None."""
    url = os.environ.get("BOT_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    if not (shutil.which("runuser") and os.geteuid() == 0 and list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))):
        yield None
        return
    pgdir = tempfile.mkdtemp(prefix="bot-bench-pg.")
    out = subprocess.run(
        ["bash", str(REPO / ".ci" / "start-postgres"), pgdir], capture_output=True, text=True, check=True
    ).stdout
    values = dict(part.split("=", 1) for line in out.splitlines() for part in line.removeprefix("export ").split())
    try:
        yield values["BOT_TEST_POSTGRES_URL"]
    finally:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                f"{values['PG_BIN']}/pg_ctl",
                "-D",
                f"{pgdir}/data",
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
        )
        shutil.rmtree(pgdir, ignore_errors=True)


@contextmanager
def database(kind: str, tmp: Path, pg_admin: str | None, *, template: str | None = None) -> Iterator[str]:
    """A new database (a copy of `template` when given), dropped afterwards."""
    if kind == "sqlite":
        import sqlite3

        path = tmp / f"bench-{uuid.uuid4().hex[:8]}.sqlite3"
        if template:
            with sqlite3.connect(template.split("///", 1)[1]) as src, sqlite3.connect(path) as dst:
                src.backup(dst)
        yield f"sqlite:///{path}"
        return
    import sqlalchemy as sa

    assert pg_admin is not None
    name = "bot_bench_" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(pg_admin, isolation_level="AUTOCOMMIT")
    copy = f' TEMPLATE "{template.rsplit("/", 1)[1]}"' if template else ""
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"{copy}'))
    try:
        yield pg_admin.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def prepare(db_url: str, data_dir: Path, args: argparse.Namespace, feed: Path, stand_in: StandIn) -> None:
    """What `run` does before workers post: poll (summaries and deliveries) and build the feeds (renders cached)."""
    from bot.app import build_app
    from bot.jobs import build_feeds
    from bot.pipeline import poll
    from bot.settings import load_settings

    app = build_app(load_settings(environment(data_dir, db_url, stand_in.url, feed)), arxiv=False)
    report = poll(app, backfill=args.deliveries)
    assert report.queued == args.deliveries, report.describe()
    build_feeds(app)
    app.close()


def publisher_alone(env: dict[str, str], posts: int, results: Any) -> None:
    """The floor: the bot's X publisher (tweepy, OAuth 1.0a, the same transport) posting
    prepared texts one after another, without database, rendering or dispatcher."""
    from bot.app import build_app
    from bot.records import Post
    from bot.settings import load_settings

    app = build_app(load_settings(env), arxiv=False)
    publisher = app.publisher("twitter")
    texts = [
        Post(
            channel="twitter",
            summary_guid=f"floor-{i}",
            link=f"https://example.org/{i}",
            text=f"floor {i} https://example.org/{i}",
        )
        for i in range(posts + 1)
    ]
    publisher.publish(texts.pop())  # connected, as a running worker is
    t0, cpu0 = time.perf_counter(), time.process_time()
    for post in texts:
        publisher.publish(post)
    results.put((time.perf_counter() - t0, time.process_time() - cpu0))
    app.close()


def floor_run(args: argparse.Namespace, tmp: Path, feed: Path, stand_in: StandIn, posts: int = 300) -> float:
    """The publisher's own time per post beyond the stand-in's latency (ms), in its own process."""
    data_dir = tmp / "floor"
    data_dir.mkdir(exist_ok=True)
    (data_dir / "bot.toml").write_text(CONFIG)
    env = environment(data_dir, f"sqlite:///{data_dir / 'floor.sqlite3'}", stand_in.url, feed)
    stand_in.control("/_fake/reset", post=True)
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=publisher_alone, args=(env, posts, results))
    proc.start()
    elapsed, cpu = results.get(timeout=600)
    proc.join()
    client_ms = elapsed / posts * 1000 - args.latency_ms
    print(
        f"floor: publisher alone (tweepy, no database) client_ms={client_ms:.2f} "
        f"client_cpu_ms={cpu / posts * 1000:.2f} "
        f"per post beyond the latency",
        flush=True,
    )
    return client_ms


def one_run(
    kind: str,
    workers: int,
    args: argparse.Namespace,
    tmp: Path,
    feed: Path,
    stand_in: StandIn,
    pg_admin: str | None,
    template: str,
    client_ms: float,
) -> float:
    data_dir = tmp / f"{kind}-{workers}"
    data_dir.mkdir()
    (data_dir / "bot.toml").write_text(CONFIG)
    with database(kind, tmp, pg_admin, template=template) as db_url:
        env = environment(data_dir, db_url, stand_in.url, feed)
        stand_in.control("/_fake/reset", post=True)

        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(workers)
        results = ctx.Queue()
        procs = [ctx.Process(target=worker, args=(env, barrier, results, args.profile)) for _ in range(workers)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=3600) for _ in procs]
        for p in procs:
            p.join()
        sent = sum(o[0] for o in outcomes)
        elapsed = max(o[2] for o in outcomes) - min(o[1] for o in outcomes)
        posts = stand_in.control("/_fake/posts")
        texts = [p["text"] for p in posts]
        assert sent == args.deliveries == len(texts) == len(set(texts)), (sent, len(texts), len(set(texts)))
        if args.profile:
            print(outcomes[0][3])
    per_s = sent / elapsed
    overhead = elapsed * workers / sent * 1000 - args.latency_ms
    cpu_ms = sum(o[4] for o in outcomes) / sent * 1000
    print(
        f"db={kind} workers={workers} deliveries_per_s={per_s:.1f} overhead_ms={overhead:.2f} "
        f"beyond_client_ms={overhead - client_ms:.2f} worker_cpu_ms={cpu_ms:.2f} cores={os.cpu_count()} "
        f"load={os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return per_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deliveries", type=int, default=5000)
    ap.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    ap.add_argument("--db", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="how long the stand-in takes to answer")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of the first worker of each run")
    args = ap.parse_args()
    from poll import generated_feed

    stand_in = StandIn(args.latency_ms / 1000)
    with tempfile.TemporaryDirectory() as tmp_name, postgres_server() as pg_admin:
        tmp = Path(tmp_name)
        feed = tmp / "feed.xml"
        feed.write_bytes(generated_feed(args.deliveries))
        (tmp / "bot.toml").write_text(CONFIG)
        try:
            client_ms = floor_run(args, tmp, feed, stand_in)
            for kind in args.db.split(","):
                if kind == "postgres" and pg_admin is None:
                    print("db=postgres skipped: set BOT_TEST_POSTGRES_URL or run as root with PostgreSQL installed")
                    continue
                with database(kind, tmp, pg_admin) as template:
                    t0 = time.perf_counter()
                    prepare(template, tmp, args, feed, stand_in)
                    print(
                        f"db={kind} prepared {args.deliveries} deliveries in {time.perf_counter() - t0:.0f} s "
                        "(poll + feeds build)",
                        flush=True,
                    )
                    rates = {
                        n: one_run(kind, n, args, tmp, feed, stand_in, pg_admin, template, client_ms)
                        for n in map(int, args.workers.split(","))
                    }
                if 1 in rates and 4 in rates:
                    print(f"db={kind} speedup_4x={rates[4] / rates[1]:.2f}", flush=True)
        finally:
            with suppress(Exception):
                stand_in.close()


if __name__ == "__main__":
    main()
