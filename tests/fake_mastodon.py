"""A local stand-in for a Mastodon instance's REST API, for tests.

Answers as Mastodon documents: ``GET /api/v2/instance`` (the status limits
under ``configuration.statuses``), ``GET /api/v1/accounts/verify_credentials``,
``POST /api/v1/statuses`` (form or JSON; an ``Idempotency-Key`` seen within
the hour gets the original status back and makes none; 422 for a blank or
too long text, as ``StatusLengthValidator`` counts it), ``GET
/api/v1/accounts/:id/statuses`` (newest first, ``limit`` ≤ 40, ``max_id``,
``Link`` header), ``POST /api/v2/media`` (200 for an image, or 202 with
``url`` null while ``process_polls`` polls of ``GET /api/v1/media/:id`` answer
206). A bearer token other than ``token`` gets 401. Faults from tests/fake_x.py
(``Fault``) make it misbehave: 429 with X-RateLimit-Reset, 5xx, 401, 422, a
dropped connection, an answer held back after the status was made.

Every request is kept in ``.requests`` (headers and body), every status in
``.statuses``, every upload in ``.media``. Run as a process:
``python tests/fake_mastodon.py --port 0 [--token T] [--delay S]`` prints the
port; control it as tests/fake_x.py describes.
"""

from __future__ import annotations

import argparse
import html
import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from fake_x import Answer, FakeHTTPServer, Fault, Recorded, json_answer, serve_main
from twitter_text import extract_urls_with_indices

#: how long Mastodon keeps an Idempotency-Key (PostStatusService: redis setex 3600)
IDEMPOTENCY_SECONDS = 3600
_ACCOUNT_STATUSES = re.compile(r"/api/v1/accounts/([^/]+)/statuses/?")
_MEDIA = re.compile(r"/api/v1/media/([^/]+)/?")


def mastodon_length(text: str, spoiler_text: str = "", url_characters: int = 23) -> int:
    """StatusLengthValidator's count, in code points (Mastodon counts grapheme clusters: never more).

    The content warning as it is, plus the stripped text in which each URL the
    extractor finds (twitter-text's, protocol required) counts `url_characters`.
    """
    text = text.strip()
    total, pos = len(spoiler_text), 0
    for url in extract_urls_with_indices(text, extract_urls_without_protocol=False):
        start, end = url["indices"]
        total += len(text[pos:start]) + url_characters
        pos = end
    return total + len(text[pos:])


def status_html(text: str) -> str:
    """A status's text as Mastodon's API gives it: paragraphs, escaped, links as anchors with shortened labels."""
    out: list[str] = []
    for paragraph in text.strip().split("\n\n"):
        parts, pos = [], 0
        for url in extract_urls_with_indices(paragraph, extract_urls_without_protocol=False):
            start, end = url["indices"]
            target = paragraph[start:end]
            parts.append(html.escape(paragraph[pos:start], quote=False))
            scheme, _, rest = target.partition("://")
            parts.append(
                f'<a href="{html.escape(target)}" rel="nofollow noopener" target="_blank">'
                f'<span class="invisible">{html.escape(scheme)}://</span><span '
                f'class="ellipsis">{html.escape(rest[:30])}</span>'
                f'<span class="invisible">{html.escape(rest[30:])}</span></a>'
            )
            pos = end
        parts.append(html.escape(paragraph[pos:], quote=False))
        out.append("<p>" + "".join(parts).replace("\n", "<br />") + "</p>")
    return "".join(out)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def error(status: int, message: str) -> Answer:
    return json_answer(status, {"error": message})


def rate_limited(reset: datetime, *, path: str = "/api/v1/statuses", method: str = "POST") -> Fault:
    """429 as Mastodon sends it: X-RateLimit-Reset an ISO 8601 time."""
    return Fault(
        status=429,
        body={"error": "Too many requests"},
        headers={"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": iso(reset)},
        path=path,
        method=method,
    )


def server_error(status: int = 503, *, path: str = "/api/v1/statuses", method: str = "POST") -> Fault:
    return Fault(status=status, body="<html><body>Service Unavailable</body></html>", path=path, method=method)


def unauthorized(*, path: str = "/api/v1/statuses", method: str = "POST") -> Fault:
    return Fault(status=401, body={"error": "The access token is invalid"}, path=path, method=method)


def unprocessable(message: str = "Validation failed: Text character limit of 500 exceeded") -> Fault:
    return Fault(status=422, body={"error": message}, path="/api/v1/statuses")


def held() -> Fault:
    """Make the status, then keep the answer back until ``release()``: a client killed meanwhile never learns it."""
    return Fault(path="/api/v1/statuses", hold=True)


class FakeMastodon(FakeHTTPServer):
    """A Mastodon instance's REST API as far as the bot uses it."""

    name = "fake-mastodon"

    def __init__(
        self,
        *,
        port: int = 0,
        delay: float = 0.0,
        keep_alive: bool = False,
        token: str = "token",
        max_characters: int | None = 500,
        clock: Any = None,
    ) -> None:
        super().__init__(port=port, delay=delay, keep_alive=keep_alive)
        self.token = token
        #: the instance's limit; None: no /api/v2/instance (404, as an older server)
        self.max_characters = max_characters
        #: polls of GET /api/v1/media/:id that answer 206 before an upload is processed (0: at once, 200)
        self.process_polls = 0
        self.clock = clock or (lambda: datetime.now(UTC))
        self.account: dict[str, Any] = {
            "id": "109000000000000001",
            "username": "shortscience",
            "acct": "shortscience",
            "display_name": "ShortScience.org",
            "url": "http://mastodon.test/@shortscience",
        }
        self.statuses: list[dict[str, Any]] = []
        self.media: list[dict[str, Any]] = []
        self._keys: dict[str, tuple[str, datetime]] = {}
        self._ids = itertools.count(110_000_000_000_000_001)

    def _reset_state(self) -> None:
        self.statuses.clear()
        self.media.clear()
        self._keys.clear()

    def posts_json(self) -> list[Any]:
        return list(self.statuses)

    def add_status(self, text: str, *, created_at: datetime | None = None) -> dict[str, Any]:
        """A status made elsewhere (by hand, another app), for reconciliation tests."""
        with self.lock:
            return self._make(text, {}, [], created_at or self.clock())

    # ---- answering ----

    def answer(self, request: Recorded) -> Answer:
        path = request.path.rstrip("/") or "/"
        if request.method == "GET" and path == "/api/v2/instance":
            return self._instance()
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return error(401, "The access token is invalid")
        with self.lock:
            if request.method == "POST" and path == "/api/v1/statuses":
                return self._post_status(request)
            if request.method == "POST" and path == "/api/v2/media":
                return self._upload(request)
            if request.method == "GET" and path == "/api/v1/accounts/verify_credentials":
                return json_answer(200, {**self.account, "source": {"privacy": "public", "language": "en"}})
            match = _ACCOUNT_STATUSES.fullmatch(request.path)
            if request.method == "GET" and match:
                return self._timeline(request, match.group(1))
            match = _MEDIA.fullmatch(request.path)
            if request.method == "GET" and match:
                return self._media_state(match.group(1))
        return error(404, "Record not found")

    def _instance(self) -> Answer:
        if self.max_characters is None:
            return error(404, "Record not found")
        return json_answer(
            200,
            {
                "domain": "mastodon.test",
                "title": "Fake Mastodon",
                "version": "4.3.0",
                "configuration": {
                    "statuses": {
                        "max_characters": self.max_characters,
                        "max_media_attachments": 4,
                        "characters_reserved_per_url": 23,
                    },
                    "media_attachments": {
                        "description_limit": 1500,
                        "supported_mime_types": ["image/png", "image/jpeg", "image/gif"],
                    },
                },
            },
        )

    def _params(self, request: Recorded) -> dict[str, list[str]]:
        if request.headers.get("content-type", "").startswith("application/json"):
            raw = request.json() or {}
            return {
                k: [str(x) for x in v] if isinstance(v, list) else [str(v)] for k, v in raw.items() if v is not None
            }
        if request.headers.get("content-type", "").startswith("multipart/"):
            return {k: [v] for k, v in request.form().items()}
        return parse_qs(request.body.decode("utf-8"), keep_blank_values=True)

    def _post_status(self, request: Recorded) -> Answer:
        now = self.clock()
        key = request.headers.get("idempotency-key")
        if key and key in self._keys:
            status_id, at = self._keys[key]
            if now - at < timedelta(seconds=IDEMPOTENCY_SECONDS):
                original = next((s for s in self.statuses if s["id"] == status_id), None)
                return json_answer(200, original) if original else error(404, "Record not found")
        params = self._params(request)
        text = (params.get("status") or [""])[0]
        spoiler = (params.get("spoiler_text") or [""])[0]
        media_ids = params.get("media_ids[]") or params.get("media_ids") or []
        visibility = (params.get("visibility") or ["public"])[0]
        if visibility not in ("public", "unlisted", "private", "direct"):
            return error(422, "Validation failed: Visibility is not included in the list")
        media = [m for m in self.media if m["id"] in media_ids]
        if len(media) != len(media_ids):
            return error(422, "Validation failed: Media attachments are invalid")
        if any(m["url"] is None for m in media):
            return error(422, "Cannot attach files that have not finished processing. Try again in a moment!")
        if not text.strip() and not media:
            return error(422, "Validation failed: Text can't be blank")
        limit = self.max_characters or 500
        if mastodon_length(text, spoiler) > limit:
            return error(422, f"Validation failed: Text character limit of {limit} exceeded")
        status = self._make(text, params, media, now)
        if key:
            self._keys[key] = (status["id"], now)
        return json_answer(200, status)

    def _make(
        self, text: str, params: dict[str, list[str]], media: list[dict[str, Any]], now: datetime
    ) -> dict[str, Any]:
        status_id = str(next(self._ids))
        spoiler = (params.get("spoiler_text") or [""])[0]
        status = {
            "id": status_id,
            "created_at": iso(now),
            "in_reply_to_id": None,
            "sensitive": bool(spoiler),
            "spoiler_text": spoiler,
            "visibility": (params.get("visibility") or ["public"])[0],
            "language": (params.get("language") or [None])[0],
            "uri": f"http://mastodon.test/users/shortscience/statuses/{status_id}",
            "url": f"http://mastodon.test/@shortscience/{status_id}",
            "content": status_html(text),
            "account": self.account,
            "media_attachments": [self._media_json(m) for m in media],
            "mentions": [],
            "tags": [],
            "emojis": [],
            "reblog": None,
            # not in Mastodon's answer: what the stand-in was sent, for tests
            "_text": text,
        }
        self.statuses.append(status)
        return status

    def _timeline(self, request: Recorded, account_id: str) -> Answer:
        if account_id != self.account["id"]:
            return error(404, "Record not found")
        limit = min(int((request.query.get("limit") or ["20"])[0]), 40)
        max_id = (request.query.get("max_id") or [None])[0]
        newest_first = sorted(self.statuses, key=lambda s: int(s["id"]), reverse=True)
        if max_id is not None:
            newest_first = [s for s in newest_first if int(s["id"]) < int(max_id)]
        page = newest_first[:limit]
        headers = {}
        if page:
            base = f"{self.url}/api/v1/accounts/{account_id}/statuses"
            headers["Link"] = (
                f'<{base}?max_id={page[-1]["id"]}>; rel="next", <{base}?min_id={page[0]["id"]}>; rel="prev"'
            )
        return json_answer(200, [{k: v for k, v in s.items() if not k.startswith("_")} for s in page], headers)

    def _upload(self, request: Recorded) -> Answer:
        parts = request.parts()
        if "file" not in parts:
            return error(422, "Validation failed: File can't be blank")
        media_id = str(next(self._ids))
        ready = self.process_polls == 0
        record = {
            "id": media_id,
            "bytes": parts["file"],
            "description": parts.get("description", b"").decode("utf-8"),
            "url": f"http://mastodon.test/media/{media_id}.png" if ready else None,
            "polls_left": self.process_polls,
        }
        self.media.append(record)
        return json_answer(200 if ready else 202, self._media_json(record))

    def _media_state(self, media_id: str) -> Answer:
        record = next((m for m in self.media if m["id"] == media_id), None)
        if record is None:
            return error(404, "Record not found")
        if record["url"] is None:
            record["polls_left"] -= 1
            if record["polls_left"] > 0:
                return json_answer(206, self._media_json(record))
            record["url"] = f"http://mastodon.test/media/{media_id}.png"
        return json_answer(200, self._media_json(record))

    @staticmethod
    def _media_json(record: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": record["id"],
            "type": "image",
            "url": record["url"],
            "preview_url": record["url"],
            "description": record["description"] or None,
            "blurhash": None,
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds every answer takes")
    parser.add_argument("--keep-alive", action="store_true", help="HTTP/1.1 with persistent connections")
    parser.add_argument("--token", default="token", help="the access token it accepts")
    parser.add_argument("--max-characters", type=int, default=500)
    args = parser.parse_args(argv)
    serve_main(
        FakeMastodon(
            port=args.port,
            delay=args.delay,
            keep_alive=args.keep_alive,
            token=args.token,
            max_characters=args.max_characters,
        )
    )


if __name__ == "__main__":
    main()
