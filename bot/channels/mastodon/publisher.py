"""The Mastodon channel's publisher: statuses (with an image) through Mastodon.py, exactly once.

It sends a ``Post`` and returns proof (``Published``), translating
Mastodon.py and requests errors into ``PublishError`` subclasses at this
edge; it never touches the store, renders or decides retries. The access
token never appears in what it raises or logs.

Exactly once: every attempt at a post sends the same ``Idempotency-Key``
(made from the post, which a delivery freezes), so a retry within the
server's window (an hour) gets the original status back instead of a second
one; reconciliation reads the account's statuses back for the summary link.
"""

from __future__ import annotations

import hashlib
import html
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import requests
from mastodon import (
    Mastodon,
    MastodonAPIError,
    MastodonError,
    MastodonIllegalArgumentError,
    MastodonNetworkError,
    MastodonRatelimitError,
    MastodonUnauthorizedError,
)

from bot.channels.images import ImageFetcher, image_fetcher
from bot.channels.mastodon.post import CHANNEL, StatusLimits, limits_from_instance
from bot.channels.mastodon.settings import MastodonSettings
from bot.channels.transport import never_sent, redact
from bot.clock import utc_now
from bot.errors import AuthPublishError, ConfigError, PermanentPublishError, PublishError, TransientPublishError
from bot.records import Post, Published
from bot.settings import Settings
from bot.sources.fetch import parse_retry_after

log = logging.getLogger(__name__)

#: how long Mastodon keeps an Idempotency-Key (PostStatusService: one hour), less a margin for clocks
IDEMPOTENCY_WINDOW = timedelta(minutes=55)
#: statuses one page of the account's timeline holds at most (Mastodon's cap)
PAGE_SIZE = 40
#: most pages one reconciliation reads (1,000 statuses)
RECONCILE_MAX_PAGES = 25
#: Mastodon's longest media description
ALT_MAX = 1500
#: polls of an upload still being processed (GIFs become video) before the post goes without it
MEDIA_POLLS = 10
#: a version Mastodon.py is told the server has, so it asks nothing before the first real call
#: (4.0 brought /api/v2/instance, which we read; /api/v2/media is older)
ASSUMED_VERSION = "4.0.0"


def idempotency_key(post: Post) -> str:
    """The key every attempt at `post` sends: the same post always gives the same key.

    A delivery's post is frozen when it is queued, so retries and
    reconciliation of one delivery send one key; a republished (edited)
    summary is a new text, hence a new key and a new status.
    """
    material = "\0".join((CHANNEL, post.summary_guid, post.text))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class MastodonPublisher:
    """Posts statuses on one Mastodon account with an access token."""

    channel = CHANNEL
    live = True

    def __init__(
        self,
        *,
        api_base_url: str,
        access_token: str,
        timeout: float = 30.0,
        visibility: str = "public",
        language: str = "",
        spoiler_text: str = "",
        now: Callable[[], datetime] = utc_now,
        fetch_image: ImageFetcher | None = None,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ) -> None:
        if not api_base_url.startswith(("https://", "http://")):
            raise ConfigError(
                f"setting MASTODON_API_BASE_URL = {api_base_url!r} is invalid: expected the instance's URL, e.g. https://sigmoid.social"
            )
        self._now = now
        self._secrets = (access_token,) if len(access_token) >= 4 else ()
        self._visibility = visibility
        self._language = language or None
        self._spoiler_text = spoiler_text or None
        self._fetch_image = fetch_image
        self._sleep = sleep
        self._limits: StatusLimits | None = None
        # The last answer per thread: Mastodon.py's errors keep the status but not the headers.
        self._last = threading.local()
        self._session = session or requests.Session()
        self._session.hooks["response"].append(self._remember)
        self._client = Mastodon(
            api_base_url=api_base_url.rstrip("/"),
            access_token=access_token,
            request_timeout=timeout,
            # Raise on 429 (never sleep in a worker); the dispatcher waits until the reset.
            ratelimit_method="throw",
            mastodon_version=ASSUMED_VERSION,
            version_check_mode="created",
            session=self._session,
        )

    @classmethod
    def from_settings(
        cls,
        channel: MastodonSettings,
        settings: Settings,
        *,
        api_base_url: str | None = None,
        access_token: str | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> MastodonPublisher:
        """The publisher the settings describe (the instance and token from the environment unless passed in)."""
        env = settings.env
        return cls(
            api_base_url=env.mastodon_api_base_url if api_base_url is None else api_base_url,
            access_token=env.mastodon_access_token if access_token is None else access_token,
            timeout=channel.timeout_seconds,
            visibility=channel.visibility,
            language=channel.language,
            spoiler_text=channel.spoiler_text,
            now=now,
            fetch_image=image_fetcher(settings) if channel.images else None,
        )

    # ---- the Publisher interface ----

    def publish(self, post: Post) -> Published:
        media_ids = self._media_ids(post)
        status = self._call(
            lambda: self._client.status_post(
                post.text,
                media_ids=media_ids or None,
                visibility=self._visibility,
                language=self._language,
                spoiler_text=self._spoiler_text,
                idempotency_key=idempotency_key(post),
            ),
            sending=True,
        )
        return _published(status)

    def reconcile(self, post: Post, *, since: datetime | None = None) -> Published | None:
        """Look for the summary link among the account's statuses since `since`; else resend within the key's window.

        Found: that status is the proof. Not found, after reading back to
        `since`, and the attempt less than the server's idempotency window ago:
        the same post is sent again with the same Idempotency-Key, which gives
        back the original status if the first attempt did go out and posts it
        now if it did not, one status either way. Otherwise None: the operator
        decides (the read may have missed it, or the key has expired).
        """
        found, complete = self._find(post, since)
        if found is not None:
            return found
        if complete and since is not None and self._now() - since < IDEMPOTENCY_WINDOW:
            log.info(
                "Mastodon status not found since %s: sending again under the same Idempotency-Key", since.isoformat()
            )
            return self.publish(post)
        return None

    def check(self) -> str:
        account = self._call(self._client.account_verify_credentials, sending=False)
        name = _field(account, "acct") or _field(account, "username")
        if not name:
            raise TransientPublishError("Mastodon answered the credentials check without an account", status=200)
        return f"ok: @{name}"

    # ---- the instance's limits ----

    def post_limit(self) -> int:
        """The most characters the instance takes in one status (what rendering fits a post to: PostContext.limit)."""
        return self.limits().max_characters

    def limits(self) -> StatusLimits:
        """The instance's status limits, read once (``GET /api/v2/instance``); Mastodon's defaults when it will not
        say."""
        if self._limits is None:
            try:
                instance = self._call(self._client.instance_v2, sending=False)
            except (TransientPublishError, AuthPublishError) as exc:
                # Not cached: the next call asks again.
                log.warning("Mastodon instance limits not readable, assuming the defaults: %s", exc)
                return StatusLimits()
            except PermanentPublishError as exc:
                # An older server or another implementation without /api/v2/instance.
                log.info("Mastodon instance gives no limits (%s): assuming the defaults", exc)
                instance = None
            self._limits = limits_from_instance(_plain(instance))
        return self._limits

    # ---- reading back ----

    def _find(self, post: Post, since: datetime | None) -> tuple[Published | None, bool]:
        """The account's status carrying the post's link, and whether every status since `since` was read."""
        account = self._call(self._client.account_verify_credentials, sending=False)
        account_id = _field(account, "id")
        # A minute of slack for clocks that disagree with the instance's.
        oldest = since - timedelta(minutes=1) if since is not None else None
        max_id: Any = None
        for _ in range(RECONCILE_MAX_PAGES if since is not None else 1):
            page = self._call(
                partial(
                    self._client.account_statuses, account_id, limit=PAGE_SIZE, max_id=max_id, exclude_reblogs=True
                ),
                sending=False,
            )
            statuses = list(page or ())
            for status in statuses:
                # A status older than the delivery announced the summary before (an edit republishes it): not ours.
                if _carries_link(status, post.link) and not _older(status, oldest):
                    return _published(status), True
            if not statuses:
                return None, True
            if _older(statuses[-1], oldest):
                return None, True
            max_id = _field(statuses[-1], "id")
        return None, False

    # ---- images ----

    def _media_ids(self, post: Post) -> list[str]:
        """The uploaded image's id, or none: a refused image never stops the post."""
        if not (post.image_url and self._fetch_image):
            return []
        try:
            data, media_type = self._fetch_image(post.image_url)
            media = self._call(
                lambda: self._client.media_post(
                    data, mime_type=media_type, description=alt_text(post), file_name="image"
                ),
                sending=False,
            )
            media = self._processed(media)
        except PermanentPublishError as exc:
            log.warning("Mastodon post goes out without its image: %s", exc)
            return []
        # Transient and auth errors propagate: nothing is posted yet, the retry uploads again.
        return [str(_field(media, "id"))]

    def _processed(self, media: Any) -> Any:
        """The upload once Mastodon has processed it (202 and url null meanwhile: a status cannot attach it yet)."""
        for _ in range(MEDIA_POLLS):
            if _field(media, "url"):
                return media
            self._sleep(1.0)
            media_id = _field(media, "id")
            media = self._call(partial(self._client.media, media_id), sending=False)
        if _field(media, "url"):
            return media
        raise PermanentPublishError("Mastodon had not processed the image after 10 seconds")

    # ---- the one door to Mastodon.py ----

    def _call(self, call: Callable[[], Any], *, sending: bool) -> Any:
        """Run one Mastodon.py call; its errors leave as PublishError (`sending`: a status may have been made)."""
        self._last.response = None
        try:
            return call()
        except MastodonRatelimitError:
            raise self._rate_limited() from None
        except MastodonNetworkError as exc:
            raise self._unreachable(exc, sending=sending) from None
        except MastodonAPIError as exc:
            raise self._translate(exc) from None
        except MastodonIllegalArgumentError as exc:
            raise PermanentPublishError(redact(f"Mastodon.py refused the request: {exc}", self._secrets)) from None
        except MastodonError as exc:
            raise TransientPublishError(redact(f"Mastodon API failed: {type(exc).__name__}", self._secrets)) from None

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last.response = response

    def _last_response(self) -> requests.Response | None:
        response: requests.Response | None = getattr(self._last, "response", None)
        return response

    def _rate_limited(self) -> TransientPublishError:
        response = self._last_response()
        reset = response.headers.get("x-ratelimit-reset") if response is not None else None
        retry_at = _parse_time(reset) if reset else None
        if retry_at is None and response is not None:
            retry_at = parse_retry_after(response.headers.get("retry-after"), self._now())
        return TransientPublishError("Mastodon API rate limit reached (429)", status=429, retry_at=retry_at)

    def _translate(self, exc: MastodonAPIError) -> PublishError:
        status = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        if status is None:
            response = self._last_response()
            status = response.status_code if response is not None else None
        detail = (
            str(exc.args[3]) if len(exc.args) > 3 and exc.args[3] else (str(exc.args[2]) if len(exc.args) > 2 else "")
        )
        message = redact(f"Mastodon API refused ({status}): {detail}".rstrip(": "), self._secrets)
        if isinstance(exc, MastodonUnauthorizedError) or status == 401:
            return AuthPublishError(message + " — renew MASTODON_ACCESS_TOKEN", status=status)
        if status == 403:
            return AuthPublishError(
                message
                + " — the token lacks a scope (write:statuses, write:media, read:accounts) or the account may not post",
                status=status,
            )
        if status == 422:
            return PermanentPublishError(message, status=status)
        if status == 404:
            return PermanentPublishError(message + " (is MASTODON_API_BASE_URL the instance?)", status=status)
        if status is None or status >= 500 or status == 408:
            response = self._last_response()
            retry_at = (
                parse_retry_after(response.headers.get("retry-after"), self._now()) if response is not None else None
            )
            return TransientPublishError(message, status=status, retry_at=retry_at)
        return PermanentPublishError(message, status=status)

    def _unreachable(self, exc: MastodonNetworkError, *, sending: bool) -> TransientPublishError:
        # Mastodon.py wraps the requests error in a message; the original is the context.
        cause = exc.__context__
        unsent = isinstance(cause, requests.RequestException) and never_sent(cause)
        kind = "timed out" if isinstance(cause, requests.Timeout) else f"unreachable ({type(cause or exc).__name__})"
        if sending:
            kind += "; nothing was sent" if unsent else "; the post may or may not have gone out"
        return TransientPublishError(redact(f"Mastodon API {kind}", self._secrets), maybe_sent=sending and not unsent)


def alt_text(post: Post) -> str:
    """The image's description for screen readers: the post has no alt text of its own, so its title line."""
    title = post.text.split("\n", 1)[0].strip()
    return f"Figure from the summary of: {title}"[:ALT_MAX]


def _published(status: Any) -> Published:
    status_id = _field(status, "id")
    if not status_id:
        raise TransientPublishError(
            "Mastodon accepted the post but returned no id (it may be out)", status=200, maybe_sent=True
        )
    url = _field(status, "url") or _field(status, "uri")
    return Published(post_id=str(status_id), url=str(url) if url else None)


def _carries_link(status: Any, link: str) -> bool:
    """Whether a status (its HTML content, or its source text when given) holds the link."""
    if not link:
        return False
    for key in ("text", "content"):
        value = _field(status, key)
        if isinstance(value, str) and link in html.unescape(value):
            return True
    return False


def _older(status: Any, oldest: datetime | None) -> bool:
    created = _as_datetime(_field(status, "created_at"))
    return oldest is not None and created is not None and created < oldest


def _field(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return value.get(key)
    return getattr(value, key, None)


def _plain(value: Any) -> Any:
    """Mastodon.py's answer objects as plain dicts and lists (they subclass both)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return _parse_time(value) if isinstance(value, str) else None


def _parse_time(text: str) -> datetime | None:
    """An ISO 8601 time (X-RateLimit-Reset, created_at) as an aware datetime, or None."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
