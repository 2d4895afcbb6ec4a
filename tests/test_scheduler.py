"""The scheduler as operators run it: clean SIGTERM, one scheduler per database, PostgreSQL failover."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from env_util import clean_environ

REPO = Path(__file__).resolve().parent.parent


def base_env(tmp_path: Path, db_url: str) -> dict[str, str]:
    env = clean_environ()
    env.update(BOT_DATA_DIR=str(tmp_path / "var"), DATABASE_URL=db_url, BOT_DRY_RUN="1")
    return env


class Proc:
    """A `python -m bot …` process whose log is a file we can wait on."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log_path = log
        self.log = log.open("w")
        self.p = subprocess.Popen(
            [sys.executable, "-m", "bot", *args], env=env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT
        )

    def text(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert self.p.poll() is None or needle in self.text(), f"exited {self.p.returncode}:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {needle!r} within {timeout} s:\n{self.text()}"
            time.sleep(0.1)

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.log.close()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.close()


@pytest.mark.slow
def test_sigterm_exits_cleanly_and_a_second_sqlite_scheduler_is_refused(tmp_path: Path, procs: list[Proc]) -> None:
    env = base_env(tmp_path, f"sqlite:///{tmp_path / 'bot.sqlite3'}")
    first = Proc(env, tmp_path / "first.log", "run")
    procs.append(first)
    first.wait_for("scheduler running")
    first.wait_for("poll ")  # the first poll ran (the sample feed)
    second = subprocess.run(
        [sys.executable, "-m", "bot", "run"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert second.returncode != 0
    assert "another scheduler is already running" in second.stderr
    t0 = time.monotonic()
    first.p.send_signal(signal.SIGTERM)
    assert first.p.wait(timeout=25) == 0
    assert time.monotonic() - t0 < 25
    assert "finishing the work in hand" in first.text() and "scheduler stopped" in first.text()


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_standby_takes_over_when_the_leader_dies(tmp_path: Path, procs: list[Proc]) -> None:
    from conftest import PG_URL, _pg_database

    if not PG_URL:
        pytest.skip("BOT_TEST_POSTGRES_URL is not set")
    gen = _pg_database()
    url = next(gen)
    try:
        env = base_env(tmp_path, url)
        leader = Proc(env, tmp_path / "leader.log", "run")
        procs.append(leader)
        leader.wait_for("this process is now the scheduler")
        standby = Proc(env, tmp_path / "standby.log", "run")
        procs.append(standby)
        standby.wait_for("standing by")
        assert "this process is now the scheduler" not in standby.text()
        leader.p.send_signal(signal.SIGKILL)
        leader.p.wait()
        standby.wait_for("this process is now the scheduler", timeout=30)
        standby.wait_for("scheduler running")
        standby.p.send_signal(signal.SIGTERM)
        assert standby.p.wait(timeout=25) == 0
    finally:
        for p in procs:
            p.close()
        try:
            next(gen)
        except StopIteration:
            pass
