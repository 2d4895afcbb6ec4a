"""The store-backed session vault: a channel's login session kept in the database, encrypted.

The session string carries live access and refresh tokens, so it is stored
only as a Fernet token (AES-128-CBC with HMAC-SHA256, from ``cryptography``)
under a key derived from ``SECRET_KEY`` with HKDF. A row that no longer
decrypts (``SECRET_KEY`` changed) reads as no session: the channel logs in
again and overwrites it. Database errors become ``StoreError``.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bot.clock import utc_now
from bot.errors import ConfigError, StoreError
from bot.store.schema import channel_sessions as t

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

log = logging.getLogger(__name__)

_INFO = b"shortscience-bot channel session v1"


def session_cipher(secret_key: str) -> Fernet:
    """The cipher of saved sessions, from SECRET_KEY (a key of its own, not the token signer's)."""
    # cryptography loads here, when a channel first uses its session (Bluesky): not in every process
    # that builds a publisher (about 17 ms).
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if not secret_key:
        raise ConfigError("setting SECRET_KEY is required to keep a channel's login session encrypted in the database")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret_key.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(key))


class StoreSessionVault:
    """One channel's session in the ``channel_sessions`` table (a bot.channels.spec.SessionStore)."""

    def __init__(self, engine: Engine, channel: str, secret_key: str, *, now: Callable[[], datetime] = utc_now) -> None:
        self._engine = engine
        self._channel = channel
        self._cipher = session_cipher(secret_key)
        self._now = now

    def load(self) -> str | None:
        try:
            with self._engine.connect() as conn:
                data = conn.execute(sa.select(t.c.data).where(t.c.channel == self._channel)).scalar()
        except SQLAlchemyError as exc:
            raise StoreError(f"reading the {self._channel} session failed: {type(exc).__name__}") from None
        if data is None:
            return None
        from cryptography.fernet import InvalidToken

        try:
            return self._cipher.decrypt(data.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            log.warning("the saved %s session does not decrypt (SECRET_KEY changed?): logging in again", self._channel)
            return None

    def save(self, session: str) -> None:
        data = self._cipher.encrypt(session.encode("utf-8")).decode("ascii")
        values = {"data": data, "updated_at": self._now()}
        try:
            for _ in range(2):
                try:
                    with self._engine.begin() as conn:
                        done = conn.execute(sa.update(t).where(t.c.channel == self._channel).values(**values)).rowcount
                        if not done:
                            conn.execute(sa.insert(t).values(channel=self._channel, **values))
                    return
                except IntegrityError:
                    continue  # another worker inserted the row first: update it
        except SQLAlchemyError as exc:
            raise StoreError(f"saving the {self._channel} session failed: {type(exc).__name__}") from None
        raise StoreError(f"saving the {self._channel} session failed: the row kept changing")


class LazySessionVault:
    """A channel's StoreSessionVault, made on first use: a channel that never logs in never needs SECRET_KEY."""

    def __init__(self, make: Callable[[], StoreSessionVault]) -> None:
        self._make = make
        self._vault: StoreSessionVault | None = None

    def _get(self) -> StoreSessionVault:
        if self._vault is None:
            self._vault = self._make()
        return self._vault

    def load(self) -> str | None:
        return self._get().load()

    def save(self, value: str) -> None:
        self._get().save(value)
