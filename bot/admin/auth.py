"""Who may use the operator console: the password, the session cookie, CSRF tokens and the login limits.

Pure functions of settings and `now` (the argon2 check aside): the handlers in
``bot.admin.pages`` call them and keep the audit log. The session is a signed,
expiring cookie (SECRET_KEY, ``bot.mail.tokens.operator_signer``); nothing
about it is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature

from bot.errors import ConfigError
from bot.mail.tokens import operator_signer
from bot.settings import Settings

#: the cookie's name; its Path is /admin, so no other page of the site ever receives it
SESSION_COOKIE = "bot_operator"
#: the one account of the console (audit and lockout name it)
ACCOUNT = "operator"


def hash_password(password: str) -> str:
    """An Argon2id hash with argon2-cffi's recommended parameters (what OPERATOR_PASSWORD_HASH holds)."""
    return PasswordHasher().hash(password)


def password_matches(stored_hash: str, password: str) -> bool:
    """argon2's verify: its time does not depend on how much of the password is right."""
    try:
        return PasswordHasher().verify(stored_hash, password)
    except VerifyMismatchError:
        return False
    except (InvalidHashError, VerificationError):
        raise ConfigError(
            "setting OPERATOR_PASSWORD_HASH is invalid: argon2 cannot read it "
            "(make one with `python -m bot operator hash-password`)"
        ) from None


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in operator: a random id (the CSRF token is bound to it) and when the login was."""

    sid: str
    issued_at: datetime


def new_session_cookie(settings: Settings, *, now: datetime) -> tuple[str, Session]:
    """The cookie value of a fresh login, and the session it carries."""
    sid = secrets.token_urlsafe(18)
    value = operator_signer(settings, now=now).sign(sid).decode("ascii")
    return value, Session(sid, now)


def read_session(settings: Settings, value: str, *, now: datetime) -> Session | None:
    """The session a cookie carries; None if forged, damaged, or older than web.admin_session_minutes."""
    if not value:
        return None
    try:
        sid, signed_at = operator_signer(settings, now=now).unsign(value, return_timestamp=True)
    except (BadSignature, ValueError):
        return None
    # itsdangerous compares ages with the real clock; ours is passed in.
    if now - signed_at > timedelta(minutes=settings.web.admin_session_minutes) or signed_at > now + timedelta(
        minutes=1
    ):
        return None
    return Session(sid.decode("ascii"), signed_at)


def session_label(session: Session) -> str:
    """How the audit log names a session: a hash of its id, so the log holds nothing a CSRF token derives from."""
    return "session " + hashlib.sha256(session.sid.encode("ascii")).hexdigest()[:16]


def csrf_token(settings: Settings, session: Session) -> str:
    """The token every POST form of this session carries: a signature of the session id."""
    return operator_signer(settings).get_signature(b"csrf:" + session.sid.encode("ascii")).decode("ascii")


def csrf_ok(settings: Settings, session: Session, token: str) -> bool:
    return hmac.compare_digest(csrf_token(settings, session).encode("ascii"), token.encode("utf-8", "replace"))


def cookie_header(settings: Settings, value: str, *, max_age: int) -> str:
    """Set-Cookie for the session: HttpOnly, SameSite=Strict, Path=/admin, Secure behind https."""
    secure = "; Secure" if settings.env.public_base_url.lower().startswith("https://") else ""
    return f"{SESSION_COOKIE}={value}; Max-Age={max_age}; Path=/admin; HttpOnly; SameSite=Strict{secure}"


@dataclass(frozen=True, slots=True)
class Lockout:
    """Logins are refused until `until`; `scope` says whose failures caused it."""

    #: "client" (this address) or "account" (everyone's failures together)
    scope: str
    until: datetime


def login_lockout(
    client_failures: list[datetime], account_failures: list[datetime], settings: Settings, *, now: datetime
) -> Lockout | None:
    """Whether a login may be tried now, from the failures since the last success (oldest first).

    After M failures within admin_lockout_minutes, logins are refused until
    admin_lockout_minutes after the M-th most recent one.
    """
    w = settings.web
    window = timedelta(minutes=w.admin_lockout_minutes)
    for scope, failures, limit in (
        ("client", client_failures, w.admin_failures_per_client),
        ("account", account_failures, w.admin_failures_per_account),
    ):
        recent = [at for at in failures if at > now - window]
        if len(recent) >= limit:
            until = recent[-limit] + window
            if until > now:
                return Lockout(scope, until)
    return None
