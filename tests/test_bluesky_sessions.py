"""The store-backed session vault: encrypted in the database, on SQLite and PostgreSQL, used by the publisher."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fake_bluesky import FakeBluesky

from bot.channels.bluesky.publisher import BlueskyPublisher
from bot.channels.spec import SessionStore
from bot.errors import ConfigError
from bot.records import Post
from bot.store import make_engine, migrate
from bot.store.sessions import StoreSessionVault

KEY = "a-secret-key-of-the-deployment"
SESSION = "shortscience.test:::did:plc:abc:::eyJ.access.jwt:::eyJ.refresh.jwt:::http://127.0.0.1:1/xrpc"


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


def test_saved_session_round_trips_and_is_stored_encrypted(engine: sa.Engine) -> None:
    vault = StoreSessionVault(engine, "bluesky", KEY)
    assert isinstance(vault, SessionStore)
    assert vault.load() is None
    vault.save(SESSION)
    vault.save(SESSION + "2")  # replaced, not added

    assert StoreSessionVault(engine, "bluesky", KEY).load() == SESSION + "2"
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT channel, data FROM channel_sessions")).all()
    assert [r[0] for r in rows] == ["bluesky"]
    assert "eyJ" not in rows[0][1] and "did:plc" not in rows[0][1]


def test_a_session_under_another_secret_key_reads_as_none(engine: sa.Engine) -> None:
    StoreSessionVault(engine, "bluesky", KEY).save(SESSION)
    assert StoreSessionVault(engine, "bluesky", "another-secret-key").load() is None


def test_without_secret_key_there_is_no_vault(engine: sa.Engine) -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        StoreSessionVault(engine, "bluesky", "")


def test_a_restarted_publisher_reuses_the_database_session(engine: sa.Engine) -> None:
    def post(n: int) -> Post:
        link = f"https://www.shortscience.org/paper?bibtexKey={n}"
        return Post(channel="bluesky", summary_guid=str(n), text=f"Paper {n}\n\nSummary by A: {link}", link=link)

    with FakeBluesky() as pds:
        kw: dict[str, Any] = {"service_url": pds.url, "handle": pds.handle, "app_password": pds.password}
        BlueskyPublisher(vault=StoreSessionVault(engine, "bluesky", KEY), **kw).publish(post(1))
        BlueskyPublisher(vault=StoreSessionVault(engine, "bluesky", KEY), **kw).publish(post(2))
        assert pds.sessions_created == 1 and len(pds.records) == 2
