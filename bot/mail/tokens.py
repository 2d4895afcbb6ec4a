"""Signed subscription tokens (confirm, unsubscribe, preferences) and the links that carry them.

A token is the subscriber's address signed with SECRET_KEY and a salt per
purpose, so a token made for one purpose never works for another. Confirm
tokens expire (digest.confirm_ttl_hours); unsubscribe tokens never do: the link
in an old digest must still work. Time is passed in (``now``) for tests.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner
from itsdangerous.encoding import base64_decode, base64_encode, int_to_bytes, want_bytes
from itsdangerous.signer import SigningAlgorithm

from bot.clock import utc_now
from bot.errors import ConfigError, InvalidToken
from bot.records import Subscriber
from bot.settings import Settings

Purpose = Literal["confirm", "unsubscribe", "preferences"]
PURPOSES: tuple[Purpose, ...] = ("confirm", "unsubscribe", "preferences")

_URL_SAFE = re.compile(r"[A-Za-z0-9_.-]*")

#: the web process's paths for each purpose; each takes ?token=
PATHS: dict[Purpose, str] = {"confirm": "/confirm", "unsubscribe": "/unsubscribe", "preferences": "/preferences"}

# Only in development mode (BOT_DEV=1) without a SECRET_KEY, and never with live mail:
# it is public, so anyone could forge a link signed with it.
_DEV_KEY = "insecure-dev-key-mail-is-not-live"


class _HmacSha1(SigningAlgorithm):
    """itsdangerous's default signature (HMAC-SHA1), in one OpenSSL call: its own builds a
    Python HMAC object per token, and a digest signs two tokens per message."""

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return hmac.digest(key, value, "sha1")


class _ClockSigner(TimestampSigner):
    """A TimestampSigner whose clock can be fixed, so tests need no sleeping and a digest's links
    (made at its build time) come out the same on every re-send."""

    def __init__(self, *args: Any, now: datetime | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._now = now
        self._derived: bytes | None = None
        self._stamp: bytes | None = None

    def get_timestamp(self) -> int:
        return int(self._now.timestamp()) if self._now is not None else super().get_timestamp()

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        # Derived once per signer: itsdangerous would hash it again for every token.
        if secret_key is not None:
            return super().derive_key(secret_key)
        if self._derived is None:
            self._derived = super().derive_key()
        return self._derived

    def sign(self, value: str | bytes) -> bytes:
        if self._now is None:
            return super().sign(value)
        # TimestampSigner.sign's own steps, with the fixed time's part encoded once per signer
        # (a digest signs two links per message, all at its build time).
        if self._stamp is None:
            self._stamp = self.sep + base64_encode(int_to_bytes(self.get_timestamp()))
        signed = want_bytes(value) + self._stamp
        return signed + self.sep + base64_encode(self.algorithm.get_signature(self.derive_key(), signed))


def _secret(settings: Settings) -> str:
    env = settings.env
    if env.secret_key:
        return env.secret_key
    live_mail = bool(env.smtp_url) and not env.bot_dry_run
    if env.bot_dev and not live_mail:
        return _DEV_KEY
    if live_mail:
        raise ConfigError(
            "setting SECRET_KEY is required when e-mail is sent (SMTP_URL is set): it signs subscription "
            "links; BOT_DEV=1 does not replace it"
        )
    raise ConfigError(
        "setting SECRET_KEY is required: it signs subscription links (set a long random string; "
        "for local development only, BOT_DEV=1 uses a public key)"
    )


def require_signing_key(settings: Settings) -> None:
    """ConfigError (exit 2) unless tokens can be signed: a command that makes or checks them calls this at start."""
    _secret(settings)


def using_dev_key(settings: Settings) -> bool:
    """True when tokens are signed with the public development key (say so loudly)."""
    try:
        return _secret(settings) == _DEV_KEY
    except ConfigError:
        return False


def subscription_version(subscriber: Subscriber) -> str:
    """What a confirm token is bound to: it changes when the address unsubscribes or bounces.

    A confirm link mailed before an unsubscribe must not subscribe the address again;
    one mailed after (the owner asked again) must. "" while neither happened, so links
    made before this binding existed keep working for pending addresses.
    """
    marks = [at.isoformat() for at in (subscriber.unsubscribed_at, subscriber.bounced_at) if at is not None]
    if not marks:
        return ""
    return hashlib.blake2s("|".join(marks).encode(), digest_size=6).hexdigest()


def _signer(settings: Settings, purpose: Purpose, now: datetime | None) -> _ClockSigner:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return _cached_signer(_secret(settings), purpose, now)


@functools.lru_cache(maxsize=64)
def _cached_signer(secret: str, purpose: Purpose, now: datetime | None) -> _ClockSigner:
    # A digest signs two links per message, all at its build time: one signer serves them all.
    return _ClockSigner(secret, salt=f"shortscience-bot/{purpose}", now=now, algorithm=_HmacSha1())


def operator_signer(settings: Settings, *, now: datetime | None = None) -> TimestampSigner:
    """The signer of operator console sessions: SECRET_KEY with a salt of its own, so no
    subscription token can pass for a session (or the reverse)."""
    return _ClockSigner(_secret(settings), salt="shortscience-bot/operator-session", now=now, algorithm=_HmacSha1())


def make_token(
    settings: Settings, purpose: Purpose, address: str, *, now: datetime | None = None, version: str = ""
) -> str:
    """A URL-safe token carrying `address`, signed for `purpose` (at `now`, default the real time).

    The address travels base64url-encoded (no JSON, no compression: a digest
    makes two tokens per message, so they must be cheap): payload.time.signature.
    `version` (confirm tokens: subscription_version) travels after a NUL, which no address holds.
    """
    payload = base64_encode((address + "\0" + version if version else address).encode("utf-8"))
    return _signer(settings, purpose, now).sign(payload).decode("ascii")


def read_token(
    settings: Settings, purpose: Purpose, token: str, *, max_age: int | None, now: datetime | None = None
) -> str:
    """The address a token carries; InvalidToken if forged, for another purpose, or older than max_age seconds."""
    return read_versioned_token(settings, purpose, token, max_age=max_age, now=now)[0]


def read_versioned_token(
    settings: Settings, purpose: Purpose, token: str, *, max_age: int | None, now: datetime | None = None
) -> tuple[str, str]:
    """The address and the version a token carries (see make_token); InvalidToken as read_token."""
    signer = _signer(settings, purpose, now)
    try:
        if max_age is None:
            payload = signer.unsign(token)
        else:
            # itsdangerous compares the age with the real clock; ours may be fixed.
            payload, signed_at = signer.unsign(token, return_timestamp=True)
            age = (now or utc_now()) - signed_at
            if age.total_seconds() > max_age:
                raise InvalidToken(f"this {purpose} link has expired", expired=True)
        address, _, version = base64_decode(payload).decode("utf-8").partition("\0")
    except SignatureExpired:  # pragma: no cover - ages are checked above
        raise InvalidToken(f"this {purpose} link has expired", expired=True) from None
    except (BadSignature, ValueError):
        raise InvalidToken(f"this {purpose} link is not valid") from None
    if not address:
        raise InvalidToken(f"this {purpose} link is not valid")
    return address, version


def max_age(settings: Settings, purpose: Purpose) -> int | None:
    """How long a token of this purpose is accepted, in seconds (None: forever)."""
    return settings.digest.confirm_ttl_hours * 3600 if purpose == "confirm" else None


def signed_link(
    settings: Settings, purpose: Purpose, address: str, *, now: datetime | None = None, version: str = ""
) -> str:
    """The absolute link for `purpose`, e.g. https://bot.example.org/unsubscribe?token=…"""
    token = make_token(settings, purpose, address, now=now, version=version)
    # A token is base64url and dots, nothing a URL needs quoted (checked rather than quoted: cheaper).
    if not _URL_SAFE.fullmatch(token):
        token = quote(token, safe="")
    return f"{settings.env.public_base_url.rstrip('/')}{PATHS[purpose]}?token={token}"
