"""The X (Twitter) channel: posts, threads and images through the v2 API with tweepy.

It sends a ``Post`` and returns proof (``Published``), translating tweepy and
requests errors into ``PublishError`` subclasses; it never touches the store
or decides retries. Secrets never appear in what it raises or logs.
"""

from __future__ import annotations

import html
import logging
import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import requests
import tweepy

from bot.channels.images import fetch_image
from bot.channels.transport import HostAdapter, never_sent, redact, settle_environment
from bot.clock import utc_now
from bot.errors import AuthPublishError, PermanentPublishError, PublishError, TransientPublishError
from bot.records import Post, Published
from bot.settings import Settings
from bot.sources.fetch import parse_retry_after

log = logging.getLogger(__name__)

#: the host tweepy 4.17 hard-codes; our adapter sends it to TWITTER_API_BASE_URL
TWEEPY_HOST = "https://api.twitter.com/"

#: post_id of a post reconciled by re-sending whose id X did not tell (reconcile_read off, or not found)
UNKNOWN_POST_ID = "unknown (duplicate confirmed)"

#: a reconciliation reads at most READ_PAGES pages of READ_PAGE_SIZE posts (X's largest page) back to the queue time
READ_PAGES = 10
READ_PAGE_SIZE = 100
READ_CLOCK_MARGIN = timedelta(minutes=5)

_DUPLICATE = "duplicate content"
_URL = re.compile(r"https?://\S+", re.IGNORECASE)
#: X's problem types that mean the app or account may not post at all (not this post's fault)
_PERMISSION_PROBLEMS = (
    "oauth1-permissions",
    "client-forbidden",
    "unsupported-authentication",
    "not-authorized-for-resource",
)


class TwitterPublisher:
    """Publishes posts on X with OAuth 1.0a user context."""

    channel = "twitter"
    live = True

    def __init__(
        self,
        settings: Settings,
        *,
        session: requests.Session | None = None,
        now: Callable[[], datetime] = utc_now,
        http: httpx.Client | None = None,
    ) -> None:
        env = settings.env
        self._settings = settings
        self._now = now
        self._secrets = settings.secrets()
        self._http = http
        self._client = tweepy.Client(
            consumer_key=env.twitter_api_key,
            consumer_secret=env.twitter_api_secret,
            access_token=env.twitter_access_token,
            access_token_secret=env.twitter_access_token_secret,
        )
        if session is not None:
            self._client.session = session
        self._adapter = HostAdapter(TWEEPY_HOST, env.twitter_api_base_url, timeout=settings.twitter.timeout_seconds)
        self._client.session.mount(TWEEPY_HOST, self._adapter)
        settle_environment(self._client.session)

    # ---- the Publisher interface ----

    def publish(self, post: Post) -> Published:
        media_ids = self._media_ids(post)
        first_id = self._create(post.text, media_ids=media_ids)
        return self._finish_thread(first_id, post)

    def reconcile(self, post: Post, *, since: datetime | None = None) -> Published | None:
        """Proof from the account's own posts since the delivery was queued (`since`).

        Found there: sent, with its id. Positively absent (every post back to `since` was
        read): sent fresh now. Otherwise (no `since`, the read stopped short): None, for the
        operator. Re-sending the identical text and taking X's "duplicate content" refusal as
        proof is only a fallback the operator turns on (`reconcile_resend`): X does not
        guarantee that check, and when it does not fire the re-send is a second post.
        """
        if self._settings.twitter.reconcile_resend:
            return self._reconcile_by_resend(post)
        timeline = self._read_timeline(since)
        found = timeline.find(post)
        if found is not None:
            log.info("X timeline shows the post is out: %s", found)
            return self._finish_thread(found, post, reconciling=True, timeline=timeline)
        if timeline.complete:
            log.info("X timeline since %s does not hold the post: sending it now", since)
            return self.publish(post)
        log.warning("X timeline read stopped before %s without finding the post: no proof either way", since)
        return None

    def _reconcile_by_resend(self, post: Post) -> Published | None:
        """The fallback: send the identical text again; X refuses it as a duplicate when the first one went out."""
        try:
            # The image is uploaded again (an upload is not a post): if the text was never
            # out, the post that goes out now is the same one publish would have made.
            first_id = self._create(post.text, media_ids=self._media_ids(post))
        except PermanentPublishError as exc:
            if not exc.duplicate:
                raise
            log.info("X confirms the post is already out (duplicate content)")
            found = self._find_own_post(post.text) if self._settings.twitter.reconcile_read else None
            if found is None:
                if post.replies:
                    log.warning(
                        "X thread reconciled without the first post's id: its replies cannot be checked or completed"
                    )
                return Published(post_id=UNKNOWN_POST_ID)
            return self._finish_thread(found, post, reconciling=True)
        # Accepted now, so it had not gone out before: exactly one post exists.
        return self._finish_thread(first_id, post)

    def check(self) -> str:
        try:
            response = self._client.get_me(user_auth=True)
        except tweepy.HTTPException as exc:
            raise self._translate(exc, "X refused the credentials check") from None
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None
        username = getattr(response.data, "username", None) if response is not None else None
        if not username:
            raise TransientPublishError("X answered the credentials check without a user", status=200, code=None)
        return f"ok: @{username}"

    # ---- posting ----

    def _create(self, text: str, *, reply_to: str | None = None, media_ids: Sequence[str] = ()) -> str:
        try:
            response = self._client.create_tweet(
                text=text,
                in_reply_to_tweet_id=reply_to,
                media_ids=list(media_ids) or None,
                user_auth=True,
            )
        except tweepy.HTTPException as exc:
            raise self._translate(exc, "X refused the post") from None
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None
        data: Any = response.data if response is not None else None
        post_id = data.get("id") if isinstance(data, dict) else None
        if not post_id:
            # A 2xx without an id: it may well be out; say so, reconciliation will tell.
            raise TransientPublishError(
                "X accepted the post but returned no id (it may be out)", status=201, code=None, maybe_sent=True
            )
        return str(post_id)

    def _finish_thread(
        self, first_id: str, post: Post, *, reconciling: bool = False, timeline: Timeline | None = None
    ) -> Published:
        """Post the replies of a thread after its first post; a failed reply never undoes the first."""
        reply_ids: list[str] = []
        previous = first_id
        for number, text in enumerate(post.replies, start=1):
            already = timeline.reply(previous, text) if timeline is not None else None
            if already is not None:
                # This reply went out before the crash (the timeline shows it): continue after it.
                previous = already
                reply_ids.append(previous)
                continue
            try:
                try:
                    previous = self._create(text, reply_to=previous)
                except PermanentPublishError as exc:
                    if not (reconciling and exc.duplicate):
                        raise
                    # This reply went out before the crash: find it to continue the chain after it.
                    found = self._find_own_post(text)
                    if found is None:
                        raise
                    previous = found
            except PublishError as exc:
                # Raising now would have the post retried and refused as a duplicate:
                # the first post is out, so report it, with the replies made so far.
                log.warning("X thread %s stopped at reply %d of %d: %s", first_id, number, len(post.replies), exc)
                break
            reply_ids.append(previous)
        return Published(post_id=first_id, url=status_url(first_id), reply_ids=tuple(reply_ids))

    # ---- images ----

    def _media_ids(self, post: Post) -> list[str]:
        """The uploaded image's id, or none: an image never stops the text post."""
        if not (self._settings.twitter.images and post.image_url):
            return []
        try:
            data, media_type = fetch_image(post.image_url, self._settings, self._http_client())
            return [self._upload(data, media_type)]
        except PublishError as exc:
            log.warning("X post goes out without its image: %s", redact(str(exc), self._secrets))
            return []

    def _upload(self, data: bytes, media_type: str) -> str:
        """POST /2/media/upload (tweepy 4.17 has no v2 upload), signed like every other call."""
        auth = tweepy.OAuth1UserHandler(
            self._client.consumer_key,
            self._client.consumer_secret,
            self._client.access_token,
            self._client.access_token_secret,
        ).apply_auth()
        try:
            response = self._client.session.post(
                TWEEPY_HOST + "2/media/upload",
                files={"media": ("image", data, media_type)},
                data={"media_category": "tweet_image", "media_type": media_type},
                auth=auth,
            )
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None
        if response.status_code not in (200, 201, 202):
            raise PermanentPublishError(
                f"X refused the image upload ({response.status_code})", status=response.status_code, code=None
            )
        try:
            media_id = response.json()["data"]["id"]
        except (ValueError, KeyError, TypeError):
            raise PermanentPublishError(
                "X answered the image upload without a media id", status=response.status_code, code=None
            ) from None
        return str(media_id)

    def _http_client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=self._settings.render.image_timeout_seconds)
        return self._http

    # ---- reading back (reconciliation) ----

    def _find_own_post(self, text: str) -> str | None:
        """The id of the account's recent post with this text (X rewrites links to t.co, so match what precedes
        them)."""
        try:
            me = self._client.get_me(user_auth=True)
            user_id = me.data.id
            timeline = self._client.get_users_tweets(user_id, max_results=20, user_auth=True)
        except tweepy.HTTPException as exc:
            log.warning("X timeline not readable for reconciliation: %s", self._translate(exc, "X refused the read"))
            return None
        except requests.RequestException as exc:
            log.warning("X timeline not readable for reconciliation: %s", self._unreachable(exc))
            return None
        except AttributeError:
            return None
        wanted = _comparable(text)
        if not wanted:
            return None
        for tweet in timeline.data or ():
            if _comparable(html.unescape(str(tweet.text))) == wanted:
                return str(tweet.id)
        return None

    def _read_timeline(self, since: datetime | None) -> Timeline:
        """The account's posts since `since` (GET /2/users/:id/tweets), page by page, up to READ_PAGES pages.

        Errors are raised as publish would raise them: a refused read pauses the channel (auth)
        or is tried again later (transient), never taken as "absent".
        """
        tweets: list[Any] = []
        try:
            me = self._client.get_me(user_auth=True)
            user_id = me.data.id
            token: str | None = None
            for _ in range(READ_PAGES):
                page = self._client.get_users_tweets(
                    user_id,
                    max_results=READ_PAGE_SIZE,
                    # A few minutes early: our clock and X's need not agree, and reading more is harmless.
                    start_time=since - READ_CLOCK_MARGIN if since is not None else None,
                    pagination_token=token,
                    exclude=["retweets"],
                    tweet_fields=["entities", "referenced_tweets", "created_at"],
                    user_auth=True,
                )
                tweets.extend(page.data or ())
                token = (page.meta or {}).get("next_token")
                if not token:
                    break
        except tweepy.HTTPException as exc:
            raise self._translate(exc, "X refused the timeline read") from None
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None
        log.info(
            "X timeline read for reconciliation: %d posts (about $%.3f at $%.3f/post read)",
            len(tweets),
            len(tweets) * self._settings.twitter.read_price,
            self._settings.twitter.read_price,
        )
        # Only a read that reached back to `since` (no page left) can show that a post is absent.
        return Timeline(tuple(tweets), complete=since is not None and not token)

    # ---- errors ----

    def _translate(self, exc: tweepy.HTTPException, what: str) -> PublishError:
        response = exc.response
        status: int = response.status_code
        body = _json_body(response)
        detail = str(body.get("detail") or "; ".join(str(m) for m in exc.api_messages) or response.reason or "")
        problem = str(body.get("type") or "")
        code = exc.api_codes[0] if exc.api_codes and isinstance(exc.api_codes[0], int) else None
        message = redact(f"{what} ({status}): {detail}".rstrip(": "), self._secrets)
        if status == 429:
            reset = getattr(exc, "reset_time", None)
            retry_at = datetime.fromtimestamp(reset, UTC) if isinstance(reset, int) else None
            return TransientPublishError(message + " (rate limit)", status=status, code=code, retry_at=retry_at)
        if status == 401:
            return AuthPublishError(
                f"X rejected the credentials ({status}): renew TWITTER_ACCESS_TOKEN / TWITTER_ACCESS_TOKEN_SECRET"
                " (or check TWITTER_API_KEY / TWITTER_API_SECRET)",
                status=status,
                code=code,
            )
        if status == 403:
            if _DUPLICATE in detail.lower():
                return PermanentPublishError(message, status=status, code=code, duplicate=True)
            if any(p in problem for p in _PERMISSION_PROBLEMS):
                return AuthPublishError(
                    message + " — the app needs Read and Write permission and tokens issued after it was set",
                    status=status,
                    code=code,
                )
            return PermanentPublishError(message, status=status, code=code)
        if status >= 500 or status == 408:
            retry_at = parse_retry_after(response.headers.get("retry-after"), self._now())
            return TransientPublishError(message, status=status, code=code, retry_at=retry_at)
        return PermanentPublishError(message, status=status, code=code)

    def _unreachable(self, exc: requests.RequestException) -> TransientPublishError:
        # requests' texts can quote URLs and headers: keep only the kind of failure.
        kind = "timed out" if isinstance(exc, requests.Timeout) else f"unreachable ({type(exc).__name__})"
        unsent = never_sent(exc)
        return TransientPublishError(
            redact(
                f"X API {kind}" + ("; nothing was sent" if unsent else "; the post may or may not have gone out"),
                self._secrets,
            ),
            status=None,
            code=None,
            maybe_sent=not unsent,
        )


class Timeline:
    """The account's recent posts as read back, to find one of ours by its link or its text."""

    def __init__(self, tweets: Sequence[Any], *, complete: bool) -> None:
        self.tweets = tweets
        #: every post back to the delivery's queue time was read: what is not here was never posted
        self.complete = complete

    def find(self, post: Post) -> str | None:
        """The id of the (first) post announcing this summary: its link among the post's links, else its text."""
        wanted = _comparable(post.text)
        for tweet in self.tweets:
            if post.link and post.link in _expanded_urls(tweet):
                return str(tweet.id)
        for tweet in self.tweets:
            if wanted and _comparable(html.unescape(str(tweet.text))) == wanted and _replied_to(tweet) is None:
                return str(tweet.id)
        return None

    def reply(self, parent: str, text: str) -> str | None:
        """The id of a post replying to `parent` with this text, if one is here."""
        wanted = _comparable(text)
        for tweet in self.tweets:
            if _replied_to(tweet) == parent and _comparable(html.unescape(str(tweet.text))) == wanted:
                return str(tweet.id)
        return None


def _expanded_urls(tweet: Any) -> set[str]:
    entities = getattr(tweet, "entities", None) or {}
    return {
        str(u.get("expanded_url")) for u in entities.get("urls", ()) if isinstance(u, dict) and u.get("expanded_url")
    }


def _replied_to(tweet: Any) -> str | None:
    for ref in getattr(tweet, "referenced_tweets", None) or ():
        if getattr(ref, "type", None) == "replied_to":
            return str(ref.id)
    return None


def status_url(post_id: str) -> str:
    """A post's public URL without knowing the account's name."""
    return f"https://x.com/i/web/status/{post_id}"


def _comparable(text: str) -> str:
    """The part of a post's text before its first link, normalised as X stores it."""
    text = unicodedata.normalize("NFC", text)
    match = _URL.search(text)
    head = text[: match.start()] if match else text
    return " ".join(head.split())


def _json_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
