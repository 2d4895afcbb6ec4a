"""A local stand-in for the X API v2 (and the base of the Graph stand-in), for tests.

A threaded http.server on 127.0.0.1 that answers as X documents:
``POST /2/tweets`` (201, rate-limit headers, 403 for a repeat of identical
text), ``GET /2/users/me``, ``GET /2/users/:id/tweets`` (links rewritten to
t.co with ``entities.urls`` expanding them, text HTML-escaped, newest first,
``start_time``/``end_time``, pages of ``max_results`` 5-100 with
``meta.next_token``, as X returns it) and ``POST /2/media/upload``. A
queue of faults makes it misbehave (429, 403 duplicate, 401, 503, a dropped
connection after the post was made, a slow answer, an answer held back after
the post was made until the test releases it). Every request is kept in
``.requests``; every post made in ``.posts``.

Use it in-process (``with FakeX() as x: ...``) or as a process:
``python tests/fake_x.py --port 0 [--delay S] [--keep-alive]`` prints the port,
then serves (every answer S seconds after the request arrived, as a remote API
would take); control it over
HTTP: ``POST /_fake/faults`` (a JSON fault), ``GET /_fake/requests``,
``GET /_fake/posts``, ``GET /_fake/held``, ``POST /_fake/release``,
``POST /_fake/reset``.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import html
import itertools
import json
import re
import struct
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

#: what X says for a repeat of identical text (its detail, verbatim)
DUPLICATE_DETAIL = "You are not allowed to create a Tweet with duplicate content."


@dataclass
class Recorded:
    """One request the stand-in received."""

    method: str
    #: the path without the query string
    path: str
    query: dict[str, list[str]]
    #: header names lower-cased
    headers: dict[str, str]
    body: bytes
    #: time.monotonic() when the request arrived
    at: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        """Fields of an urlencoded or multipart body (file parts as latin-1 text)."""
        content_type = self.headers.get("content-type", "")
        if content_type.startswith("multipart/"):
            return {name: value.decode("latin-1") for name, value in self.parts().items()}
        return {k: v[0] for k, v in parse_qs(self.body.decode("utf-8"), keep_blank_values=True).items()}

    def parts(self) -> dict[str, bytes]:
        """The raw parts of a multipart body, by field name."""
        content_type = self.headers.get("content-type", "")
        raw = f"Content-Type: {content_type}\r\n\r\n".encode() + self.body
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        out: dict[str, bytes] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                out[name] = payload
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body.decode("utf-8", "replace"),
            "at": self.at,
        }


@dataclass
class Fault:
    """One misbehaviour, used by the next request that matches it."""

    #: HTTP status of the answer (ignored when `drop` is set)
    status: int = 503
    #: the JSON body (a dict), or a str sent as text/html
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: method and path prefix of the requests it applies to
    method: str = "POST"
    path: str = "/2/tweets"
    #: carry out the request (post it) first, then answer with the fault
    after_effect: bool = False
    #: close the connection without any answer
    drop: bool = False
    #: seconds to wait before answering
    delay: float = 0.0
    #: matching requests to let through untouched before this fault applies
    skip: int = 0
    #: after the effect, keep the answer back until ``release()``: the client waits
    #: in the window between the server's accept and its own commit (crash tests kill it there)
    hold: bool = False


Answer = tuple[int, dict[str, str], bytes]
DROP: Answer = (0, {}, b"")


def json_answer(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, json.dumps(body).encode()


class FakeHTTPServer:
    """A threaded HTTP server on 127.0.0.1 that records every request; subclasses answer them."""

    name = "fake"

    def __init__(self, *, port: int = 0, delay: float = 0.0, keep_alive: bool = False) -> None:
        self._port = port
        #: seconds every answer takes (a remote API's latency), faults' own delays come on top
        self.delay = delay
        #: HTTP/1.1 with persistent connections (HTTP/1.0, one request per connection, otherwise)
        self.keep_alive = keep_alive
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.lock = threading.RLock()
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        #: static answers by path (images for attachment tests): (status, content type, body)
        self.files: dict[str, tuple[int, str, bytes]] = {}
        #: requests whose answer a `hold` fault keeps back right now
        self.held = 0
        self._release = threading.Event()

    # ---- life ----

    def start(self) -> FakeHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", self._port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{self.name}-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    # ---- control ----

    def fail(self, fault: Fault, times: int = 1) -> None:
        with self.lock:
            self.faults.extend(replace(fault) for _ in range(times))

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.faults.clear()
            self._reset_state()

    def release(self) -> None:
        """Let every held answer go (to a client that may be dead by now)."""
        self._release.set()

    def _hold(self) -> None:
        with self.lock:
            self.held += 1
        try:
            self._release.wait()
        finally:
            with self.lock:
                self.held -= 1

    def _reset_state(self) -> None:
        """Forget posts (subclasses)."""

    def requests_to(self, method: str, path: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for i, fault in enumerate(self.faults):
                if fault.method == method and path.startswith(fault.path):
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    return self.faults.pop(i)
        return None

    # ---- answering ----

    def answer(self, request: Recorded) -> Answer:
        raise NotImplementedError

    def posts_json(self) -> list[Any]:
        return []

    def dispatch(self, request: Recorded) -> Answer:
        if request.path.startswith("/_fake/"):
            return self._control(request)
        with self.lock:
            self.requests.append(request)
        if request.method == "GET" and request.path in self.files:
            status, content_type, body = self.files[request.path]
            return status, {"Content-Type": content_type}, body
        answer = self._answer_or_fault(request)
        if self.delay:
            # `delay` after the request arrived: the stand-in's own work is not charged to the client.
            time.sleep(max(0.0, request.at + self.delay - time.monotonic()))
        return answer

    def _answer_or_fault(self, request: Recorded) -> Answer:
        fault = self._take_fault(request.method, request.path)
        if fault is None:
            return self.answer(request)
        if fault.after_effect or fault.hold:
            effect = self.answer(request)
            if fault.hold:
                self._hold()
                return effect
        if fault.delay:
            time.sleep(fault.delay)
        if fault.drop:
            return DROP
        if isinstance(fault.body, str):
            return fault.status, {"Content-Type": "text/html", **fault.headers}, fault.body.encode()
        if fault.body is None:
            return fault.status, dict(fault.headers), b""
        return json_answer(fault.status, fault.body, fault.headers)

    def _control(self, request: Recorded) -> Answer:
        if request.method == "POST" and request.path == "/_fake/faults":
            raw = request.json()
            self.fail(Fault(**{k: v for k, v in raw.items() if k != "times"}), times=int(raw.get("times", 1)))
            return json_answer(200, {"faults": len(self.faults)})
        if request.method == "POST" and request.path == "/_fake/reset":
            self.reset()
            return json_answer(200, {"ok": True})
        if request.method == "POST" and request.path == "/_fake/release":
            self.release()
            return json_answer(200, {"ok": True})
        if request.path == "/_fake/held":
            with self.lock:
                return json_answer(200, {"held": self.held})
        if request.path == "/_fake/requests":
            with self.lock:
                return json_answer(200, [r.to_json() for r in self.requests])
        if request.path == "/_fake/posts":
            with self.lock:
                return json_answer(200, self.posts_json())
        return json_answer(404, {"error": "unknown control path"})


def _handler_for(fake: FakeHTTPServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # Keep-alive on request, as the real APIs (benchmarks: a new connection per request
        # would count as the client's cost); off by default, so no test leaves sockets open.
        protocol_version = "HTTP/1.1" if fake.keep_alive else "HTTP/1.0"
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and
        # the client's delayed ACK hold the body back 40 ms on a kept-alive connection.
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            at = time.monotonic()
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Recorded(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                at=at,
            )
            status, headers, payload = fake.dispatch(request)
            if status == 0:
                # Vanish without a word: the client sees a dropped connection.
                self.close_connection = True
                return
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first (a timeout test): nobody is listening

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# ---- X ----


def rate_limited(reset: int, *, path: str = "/2/tweets") -> Fault:
    """429 as X sends it: no Retry-After, the reset time in x-rate-limit-reset (epoch seconds)."""
    return Fault(
        status=429,
        body={"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429},
        headers={"x-rate-limit-limit": "100", "x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)},
        path=path,
    )


def duplicate() -> Fault:
    return Fault(
        status=403,
        body={"detail": DUPLICATE_DETAIL, "type": "about:blank", "title": "Forbidden", "status": 403},
    )


def unauthorized(*, method: str = "POST", path: str = "/2/tweets") -> Fault:
    return Fault(
        status=401,
        body={"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"},
        method=method,
        path=path,
    )


def read_only_app() -> Fault:
    """403 for an app whose tokens lack write permission."""
    return Fault(
        status=403,
        body={
            "title": "Unsupported Authentication",
            "detail": (
                "Your client app is not configured with the appropriate oauth1 app permissions for this endpoint."
            ),
            "type": "https://api.twitter.com/2/problems/oauth1-permissions",
            "status": 403,
        },
    )


def server_error(status: int = 503, *, path: str = "/2/tweets", headers: dict[str, str] | None = None) -> Fault:
    return Fault(
        status=status,
        body={"title": "Service Unavailable", "detail": "Service Unavailable", "type": "about:blank", "status": status},
        headers=headers or {},
        path=path,
    )


def bad_request(detail: str = "One or more parameters to your request was invalid.") -> Fault:
    return Fault(
        status=400,
        body={
            "errors": [{"parameters": {"text": [""]}, "message": "Invalid text"}],
            "title": "Invalid Request",
            "detail": detail,
            "type": "https://api.twitter.com/2/problems/invalid-request",
        },
    )


def posted_then_dropped() -> Fault:
    """The post is made, then the connection drops before the answer: the crash case."""
    return Fault(after_effect=True, drop=True)


_TCO = itertools.count(1)
_URL = re.compile(r"https?://\S+")


class FakeX(FakeHTTPServer):
    """X API v2 as far as the bot uses it."""

    name = "fake-x"
    user: ClassVar[dict[str, str]] = {"id": "1", "name": "ShortScience", "username": "shortscience"}

    def __init__(
        self,
        *,
        port: int = 0,
        delay: float = 0.0,
        keep_alive: bool = False,
        consumer_key: str | None = None,
        access_token: str | None = None,
    ) -> None:
        super().__init__(port=port, delay=delay, keep_alive=keep_alive)
        #: when set, requests signed with another key or token get 401 (as X does)
        self.consumer_key = consumer_key
        self.access_token = access_token
        #: every post made: id, text, in_reply_to_tweet_id, media_ids
        self.posts: list[dict[str, Any]] = []
        #: texts of posts[:_indexed], for a duplicate check that stays fast over thousands of posts
        self._texts: set[str] = set()
        self._indexed = 0
        #: every media upload: id, bytes, media_category
        self.media: list[dict[str, Any]] = []
        self._ids = itertools.count(1_900_000_000_000_000_001)
        self._remaining = 100

    def _reset_state(self) -> None:
        self.posts.clear()
        self._texts.clear()
        self._indexed = 0
        self.media.clear()
        self._remaining = 100

    def posts_json(self) -> list[Any]:
        return list(self.posts)

    def _rate_headers(self) -> dict[str, str]:
        self._remaining = max(self._remaining - 1, 0)
        return {
            "x-rate-limit-limit": "100",
            "x-rate-limit-remaining": str(self._remaining),
            "x-rate-limit-reset": str(int(time.time()) + 900),
        }

    def _authorised(self, request: Recorded) -> bool:
        header = request.headers.get("authorization", "")
        if not header.startswith("OAuth ") or "oauth_signature=" not in header:
            return False
        if self.consumer_key is not None and f'oauth_consumer_key="{self.consumer_key}"' not in header:
            return False
        return self.access_token is None or f'oauth_token="{self.access_token}"' in header

    def answer(self, request: Recorded) -> Answer:
        if not self._authorised(request):
            return json_answer(
                401, {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}
            )
        with self.lock:
            if request.method == "POST" and request.path == "/2/tweets":
                return self._create(request)
            if request.method == "POST" and request.path == "/2/media/upload":
                return self._upload(request)
            if request.method == "GET" and request.path == "/2/users/me":
                return json_answer(200, {"data": self.user}, self._rate_headers())
            match = re.fullmatch(r"/2/users/(\w+)/tweets", request.path)
            if request.method == "GET" and match:
                return self._timeline(request, match.group(1))
        return json_answer(
            404, {"title": "Not Found Error", "type": "about:blank", "status": 404, "detail": "no route"}
        )

    def _create(self, request: Recorded) -> Answer:
        body = request.json()
        text = body.get("text") if isinstance(body, dict) else None
        if not text:
            return json_answer(400, bad_request("text is required").body)
        # Tests may append to .posts directly (someone else's post): index those too.
        self._texts.update(p["text"] for p in self.posts[self._indexed :])
        self._indexed = len(self.posts)
        if text in self._texts:
            return json_answer(403, duplicate().body, self._rate_headers())
        post = {
            "id": str(next(self._ids)),
            "text": text,
            "in_reply_to_tweet_id": (body.get("reply") or {}).get("in_reply_to_tweet_id"),
            "media_ids": (body.get("media") or {}).get("media_ids", []),
            "created_at": time.time(),
        }
        self.posts.append(post)
        return json_answer(
            201,
            {"data": {"edit_history_tweet_ids": [post["id"]], "id": post["id"], "text": text}},
            self._rate_headers(),
        )

    def _upload(self, request: Recorded) -> Answer:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return json_answer(
                400, {"title": "Invalid Request", "detail": "multipart/form-data expected", "status": 400}
            )
        parts = request.parts()
        if "media" not in parts:
            return json_answer(400, {"title": "Invalid Request", "detail": "media is required", "status": 400})
        media_id = str(next(self._ids))
        self.media.append(
            {"id": media_id, "bytes": parts["media"], "media_category": parts.get("media_category", b"").decode()}
        )
        return json_answer(
            200,
            {
                "data": {
                    "id": media_id,
                    "media_key": f"3_{media_id}",
                    "size": len(parts["media"]),
                    "expires_after_secs": 86400,
                }
            },
        )

    def _timeline(self, request: Recorded, user_id: str) -> Answer:
        """GET /2/users/:id/tweets as X documents it: newest first, max_results 5-100, start_time /
        end_time (RFC 3339), pagination_token / meta.next_token, tweet.fields (entities with t.co
        links expanded, referenced_tweets, created_at), exclude=retweets,replies."""
        if user_id != self.user["id"]:
            return json_answer(200, {"meta": {"result_count": 0}})
        query = {k: v[0] for k, v in request.query.items()}
        limit = int(query.get("max_results", "10"))
        if not 5 <= limit <= 100:
            message = f"The `max_results` query parameter value [{limit}] is not between 5 and 100"
            return json_answer(
                400,
                {
                    "errors": [{"parameters": {"max_results": [str(limit)]}, "message": message}],
                    "title": "Invalid Request",
                    "detail": "One or more parameters to your request was invalid.",
                    "type": "https://api.twitter.com/2/problems/invalid-request",
                },
            )
        start, end = (_rfc3339(query[k]) if k in query else None for k in ("start_time", "end_time"))
        fields = set(query.get("tweet.fields", "").split(",")) - {""}
        exclude = set(query.get("exclude", "").split(",")) - {""}
        newest = []
        for p in reversed(self.posts):
            created = p.setdefault("created_at", time.time())
            if (start is not None and created < start) or (end is not None and created > end):
                continue
            if "replies" in exclude and p.get("in_reply_to_tweet_id"):
                continue
            newest.append(p)
        offset = int(query.get("pagination_token", "0") or 0)
        page = newest[offset : offset + limit]
        data = [self._tweet_json(p, fields) for p in page]
        meta: dict[str, Any] = {"result_count": len(data)}
        if data:
            meta.update(newest_id=data[0]["id"], oldest_id=data[-1]["id"])
        if offset + limit < len(newest):
            meta["next_token"] = str(offset + limit)
        return json_answer(200, {"data": data, "meta": meta} if data else {"meta": meta}, self._rate_headers())

    def _tweet_json(self, post: dict[str, Any], fields: set[str]) -> dict[str, Any]:
        if "rendered" not in post:
            # Shortened once, when first shown, and the same ever after (as on X).
            post["rendered"], post["urls"] = x_rendering_with_urls(post["text"])
        tweet: dict[str, Any] = {"edit_history_tweet_ids": [post["id"]], "id": post["id"], "text": post["rendered"]}
        if "entities" in fields and post["urls"]:
            tweet["entities"] = {"urls": post["urls"]}
        if "referenced_tweets" in fields and post.get("in_reply_to_tweet_id"):
            tweet["referenced_tweets"] = [{"type": "replied_to", "id": post["in_reply_to_tweet_id"]}]
        if "created_at" in fields:
            tweet["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(post["created_at"]))
        return tweet


def x_rendering(text: str) -> str:
    """A post's text as X's API returns it: links as t.co, and &, <, > escaped."""
    return x_rendering_with_urls(text)[0]


def x_rendering_with_urls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """The text as X returns it, and its `entities.urls` (each t.co link with the URL it stands for)."""
    urls: list[dict[str, Any]] = []
    out: list[str] = []
    last = 0
    for match in _URL.finditer(text):
        out.append(html.escape(text[last : match.start()], quote=False))
        short = f"https://t.co/fake{next(_TCO):06d}"
        at = sum(len(part) for part in out)
        urls.append(
            {
                "start": at,
                "end": at + len(short),
                "url": short,
                "expanded_url": match.group(0),
                "display_url": match.group(0).split("://", 1)[1][:24],
            }
        )
        out.append(short)
        last = match.end()
    out.append(html.escape(text[last:], quote=False))
    return "".join(out), urls


def _rfc3339(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def png(width: int = 1, height: int = 1) -> bytes:
    """A real, minimal PNG (an image for attachment tests)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def serve_main(fake: FakeHTTPServer) -> None:
    """Serve until interrupted, printing the port first (for a test that runs us as a process)."""
    fake.start()
    print(fake.port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds every answer takes")
    parser.add_argument("--keep-alive", action="store_true", help="HTTP/1.1 with persistent connections")
    parser.add_argument("--consumer-key")
    parser.add_argument("--access-token")
    args = parser.parse_args(argv)
    serve_main(
        FakeX(
            port=args.port,
            delay=args.delay,
            keep_alive=args.keep_alive,
            consumer_key=args.consumer_key,
            access_token=args.access_token,
        )
    )


if __name__ == "__main__":
    main()
