"""Shared test fixtures: settings in a temp dir, a fixed clock, databases (SQLite, and PostgreSQL when available)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from app_util import MakeApp

from bot.settings import Settings, load_settings, with_overrides

REPO = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("BOT_TEST_POSTGRES_URL", "")


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> datetime:
        self.now += timedelta(**kw)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _pg_database() -> Iterator[str]:
    import sqlalchemy as sa

    name = "bot_test_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


DB_PARAMS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=DB_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: SQLite always, PostgreSQL when BOT_TEST_POSTGRES_URL is set."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bot.sqlite3'}"
        return
    if not PG_URL:
        pytest.skip("BOT_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL server and sets it)")
    yield from _pg_database()


#: The core tests count deliveries on the two channels they were written for (X and Facebook);
#: the newer channels have tests of their own, which turn them on (`enabled = true`).
NEWER_CHANNELS_OFF: dict[str, dict[str, Any]] = {
    "channels.mastodon": {"enabled": False},
    "channels.bluesky": {"enabled": False},
}


def make_settings(tmp_path: Path, env: dict[str, str] | None = None, **sections: dict[str, Any]) -> Settings:
    environ = {"BOT_DATA_DIR": str(tmp_path / "var"), "BOT_CONFIG": str(REPO / "config" / "bot.toml")}
    environ.update(env or {})
    settings = load_settings(environ)
    merged = {section: dict(values) for section, values in NEWER_CHANNELS_OFF.items()}
    for section, values in sections.items():
        merged.setdefault(section, {}).update(values)
    for section, values in merged.items():
        settings = with_overrides(settings, section, **values)
    return settings


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path, {"DATABASE_URL": db_url})


@pytest.fixture
def make_app(settings: Settings, clock: FakeClock) -> Iterator[MakeApp]:
    """Build apps on the test database with a memory source; closes them afterwards."""
    from bot.app import App, build_app
    from bot.sources.memory import MemorySource

    apps: list[App] = []

    def factory(body: bytes = b"", *, settings: Settings = settings, **overrides: Any) -> tuple[App, MemorySource]:
        source = MemorySource(body)
        overrides.setdefault("arxiv", False)
        app = build_app(settings, source=source, clock=clock, **overrides)
        apps.append(app)
        return app, source

    yield factory
    for app in apps:
        app.close()
