"""The Bluesky channel: a post is a record created under a key chosen before the call, so it exists once.

It sends a ``Post`` and returns proof (``Published``) through the atproto
SDK, translating its errors into ``PublishError`` subclasses at the edge;
it never touches the store, never renders, never decides retries. The login
session lives in a ``SessionStore`` (bot/channels/spec.py): refreshed with its refresh token when
the access token expires, a new login only when that fails (the PDS allows
only a few dozen logins per five minutes). Secrets and session tokens never
appear in what it raises or logs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from atproto import Client, Session, SessionEvent
from atproto_client.exceptions import (
    InvokeTimeoutError,
    LoginRequiredError,
    NetworkError,
    RateLimitExceededError,
    RequestErrorBase,
)
from atproto_client.models.common import XrpcError
from atproto_client.request import Request
from atproto_core.exceptions import AtProtocolError
from atproto_server.exceptions import InvalidTokenError

from bot.channels.bluesky.post import COLLECTION, record
from bot.channels.bluesky.tid import record_key
from bot.channels.spec import SessionStore
from bot.clock import utc_now
from bot.errors import AuthPublishError, PermanentPublishError, PublishError, TransientPublishError
from bot.records import Post, Published
from bot.sources.fetch import parse_retry_after

log = logging.getLogger(__name__)

T = TypeVar("T")

#: app.bsky.embed.external's limit of a link card's thumbnail
THUMB_MAX_BYTES = 1_000_000
#: the errors with which a PDS refuses a token (400, from its auth verifier) rather than a request
_SESSION_ERRORS = ("ExpiredToken", "InvalidToken")
_CREDENTIALS = "check BLUESKY_HANDLE and BLUESKY_APP_PASSWORD (an app password, not the account's)"


class BlueskyPublisher:
    """Publishes posts on one Bluesky account with an app password."""

    channel = "bluesky"
    live = True

    def __init__(
        self,
        *,
        service_url: str,
        handle: str,
        app_password: str,
        vault: SessionStore,
        timeout: float = 30.0,
        langs: Sequence[str] = ("en",),
        now: Callable[[], datetime] = utc_now,
        fetch_image: Callable[[str], tuple[bytes, str]] | None = None,
    ) -> None:
        self._handle = handle.lstrip("@").lower()
        self._password = app_password
        self._vault = vault
        self._langs = tuple(langs)
        self._now = now
        self._fetch_image = fetch_image
        self._client = Client(base_url=service_url, request=Request(timeout=timeout))
        self._client.on_session_change(self._session_changed)
        self._did: str | None = None
        self._started = False
        # Threads sharing a publisher must not each log in (the PDS counts logins per account).
        self._session_lock = threading.Lock()

    # ---- the Publisher interface ----

    def publish(self, post: Post) -> Published:
        key = record_key(post)
        value = record(post, langs=self._langs, now=self._now(), thumb=self._thumb(post))
        try:
            out = self._call("Bluesky refused the post", lambda: self._create(key, value))
        except TransientPublishError as exc:
            # A 5xx is also how the PDS refuses a key that is taken: the record under our
            # key, if it is there, is the proof (of this attempt or an earlier one).
            if exc.maybe_sent or (exc.status or 0) >= 500:
                found = self._read_back(post, key, fallback=exc)
                if found is not None:
                    log.info("Bluesky post %s is out (found under its record key)", key)
                    return found
            raise
        return Published(post_id=str(out.uri), url=self._web_url(key))

    def reconcile(self, post: Post, *, since: datetime | None = None) -> Published | None:
        """Read the record under the post's key: there, it is the proof; absent, post it now under that key.

        Posting now cannot make a second post: the key is the post's own, and
        the PDS refuses a second record under it. (`since` is not needed.)
        """
        key = record_key(post)
        found = self._lookup(post, key)
        if found is not None:
            return found
        return self.publish(post)

    def check(self) -> str:
        did = self._call(
            f"Bluesky could not resolve the handle @{self._handle}",
            lambda: self._client.com.atproto.identity.resolve_handle({"handle": self._handle}).did,
        )
        profile = self._call(
            "Bluesky refused the profile read", lambda: self._client.app.bsky.actor.get_profile({"actor": did})
        )
        name = getattr(profile, "display_name", None) or self._handle
        return f"ok: {name} (@{self._handle})"

    # ---- records ----

    def _create(self, key: str, value: dict[str, Any]) -> Any:
        return self._client.com.atproto.repo.create_record(
            {"repo": self._repo(), "collection": COLLECTION, "rkey": key, "record": value}
        )

    def _lookup(self, post: Post, key: str) -> Published | None:
        """The proof under `key`, None when no record is there; raises if another post holds the key."""

        def get() -> Any:
            try:
                return self._client.com.atproto.repo.get_record(
                    {"repo": self._repo(), "collection": COLLECTION, "rkey": key}
                )
            except RequestErrorBase as exc:
                if _xrpc_error(exc) == "RecordNotFound":
                    return None
                raise

        out = self._call("Bluesky refused the read-back of a post", get)
        if out is None:
            return None
        value = out.value
        text = value.get("text") if isinstance(value, dict) else getattr(value, "text", None)
        if text != post.text:
            # Another post under our key: 55 bits of hash make it all but impossible; never call it proof.
            raise PermanentPublishError(
                f"Bluesky record key {key} holds a different post; this post was not published", status=None, code=None
            )
        return Published(post_id=str(out.uri), url=self._web_url(key))

    def _read_back(self, post: Post, key: str, *, fallback: TransientPublishError) -> Published | None:
        try:
            return self._lookup(post, key)
        except TransientPublishError:
            raise fallback from None

    def _thumb(self, post: Post) -> dict[str, Any] | None:
        """The link card's thumbnail blob, or none: an image never stops the post."""
        if self._fetch_image is None or not post.image_url:
            return None
        try:
            data, media_type = self._fetch_image(post.image_url)
            if len(data) > THUMB_MAX_BYTES:
                raise PermanentPublishError(
                    f"image of {len(data)} bytes is over the card's {THUMB_MAX_BYTES}", status=None, code=None
                )
            # Raw bytes as httpx's `content`: the SDK's upload_blob passes them as `data`, which httpx deprecates.
            out = self._call(
                "Bluesky refused the image upload",
                lambda: self._client.invoke_procedure(
                    "com.atproto.repo.uploadBlob",
                    content=data,
                    headers={"Content-Type": media_type},
                    output_encoding="application/json",
                ),
            )
        except PublishError as exc:
            log.warning("Bluesky post goes out without its card image: %s", self._redact(str(exc)))
            return None
        blob = out.content.get("blob") if isinstance(out.content, dict) else None
        if not isinstance(blob, dict):
            log.warning("Bluesky post goes out without its card image: the upload's answer has no blob")
            return None
        return blob

    def _web_url(self, key: str) -> str:
        return f"https://bsky.app/profile/{self._did or self._handle}/post/{key}"

    def _repo(self) -> str:
        return self._did or self._handle

    # ---- the session ----

    def _session_changed(self, event: SessionEvent, session: Session) -> None:
        self._did = session.did
        if event in (SessionEvent.CREATE, SessionEvent.REFRESH):
            self._vault.save(session.export())

    def _start(self) -> None:
        """Take up the saved session once; log in only without one that belongs to this account."""
        with self._session_lock:
            if not self._started:
                self._take_up_session()
                self._started = True

    def _take_up_session(self) -> None:
        saved = self._vault.load()
        session: Session | None = None
        if saved:
            try:
                session = Session.decode(saved)
            except ValueError:
                log.warning("Bluesky: the saved session is unreadable; logging in again")
        if session is not None and session.handle.lower() == self._handle:
            self._client.login(session_string=saved, fetch_bsky_profile=False)
        else:
            self._login()

    def _login(self) -> None:
        log.info("Bluesky: logging in as @%s", self._handle)
        try:
            self._client.login(self._handle, self._password, fetch_bsky_profile=False)
        except AtProtocolError as exc:
            what = f"Bluesky refused the login of @{self._handle}"
            status = _status(exc)
            if status in (400, 401, 403):
                raise AuthPublishError(f"{what} ({_describe(exc)}); {_CREDENTIALS}", status=status, code=None) from None
            raise self._translate(exc, what) from None

    def _renew(self) -> None:
        """Refresh the session with its refresh token; log in again when the PDS refuses that too."""
        with self._session_lock:
            self._renew_locked()

    def _renew_locked(self) -> None:
        try:
            # The SDK refreshes by itself only when the token's own expiry says so; a PDS that
            # revoked it earlier answers ExpiredToken, and the SDK has no public call for that.
            self._client._refresh_and_set_session()
            log.info("Bluesky: session refreshed")
        except AtProtocolError as exc:
            if not _session_trouble(exc):
                raise self._translate(exc, "Bluesky refused the session refresh") from None
            self._login()

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """fn() with a working session: on a refused token, refresh (or log in) and try once more."""
        self._start()
        try:
            return fn()
        except AtProtocolError as exc:
            if not _session_trouble(exc):
                raise self._translate(exc, what) from None
        self._renew()
        try:
            return fn()
        except AtProtocolError as exc:
            if _session_trouble(exc):
                raise AuthPublishError(
                    f"{what}: the PDS refuses a fresh session ({_describe(exc)}); {_CREDENTIALS}",
                    status=_status(exc),
                    code=None,
                ) from None
            raise self._translate(exc, what) from None

    # ---- errors ----

    def _translate(self, exc: AtProtocolError, what: str) -> PublishError:
        status = _status(exc)
        message = self._redact(f"{what} ({_describe(exc)})")
        if isinstance(exc, RateLimitExceededError):
            retry_at = exc.reset_at
            if retry_at is None and exc.retry_after is not None:
                retry_at = datetime.fromtimestamp(self._now().timestamp() + exc.retry_after, UTC)
            return TransientPublishError(message + " (rate limit)", status=429, code=None, retry_at=retry_at)
        if isinstance(exc, NetworkError) and status is None:
            return self._unreachable(exc, what)
        if isinstance(exc, LoginRequiredError):
            return AuthPublishError(f"{what}: not logged in; {_CREDENTIALS}", status=None, code=None)
        if status is None:
            # An answer the SDK could not read (a model error): the post may be out.
            return TransientPublishError(message, status=None, code=None, maybe_sent=True)
        if status in (401, 403) or _session_trouble(exc):
            return AuthPublishError(f"{message}; {_CREDENTIALS}", status=status, code=None)
        if status >= 500 or status in (408, 409):
            headers = exc.response.headers if isinstance(exc, RequestErrorBase) and exc.response else {}
            retry_at = parse_retry_after(headers.get("retry-after"), self._now())
            return TransientPublishError(message, status=status, code=None, retry_at=retry_at)
        return PermanentPublishError(message, status=status, code=None)

    def _unreachable(self, exc: NetworkError, what: str) -> TransientPublishError:
        cause = exc.__cause__
        never = isinstance(cause, (httpx.ConnectError, httpx.ConnectTimeout))
        kind = "timed out" if isinstance(exc, InvokeTimeoutError) else f"unreachable ({type(cause or exc).__name__})"
        return TransientPublishError(
            self._redact(
                f"Bluesky PDS {kind}" + ("; nothing was sent" if never else "; the post may or may not have gone out")
            ),
            status=None,
            code=None,
            maybe_sent=not never,
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) if response is not None else None


def _xrpc_error(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    content = getattr(response, "content", None)
    return content.error if isinstance(content, XrpcError) else None


def _describe(exc: AtProtocolError) -> str:
    """Status, XRPC error and message: what the PDS said, never a token."""
    response = getattr(exc, "response", None)
    if response is None:
        return type(exc).__name__
    content = response.content
    if isinstance(content, XrpcError):
        return f"{response.status_code} {content.error}: {content.message or ''}".rstrip(": ")
    return str(response.status_code)


def _session_trouble(exc: BaseException) -> bool:
    """Whether the PDS refused our session (expired, revoked, missing) rather than the request."""
    if isinstance(exc, LoginRequiredError):
        return True
    if isinstance(exc, InvalidTokenError):  # a saved session whose token is not even a JWT
        return True
    status = _status(exc)
    return status == 401 or (status == 400 and _xrpc_error(exc) in _SESSION_ERRORS)


def make_publisher(
    settings: Any,
    *,
    vault: SessionStore,
    now: Callable[[], datetime] = utc_now,
    fetch_image: Callable[[str], tuple[bytes, str]] | None = None,
) -> BlueskyPublisher:
    """The live publisher from the bot's Settings (``env.bluesky_*`` and the ``bluesky`` section): the registry's one
    line."""
    env, channel = settings.env, settings.bluesky
    return BlueskyPublisher(
        service_url=env.bluesky_service_url,
        handle=env.bluesky_handle,
        app_password=env.bluesky_app_password,
        vault=vault,
        timeout=channel.timeout_seconds,
        langs=channel.langs,
        now=now,
        fetch_image=fetch_image if channel.images else None,
    )
