"""The no-op `run --once` (bot/idle.py): same rows and output as the full path, declines whenever there is work,
one GET per run, nothing rebuilt, and none of the heavy libraries loaded."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, FakeClock, make_settings
from http_util import Reply, ScriptedServer

from bot.app import build_app
from bot.feeds import MANIFEST
from bot.idle import FEEDS_MANIFEST, Prefetched, head_revision, run_once_idle
from bot.scheduler import FEEDS_UNCHANGED, run_once
from bot.settings import Settings, sample_feed_path
from bot.store import HEAD_REVISION

QUIET = {"source": {"poll_jitter_seconds": 0}, "arxiv": {"enabled": False}}


def settings_for(tmp_path: Path, feed: str, name: str = "a") -> Settings:
    env = {"SHORTSCIENCE_FEED_URL": feed, "BOT_DATA_DIR": str(tmp_path / name)}
    return make_settings(tmp_path, env, **QUIET)


def first_run(settings: Settings, clock: FakeClock) -> None:
    app = build_app(settings, arxiv=False, clock=clock)
    try:
        run_once(app, backfill=2)
    finally:
        app.close()


def dump(db: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}


def test_constants_match_what_they_stand_for() -> None:
    assert FEEDS_MANIFEST == MANIFEST
    assert head_revision() == HEAD_REVISION


def test_idle_run_writes_and_says_exactly_what_the_full_path_does(tmp_path: Path, clock: FakeClock) -> None:
    feed = tmp_path / "feed.xml"
    shutil.copy(sample_feed_path(), feed)
    full = settings_for(tmp_path, str(feed), "full")
    first_run(full, clock)
    fast_dir = tmp_path / "fast"
    shutil.copytree(tmp_path / "full", fast_dir)
    fast = settings_for(tmp_path, str(feed), "fast")
    clock.advance(minutes=20)

    said, fetched = run_once_idle(fast, clock=clock)
    app = build_app(full, arxiv=False, clock=clock)
    try:
        expected = run_once(app)
    finally:
        app.close()

    assert fetched is None
    assert said == expected.replace(str(tmp_path / "full"), str(fast_dir))
    assert f"feeds: {FEEDS_UNCHANGED}" in expected.splitlines()
    assert dump(fast_dir / "bot.sqlite3") == dump(tmp_path / "full" / "bot.sqlite3")


def test_a_304_rebuilds_no_feed_file(tmp_path: Path, clock: FakeClock) -> None:
    settings = settings_for(tmp_path, str(sample_feed_path()))
    first_run(settings, clock)
    files = {p: p.stat().st_mtime_ns for p in settings.public_dir.rglob("*") if p.is_file()}
    clock.advance(minutes=20)
    app = build_app(settings, arxiv=False, clock=clock)
    try:
        out = run_once(app)
    finally:
        app.close()
    assert "not modified" in out and f"feeds: {FEEDS_UNCHANGED}" in out.splitlines()
    assert {p: p.stat().st_mtime_ns for p in files} == files


def test_the_feeds_are_rebuilt_when_the_data_changed_after_the_last_build(tmp_path: Path, clock: FakeClock) -> None:
    # E.g. a crash between a poll and its feeds build: the next 304 run must still build them.
    settings = settings_for(tmp_path, str(sample_feed_path()))
    first_run(settings, clock)
    clock.advance(minutes=20)
    with sqlite3.connect(settings.data_dir / "bot.sqlite3") as db:
        db.execute("UPDATE jobs SET last_ok_at = '2000-01-01 00:00:00.000000' WHERE name = 'feeds'")
    assert run_once_idle(settings, clock=clock) == (None, None)
    app = build_app(settings, arxiv=False, clock=clock)
    try:
        out = run_once(app)
    finally:
        app.close()
    assert "not modified" in out and FEEDS_UNCHANGED not in out


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE deliveries SET state = 'pending', due_at = '2000-01-01 00:00:00.000000' WHERE id = 1",
        "UPDATE deliveries SET state = 'in_flight' WHERE id = 1",
        "UPDATE deliveries SET state = 'uncertain' WHERE id = 1",
        "INSERT INTO channels (name, paused, paused_reason) VALUES ('twitter', 1, 'credentials')",
        "UPDATE summaries SET changed_at = '2100-01-01 00:00:00.000000' WHERE id = 1",
        "UPDATE alembic_version SET version_num = '0001'",
        "DELETE FROM jobs WHERE name = 'feeds'",
        "manifest",
    ],
)
def test_the_fast_path_declines_whenever_there_is_something_to_do(
    tmp_path: Path, clock: FakeClock, change: str
) -> None:
    settings = settings_for(tmp_path, str(sample_feed_path()))
    first_run(settings, clock)
    clock.advance(minutes=20)
    if change == "manifest":
        (settings.public_dir / MANIFEST).unlink()
    else:
        with sqlite3.connect(settings.data_dir / "bot.sqlite3") as db:
            db.execute(change)
    assert run_once_idle(settings, clock=clock) == (None, None)


def test_the_fast_path_is_sqlite_only(tmp_path: Path, clock: FakeClock) -> None:
    settings = make_settings(tmp_path, {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert run_once_idle(settings, clock=clock) == (None, None)


def test_a_changed_feed_is_fetched_once_and_handed_to_the_full_path(tmp_path: Path, clock: FakeClock) -> None:
    body = sample_feed_path().read_bytes()
    version = [1]

    def answer(headers: dict[str, str]) -> Reply:
        if headers.get("if-none-match") == '"v1"' and version[0] == 1:
            return Reply(304, headers={"ETag": '"v1"'})
        return Reply(200, body, {"ETag": f'"v{version[0]}"', "Content-Type": "application/rss+xml"})

    with ScriptedServer(answer) as server:
        settings = settings_for(tmp_path, server.url + "/rss.xml")
        first_run(settings, clock)
        clock.advance(minutes=20)
        said, fetched = run_once_idle(settings, clock=clock)
        assert said is not None and "not modified" in said and fetched is None
        version[0] = 2
        server.requests.clear()
        said, fetched = run_once_idle(settings, clock=clock)
        assert said is None and isinstance(fetched, Prefetched) and fetched.result is not None
        app = build_app(settings, arxiv=False, clock=clock, source=fetched)
        try:
            out = run_once(app)
        finally:
            app.close()
        assert "0 new" in out and len(server.requests) == 1


def test_a_no_op_run_loads_no_database_toolkit_and_no_renderer(tmp_path: Path) -> None:
    env = {
        "BOT_DATA_DIR": str(tmp_path / "var"),
        "BOT_CONFIG": str(REPO / "config" / "bot.toml"),
        "PATH": "/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    cmd = [sys.executable, "-m", "bot", "run", "--once"]
    subprocess.run(cmd, env=env, cwd=tmp_path, check=True, capture_output=True)
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['bot', 'run', '--once']\n"
        "try:\n    runpy.run_module('bot', run_name='__main__')\nexcept SystemExit as e:\n    assert not "
        "e.code, e.code\n"
        "heavy = ['sqlalchemy', 'alembic', 'httpx', 'jinja2', 'markdown_it', 'latex2mathml', 'lxml', "
        "'feedgen', 'nh3']\n"
        "print('LOADED', [m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, check=True, capture_output=True, text=True
    ).stdout
    assert "not modified" in out and FEEDS_UNCHANGED in out
    assert "LOADED []" in out
