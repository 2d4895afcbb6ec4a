"""PostgreSQL stopped for ten seconds in the middle of a run (issue 7, reliability test 3).

A throwaway cluster of our own (the shared test server cannot be stopped), the
scheduler (`run`) and two workers against the X and Graph stand-ins: while the
database is down every process waits and retries; afterwards the scheduler
leads again, the workers carry on, and every delivery is sent exactly once.
Needs root (to run PostgreSQL as its own user) and Debian's PostgreSQL packages.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from feeds_util import items, site_feed
from procs_util import (
    REPO,
    BotProcess,
    bot_env,
    exactly_once,
    graph_posts_per_link,
    sent_count,
    stand_ins,
    wait_until,
    x_posts_per_link,
)

from bot.store import Store

OUTAGE_SECONDS = 10


@dataclass
class Cluster:
    """A PostgreSQL cluster started by .ci/start-postgres, which the test may stop and start."""

    dir: Path
    bin: Path
    port: int
    url: str

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def stop(self) -> None:
        # fast: every session is cut off, as when the server restarts or fails over.
        self._pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        # The options .ci/start-postgres starts it with.
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._pg_ctl("-l", str(self.dir / "server.log"), "-w", "-o", options, "start")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if os.geteuid() != 0 or not shutil.which("runuser"):
        pytest.skip("stopping PostgreSQL needs root (runuser -u postgres); CI runs as root")
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("PostgreSQL binaries are not installed (apt-get install postgresql)")
    pgdir = Path(f"/tmp/bot-outage-{os.getpid()}-{time.monotonic_ns()}")
    out = subprocess.run(
        ["bash", str(REPO / ".ci" / "start-postgres"), str(pgdir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    values = dict(
        part.split("=", 1) for line in out.stdout.splitlines() for part in line.removeprefix("export ").split()
    )
    c = Cluster(pgdir, Path(values["PG_BIN"]), int(values["PG_PORT"]), values["BOT_TEST_POSTGRES_URL"])
    try:
        yield c
    finally:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(c.bin / "pg_ctl"),
                "-D",
                str(pgdir / "data"),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(pgdir, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_down_for_ten_seconds_mid_run(cluster: Cluster, tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    summaries = items(100)
    feed.write_bytes(site_feed(summaries))
    links = [s.guid for s in summaries]
    x, graph = stand_ins(delay=0.1)
    # The scheduler's first poll queues all 100 summaries on both channels.
    env = bot_env(
        tmp_path,
        cluster.url,
        x=x,
        graph=graph,
        feed=feed,
        config={"dispatch": {"interval_seconds": 1}, "source": {"backfill": 100}},
    )
    procs: list[BotProcess] = []
    store: Store | None = None
    try:
        scheduler = BotProcess(env, tmp_path / "run.log", "run")
        procs.append(scheduler)
        scheduler.wait_for("scheduler running")
        store = Store.open(cluster.url, migrate_schema=False)
        wait_until(lambda: sent_count(store) > 0 if store else False, timeout=60, why=scheduler.text)
        procs += [BotProcess(env, tmp_path / f"worker-{i}.log", "worker") for i in range(2)]
        wait_until(
            lambda: store is not None and sent_count(store) >= 40,
            timeout=60,
            why=lambda: "\n".join(p.text()[-2000:] for p in procs),
        )

        cluster.stop()
        down_at = time.monotonic()
        marks = {p: len(p.text()) for p in procs}
        time.sleep(OUTAGE_SECONDS)
        assert all(p.alive() for p in procs), "a process gave up while the database was down"
        cluster.start()
        sent_before = {p: p.text()[marks[p] :].count(" sent on ") for p in procs}
        assert time.monotonic() - down_at >= OUTAGE_SECONDS

        # Every process carries on by itself; nothing is lost or done twice.
        wait_until(
            lambda: store is not None and sent_count(store) == 200,
            timeout=120,
            why=lambda: "\n".join(p.text()[-3000:] for p in procs),
        )
        assert store.delivery_counts() == {"twitter": {"sent": 100}, "facebook": {"sent": 100}}
        assert store.count_summaries() == 100
        assert exactly_once(x_posts_per_link(x), links) == []
        assert exactly_once(graph_posts_per_link(graph), links) == []
        for p in procs[1:]:
            after = p.text()[marks[p] :]
            assert "database error" in after or "cannot record" in after, after[-3000:]
            assert after.count(" sent on ") > sent_before[p], f"worker sent nothing after the outage:\n{after[-3000:]}"
        # The scheduler lost its lock with its session, stood by, and leads again.
        scheduler.wait_for("this process is now the scheduler", start=marks[scheduler], timeout=30)
        scheduler.wait_for("scheduler running", start=marks[scheduler], timeout=30)
        for p in procs:
            p.p.send_signal(signal.SIGTERM)
        assert [p.p.wait(timeout=30) for p in procs] == [0, 0, 0]
    finally:
        for p in procs:
            p.close()
        if store is not None:
            store.close()
        x.stop()
        graph.stop()


@pytest.fixture
def pg_database() -> Iterator[str]:
    from conftest import PG_URL, _pg_database

    if not PG_URL:
        pytest.skip("BOT_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL server and sets it)")
    yield from _pg_database()


@pytest.mark.postgres
@pytest.mark.parametrize("scheme", ["postgres://", "postgresql://", "postgresql+psycopg://"])
def test_every_form_of_database_url_hosts_hand_out(scheme: str, tmp_path: Path, pg_database: str) -> None:
    from procs_util import run_bot

    feed = tmp_path / "feed.xml"
    feed.write_bytes(site_feed(items(3)))
    env = bot_env(tmp_path, scheme + pg_database.split("://", 1)[1], feed=feed, config={"source": {"backfill": 1}})
    env["BOT_DRY_RUN"] = "1"
    # The scheduler's one pass (poll, feeds, dispatch: the store, its lock) and status.
    assert "dispatch: 2 sent" in run_bot(env, "run", "--once").stdout
    assert "3 summaries" in run_bot(env, "status").stdout
