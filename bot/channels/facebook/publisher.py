"""The Facebook Page channel: link posts (or photo posts) through the Graph API with facebook-sdk.

It sends a ``Post`` and returns proof (``Published``), translating
facebook-sdk and requests errors into ``PublishError`` subclasses; it never
touches the store or decides retries. The Page token never appears in what it
raises or logs (facebook-sdk puts it in URLs and some error texts).
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx
import requests

from bot.channels.images import fetch_image
from bot.channels.transport import HostAdapter, never_sent, redact, settle_environment
from bot.clock import utc_now
from bot.errors import AuthPublishError, ConfigError, PermanentPublishError, PublishError, TransientPublishError
from bot.records import Post, Published
from bot.settings import Settings
from bot.sources.fetch import parse_retry_after

with warnings.catch_warnings():
    # facebook-sdk 3.1.0 compiles "^\d\.\d{1,2}$" from a plain string literal:
    # Python warns about the invalid escapes when it compiles the module.
    warnings.filterwarnings("ignore", message="invalid escape sequence", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="invalid escape sequence", category=SyntaxWarning)
    import facebook

log = logging.getLogger(__name__)

#: Graph error codes that mean "slow down" (docs/architecture.md, platform facts); 80000-80099 are the business use case
#: limits
THROTTLING_CODES = frozenset({4, 17, 32, 341, 613, 80001})
#: codes of a bad or dead token
TOKEN_CODES = frozenset({102, 190})
POLICY_BLOCK = 368
DUPLICATE_POST = 506
LINK_ERROR = 1609005

_VERSION = re.compile(r"^v\d+\.\d+$")
_PAGE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_POST_FIELDS = "id,message,permalink_url,created_time,attachments{url,unshimmed_url}"
#: most pages of 25 posts one reconciliation reads (1,000 posts)
RECONCILE_MAX_PAGES = 40


class FacebookPublisher:
    """Publishes posts on one Facebook Page with a Page access token."""

    channel = "facebook"
    live = True

    def __init__(
        self,
        settings: Settings,
        *,
        now: Callable[[], datetime] = utc_now,
        http: httpx.Client | None = None,
    ) -> None:
        env = settings.env
        if not _VERSION.match(env.facebook_graph_version):
            raise ConfigError(
                f"setting FACEBOOK_GRAPH_VERSION = {env.facebook_graph_version!r} is invalid: expected a "
                "version like 'v26.0'"
            )
        if not _PAGE_ID.match(env.facebook_page_id):
            raise ConfigError(
                f"setting FACEBOOK_PAGE_ID = {env.facebook_page_id!r} is invalid: expected the Page's numeric id"
            )
        self._settings = settings
        self._now = now
        self._http = http
        self._secrets = settings.secrets()
        self._page = f"{env.facebook_graph_version}/{env.facebook_page_id}"
        timeout = settings.facebook.timeout_seconds
        # facebook-sdk builds every URL as the module global FACEBOOK_GRAPH_URL + path,
        # read at call time. Assigning that global would move every GraphAPI in the
        # process (and any test running beside us) to our host; instead the library's
        # default host is rewritten to FACEBOOK_GRAPH_URL on this publisher's own
        # session only. No version is passed: GraphAPI only accepts expired ones, and
        # our paths carry the version themselves.
        session = requests.Session()
        self._adapter = HostAdapter(facebook.FACEBOOK_GRAPH_URL, env.facebook_graph_url, timeout=timeout)
        session.mount(facebook.FACEBOOK_GRAPH_URL, self._adapter)
        settle_environment(session)
        self._graph = facebook.GraphAPI(access_token=env.facebook_page_access_token, timeout=timeout, session=session)

    # ---- the Publisher interface ----

    def publish(self, post: Post) -> Published:
        if self._settings.facebook.images and post.image_url:
            photo = self._publish_photo(post, post.image_url)
            if photo is not None:
                return photo
        result = self._request(f"{self._page}/feed", post_args={"message": post.text, "link": post.link})
        return self._published(result.get("id"))

    def reconcile(self, post: Post, *, since: datetime | None = None) -> Published | None:
        """Look for the post among the Page's recent posts; None when it is not there.

        With `since` (the earliest the post can have gone out), every post made
        since is looked at, page by page: on a busy Page ours may be far below
        the first page by the time a crash is reconciled. Without it, one page.
        """
        args = {"fields": _POST_FIELDS, "limit": "25"}
        if since is not None:
            # A minute of slack for clocks that disagree with Facebook's.
            args["since"] = str(int(since.timestamp()) - 60)
        for _ in range(RECONCILE_MAX_PAGES if since is not None else 1):
            result = self._request(f"{self._page}/posts", args=args)
            for item in result.get("data") or ():
                if isinstance(item, dict) and _is_same_post(item, post):
                    return self._published(item.get("id"), url=item.get("permalink_url"))
            paging = result.get("paging")
            after = paging.get("cursors", {}).get("after") if isinstance(paging, dict) and paging.get("next") else None
            if not isinstance(after, str) or not after:
                break
            args["after"] = after
        return None

    def check(self) -> str:
        result = self._request(self._page, args={"fields": "name,id"})
        return f"ok: Page {result.get('name', '?')!r}"

    # ---- posting ----

    def _publish_photo(self, post: Post, image_url: str) -> Published | None:
        """A photo post with the text as caption, or None when the image is refused (then a link post goes out)."""
        try:
            # Graph fetches the URL itself; we fetch it first so only allowed, sane images are offered.
            fetch_image(image_url, self._settings, self._http_client())
            message = post.text if post.link in post.text else f"{post.text}\n\n{post.link}"
            result = self._request(f"{self._page}/photos", post_args={"url": image_url, "caption": message})
        except PermanentPublishError as exc:
            # Refused for good (the image, or Graph about the image): nothing went out.
            log.warning("Facebook post goes out without its image: %s", exc)
            return None
        # Transient and auth errors propagate: a photo that timed out may be on the Page,
        # so a link post now could make two; the retry (or reconciliation) decides.
        return self._published(result.get("post_id") or result.get("id"))

    def _published(self, post_id: Any, *, url: Any = None) -> Published:
        if not post_id:
            raise TransientPublishError(
                "Graph API accepted the post but returned no id (it may be out)", status=200, code=None, maybe_sent=True
            )
        return Published(post_id=str(post_id), url=str(url) if url else f"https://www.facebook.com/{post_id}")

    def _http_client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=self._settings.render.image_timeout_seconds)
        return self._http

    # ---- the one door to the Graph API ----

    def _request(
        self,
        path: str,
        *,
        args: dict[str, str] | None = None,
        post_args: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        try:
            result = self._graph.request(path, args=args, post_args=post_args, method="POST" if post_args else "GET")
        except facebook.GraphAPIError as exc:
            raise self._translate(exc) from None
        except requests.JSONDecodeError:
            raise self._by_status("Graph API answered with invalid JSON") from None
        except requests.RequestException as exc:
            kind = "timed out" if isinstance(exc, requests.Timeout) else f"unreachable ({type(exc).__name__})"
            unsent = never_sent(exc)
            raise TransientPublishError(
                f"Graph API {kind}"
                + (
                    ("; nothing was sent" if unsent else "; the post may or may not have gone out") if post_args else ""
                ),
                status=None,
                code=None,
                maybe_sent=bool(post_args) and not unsent,
            ) from None
        except KeyError:
            # facebook-sdk reads headers["content-type"] unguarded.
            raise self._by_status("Graph API answered without a Content-Type") from None
        if not isinstance(result, dict):
            raise self._by_status("Graph API answered with something other than a JSON object")
        return result

    def _by_status(self, what: str) -> PublishError:
        """An answer without Graph's error JSON: the HTTP status is all we know."""
        response = self._adapter.last_response
        status = response.status_code if response is not None else None
        message = f"{what} (HTTP {status})"
        if status is None or status >= 500 or status in (408, 429):
            retry_at = (
                parse_retry_after(response.headers.get("retry-after"), self._now()) if response is not None else None
            )
            return TransientPublishError(message, status=status, code=None, retry_at=retry_at)
        return PermanentPublishError(message, status=status, code=None)

    def _translate(self, exc: facebook.GraphAPIError) -> PublishError:
        error = exc.result.get("error") if isinstance(exc.result, dict) else None
        if not isinstance(error, dict):
            # Not Graph's JSON (an HTML 502 page, say): facebook-sdk says only "Maintype was not ...".
            return self._by_status("Graph API gave an unexpected answer")
        response = self._adapter.last_response
        status = response.status_code if response is not None else None
        code = error.get("code") if isinstance(error.get("code"), int) else None
        subcode = error.get("error_subcode") if isinstance(error.get("error_subcode"), int) else None
        detail = str(error.get("error_user_msg") or error.get("message") or "").strip()
        label = f"code {code}" + (f"/{subcode}" if subcode else "")
        message = redact(f"Graph API refused ({label}, HTTP {status}): {detail}", self._secrets)

        if code in TOKEN_CODES:
            return AuthPublishError(message + " — renew FACEBOOK_PAGE_ACCESS_TOKEN", status=status, code=code)
        if code == 100 and "does not exist" in detail:
            return AuthPublishError(message + " — wrong FACEBOOK_PAGE_ID?", status=status, code=code)
        if code == 10 or (code is not None and 200 <= code <= 299):
            return AuthPublishError(
                message + " — the token is missing permission pages_manage_posts (or pages_read_engagement)",
                status=status,
                code=code,
            )
        if code == POLICY_BLOCK:
            return AuthPublishError(
                message + " — Facebook blocked posting for policy reasons; the channel pauses", status=status, code=code
            )
        if code in THROTTLING_CODES or (code is not None and 80000 <= code <= 80099):
            return TransientPublishError(
                message + " (rate limit)", status=status, code=code, retry_at=self._throttled_until(response)
            )
        if code == DUPLICATE_POST:
            return PermanentPublishError(message, status=status, code=code, duplicate=True)
        if code == LINK_ERROR or subcode == LINK_ERROR:
            return PermanentPublishError(message + " — Facebook could not use the link", status=status, code=code)
        # Codes 1 and 2 are Graph's "unknown" and "service" errors; Meta's advice for both is to retry.
        if code in (1, 2) or error.get("is_transient") is True or (status is not None and status >= 500):
            retry_at = (
                parse_retry_after(response.headers.get("retry-after"), self._now()) if response is not None else None
            )
            return TransientPublishError(message, status=status, code=code, retry_at=retry_at)
        return PermanentPublishError(message, status=status, code=code)

    def _throttled_until(self, response: requests.Response | None) -> datetime | None:
        """When Graph says access comes back (business use case header, or Retry-After); None leaves it to backoff."""
        if response is None:
            return None
        minutes = _regain_minutes(response.headers.get("x-business-use-case-usage"))
        if minutes:
            return self._now() + timedelta(minutes=minutes)
        return parse_retry_after(response.headers.get("retry-after"), self._now())


def _regain_minutes(header: str | None) -> int | None:
    """The longest estimated_time_to_regain_access (minutes) in X-Business-Use-Case-Usage."""
    if not header:
        return None
    try:
        usage = json.loads(header)
    except ValueError:
        return None
    longest = 0
    if isinstance(usage, Mapping):
        for entries in usage.values():
            for entry in entries if isinstance(entries, list) else ():
                value = entry.get("estimated_time_to_regain_access") if isinstance(entry, Mapping) else None
                if isinstance(value, int) and value > longest:
                    longest = value
    return longest or None


def _is_same_post(item: Mapping[str, Any], post: Post) -> bool:
    """A Page post is ours when it shares our link (attachment or text) or carries our exact text."""
    message = str(item.get("message") or "")
    if post.link and post.link in message:
        return True
    if post.text.strip() and message.strip() == post.text.strip():
        return True
    attachments = item.get("attachments")
    for attachment in (attachments.get("data") or ()) if isinstance(attachments, Mapping) else ():
        if isinstance(attachment, Mapping) and post.link in (attachment.get("unshimmed_url"), attachment.get("url")):
            return True
    return False
