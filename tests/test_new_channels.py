"""Mastodon and Bluesky as registered channels (issue 15): `check`, `status`, `preview`, caps and pacing,
the Bluesky session kept in the database by the app, and the instance limit reaching rendering.

The real Mastodon.py and atproto clients talk to the local stand-ins
(tests/fake_mastodon.py, tests/fake_bluesky.py) through the channels'
environment variables, wired by the app exactly as a deployment is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import FakeClock, make_settings
from fake_bluesky import FakeBluesky
from fake_mastodon import FakeMastodon, mastodon_length
from feeds_util import items, site_feed

from bot.app import build_app
from bot.channels.fake import FakePublisher
from bot.dispatcher import Dispatcher
from bot.errors import ConfigError
from bot.pipeline import poll
from bot.records import Summary
from bot.settings import Settings, sample_feed_path, with_overrides
from bot.status import render_preview, render_status, run_check

TOKEN = "mastodon-token-0x51"
SECRET_KEY = "a-secret-key-for-sessions"
OTHERS_OFF = {
    "channels.twitter": {"enabled": False},
    "channels.facebook": {"enabled": False},
    "channels.mastodon": {"enabled": True},
    "channels.bluesky": {"enabled": True},
}


@pytest.fixture
def networks() -> Iterator[tuple[FakeMastodon, FakeBluesky]]:
    with FakeMastodon(token=TOKEN, max_characters=200) as mastodon, FakeBluesky() as pds:
        yield mastodon, pds


def live_settings(tmp_path: Path, db_url: str, mastodon: FakeMastodon, pds: FakeBluesky) -> Settings:
    env = {
        "DATABASE_URL": db_url,
        "SECRET_KEY": SECRET_KEY,
        "MASTODON_API_BASE_URL": mastodon.url,
        "MASTODON_ACCESS_TOKEN": TOKEN,
        "BLUESKY_HANDLE": pds.handle,
        "BLUESKY_APP_PASSWORD": pds.password,
        "BLUESKY_SERVICE_URL": pds.url,
    }
    return make_settings(tmp_path, env, **OTHERS_OFF)


def test_check_names_the_accounts_and_the_bluesky_session_is_kept_in_the_database(
    tmp_path: Path, db_url: str, networks: tuple[FakeMastodon, FakeBluesky], clock: FakeClock
) -> None:
    mastodon, pds = networks
    settings = live_settings(tmp_path, db_url, mastodon, pds)
    for _ in range(2):  # two processes: the second takes up the first one's saved session
        app = build_app(settings, arxiv=False, clock=clock)
        try:
            ok, lines = run_check(app)
        finally:
            app.close()
        assert ok, lines
        assert "mastodon: ok: @shortscience" in lines
        assert "bluesky: ok: ShortScience (@shortscience.test)" in lines
    assert mastodon.requests_to("GET", "/api/v1/accounts/verify_credentials")
    assert pds.sessions_created == 1
    # Kept encrypted: no token of the session appears in the row.
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT channel, data FROM channel_sessions")).all()
    finally:
        engine.dispose()
    assert [r[0] for r in rows] == ["bluesky"]
    tokens = [pair[key] for pair in pds.issued for key in ("accessJwt", "refreshJwt")]
    assert tokens and not any(t in rows[0][1] for t in tokens)


def test_a_live_instance_limit_is_what_the_status_is_fitted_to(
    tmp_path: Path, db_url: str, networks: tuple[FakeMastodon, FakeBluesky], clock: FakeClock
) -> None:
    mastodon, pds = networks  # the instance allows 200 characters, not Mastodon's default 500
    app = build_app(live_settings(tmp_path, db_url, mastodon, pds), arxiv=False, clock=clock)
    try:
        assert app.post_limit("mastodon") == 200
        assert app.post_limit("bluesky") is None
        long = Summary(
            guid="g",
            title="A title",
            author="a",
            text="Words and more words. " * 80,
            link="https://www.shortscience.org/paper?bibtexKey=x#a",
            edited_at=clock(),
        )
        live = app.renderer.post("mastodon", long, limit=app.post_limit("mastodon"))
        assert 150 < mastodon_length(live.text) <= 200
        assert mastodon_length(app.renderer.post("mastodon", long).text) > 200  # dry-run and preview: 500
    finally:
        app.close()


def test_status_lists_them_with_what_they_need(tmp_path: Path, db_url: str, clock: FakeClock) -> None:
    app = build_app(make_settings(tmp_path, {"DATABASE_URL": db_url}, **OTHERS_OFF), arxiv=False, clock=clock)
    try:
        out = render_status(app)
    finally:
        app.close()
    assert "  mastodon: dry-run (no credentials: MASTODON_API_BASE_URL, MASTODON_ACCESS_TOKEN unset)" in out
    assert "  bluesky: dry-run (no credentials: BLUESKY_HANDLE, BLUESKY_APP_PASSWORD unset)" in out


def test_preview_shows_each_rendering_with_its_measure(tmp_path: Path, db_url: str, clock: FakeClock) -> None:
    app = build_app(make_settings(tmp_path, {"DATABASE_URL": db_url}, **OTHERS_OFF), arxiv=False, clock=clock)
    try:
        out = render_preview(app, guid=None, feed=str(sample_feed_path()), limit=2)
    finally:
        app.close()
    headers = [line for line in out.splitlines() if line.startswith("--- ")]
    assert [h.split(" (")[0] for h in headers] == ["--- mastodon", "--- bluesky"] * 2
    assert all(h.endswith("/500 characters)") for h in headers[::2]), headers
    assert all("/300 graphemes, " in h and h.endswith("/3000 bytes)") for h in headers[1::2]), headers


@pytest.mark.parametrize("channel", ["mastodon", "bluesky"])
def test_daily_cap_and_pacing_hold_for_the_new_channels(
    channel: str, make_app: Any, settings: Settings, clock: FakeClock
) -> None:
    settings = with_overrides(settings, f"channels.{channel}", enabled=True, daily_cap=2, min_interval_minutes=30)
    pubs = {name: FakePublisher(name) for name in ("twitter", "facebook", "mastodon", "bluesky")}
    app, _ = make_app(site_feed(items(5)), settings=settings, publishers=pubs)
    poll(app, backfill=5)
    r = Dispatcher(app).run_once()
    assert len(pubs[channel].posts) == 1 and len(pubs["twitter"].posts) == 5
    assert channel in r.waiting
    clock.advance(minutes=30)
    Dispatcher(app).run_once()
    clock.advance(minutes=30)
    r = Dispatcher(app).run_once()
    assert len(pubs[channel].posts) == 2 and "daily cap of 2 reached" in r.waiting[channel]
    clock.advance(hours=24)
    Dispatcher(app).run_once()
    assert len(pubs[channel].posts) == 3  # nothing dropped: paced again the next day


def test_a_live_bluesky_channel_without_secret_key_stops_before_any_login(
    tmp_path: Path, db_url: str, networks: tuple[FakeMastodon, FakeBluesky], clock: FakeClock
) -> None:
    mastodon, pds = networks
    settings = live_settings(tmp_path, db_url, mastodon, pds)
    settings = dataclasses.replace(settings, env=dataclasses.replace(settings.env, secret_key=""))
    app = build_app(settings, arxiv=False, clock=clock)
    try:
        with pytest.raises(ConfigError, match="SECRET_KEY is required for a live Bluesky channel"):
            app.publisher("bluesky")
        assert app.publisher("mastodon").live  # a channel that keeps no session does not need it
    finally:
        app.close()
    assert pds.sessions_created == 0
