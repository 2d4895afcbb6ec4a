"""A local stand-in for the Facebook Graph API (a Page's feed, photos and posts), for tests.

Answers as Graph documents: ``POST /vNN.N/{page}/feed`` → ``{"id": "PAGE_POST"}``,
``POST /vNN.N/{page}/photos`` → ``{"id": PHOTO, "post_id": "PAGE_POST"}``,
``GET /vNN.N/{page}?fields=name,id``, ``GET /vNN.N/{page}/posts`` (newest
first, with attachments' shimmed ``url`` and ``unshimmed_url``). A wrong token
gets error 190, an unknown object error 100 "does not exist"; a queue of
faults sends any other Graph error (HTTP 400 with Graph's error JSON), an
HTML 5xx, a dropped connection, a slow answer or one held back after the post
was made. Every request is kept in ``.requests``; every post made in ``.posts``.

Run as a process: ``python tests/fake_graph.py --port 0 --page-id 123 [--delay S] [--keep-alive]``
prints the port; control it as tests/fake_x.py describes.
"""

from __future__ import annotations

import argparse
import itertools
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fake_x import Answer, FakeHTTPServer, Fault, Recorded, json_answer, serve_main

_VERSIONED = re.compile(r"^/(v\d+\.\d+)/(.*)$")


def graph_error(
    code: int,
    message: str = "An error occurred",
    *,
    subcode: int | None = None,
    type: str = "OAuthException",
    is_transient: bool = False,
    status: int = 400,
    headers: dict[str, str] | None = None,
    path: str = "/",
    method: str = "POST",
    after_effect: bool = False,
) -> Fault:
    """Graph's error answer: HTTP 400 (usually) with {"error": {...}}."""
    error: dict[str, Any] = {
        "message": message,
        "type": type,
        "code": code,
        "is_transient": is_transient,
        "fbtrace_id": "AbCdEfGh",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return Fault(
        status=status,
        body={"error": error},
        headers=headers or {},
        path=path,
        method=method,
        after_effect=after_effect,
    )


def html_error(status: int = 502, *, path: str = "/", method: str = "POST") -> Fault:
    """A proxy's error page, not Graph's JSON."""
    return Fault(status=status, body="<html><body><h1>502 Bad Gateway</h1></body></html>", path=path, method=method)


def posted_then_dropped(path: str = "/") -> Fault:
    """The post is made, then the connection drops before the answer: the crash case."""
    return Fault(after_effect=True, drop=True, path=path)


class FakeGraph(FakeHTTPServer):
    """The Graph API as far as a Page publisher uses it."""

    name = "fake-graph"

    def __init__(
        self,
        *,
        port: int = 0,
        delay: float = 0.0,
        keep_alive: bool = False,
        page_id: str = "123456789",
        page_name: str = "ShortScience",
        access_token: str | None = None,
    ) -> None:
        super().__init__(port=port, delay=delay, keep_alive=keep_alive)
        self.page_id = page_id
        self.page_name = page_name
        #: when set, requests with another token get error 190
        self.access_token = access_token
        #: every post made, newest last: id, kind ("link" | "photo"), message, link, url, created_time, version
        self.posts: list[dict[str, Any]] = []
        self._ids = itertools.count(1001)

    def _reset_state(self) -> None:
        self.posts.clear()

    def posts_json(self) -> list[Any]:
        return list(self.posts)

    def add_post(self, message: str, link: str | None = None) -> str:
        """A post made by someone else on the Page (for reconciliation tests)."""
        with self.lock:
            return self._make_post("link", message, link, "v26.0")

    def _make_post(self, kind: str, message: str, link: str | None, version: str, image_url: str | None = None) -> str:
        post_id = f"{self.page_id}_{next(self._ids)}"
        self.posts.append(
            {
                "id": post_id,
                "kind": kind,
                "message": message,
                "link": link,
                "image_url": image_url,
                "created_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000"),
                "version": version,
            }
        )
        return post_id

    def answer(self, request: Recorded) -> Answer:
        args = request.form() if request.method == "POST" else {k: v[0] for k, v in request.query.items()}
        if "access_token" not in args and request.method == "POST":
            # Graph also takes the token in the query string of a POST.
            args.update({k: v[0] for k, v in request.query.items()})
        headers = {"x-app-usage": '{"call_count":1,"total_cputime":1,"total_time":1}', "facebook-api-version": "v26.0"}
        token = args.get("access_token")
        if not token:
            return self._error(400, 104, "An access token is required to request this resource.", headers)
        if self.access_token is not None and token != self.access_token:
            return self._error(
                400,
                190,
                "Error validating access token: The session has been invalidated because the user changed "
                "their password or Facebook has changed the session for security reasons.",
                headers,
                subcode=460,
            )
        match = _VERSIONED.match(request.path)
        if not match:
            return self._error(400, 2500, "Unknown path components: " + request.path, headers)
        version, rest = match.groups()
        node, _, edge = rest.partition("/")
        if node != self.page_id:
            return self._error(
                400,
                100,
                f"Unsupported {request.method.lower()} request. Object with ID '{node}' does not exist, "
                "cannot be loaded due to missing permissions, or does not support this operation. Please "
                "read the Graph API documentation at https://developers.facebook.com/docs/graph-api",
                headers,
                subcode=33,
            )
        with self.lock:
            if request.method == "POST" and edge == "feed":
                if not args.get("message") and not args.get("link"):
                    return self._error(400, 100, "(#100) Missing message or attachment.", headers)
                post_id = self._make_post("link", args.get("message", ""), args.get("link"), version)
                return json_answer(200, {"id": post_id}, headers)
            if request.method == "POST" and edge == "photos":
                if not args.get("url"):
                    return self._error(400, 324, "(#324) Requires upload file", headers)
                post_id = self._make_post(
                    "photo", args.get("caption") or args.get("message", ""), None, version, args["url"]
                )
                return json_answer(200, {"id": str(next(self._ids)), "post_id": post_id}, headers)
            if request.method == "GET" and edge == "":
                return json_answer(200, {"name": self.page_name, "id": self.page_id}, headers)
            if request.method == "GET" and edge in ("posts", "feed"):
                return json_answer(200, self._listing(request, args), headers)
        return self._error(400, 100, f"Unsupported {request.method.lower()} request.", headers)

    def _listing(self, request: Recorded, args: dict[str, str]) -> dict[str, Any]:
        """Newest first, `limit` (at most 100) a page, `since` (epoch seconds) and the `after` cursor as Graph takes
        them."""
        limit = min(int(args.get("limit", "25")), 100)
        newest = list(reversed(self.posts))
        if "since" in args:
            since = datetime.fromtimestamp(int(args["since"]), UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
            newest = [p for p in newest if p["created_time"] >= since]
        start = int(args["after"].removeprefix("offset-")) if args.get("after", "").startswith("offset-") else 0
        data = []
        for post in newest[start : start + limit]:
            item: dict[str, Any] = {
                "id": post["id"],
                "created_time": post["created_time"],
                "permalink_url": f"https://www.facebook.com/{self.page_id}/posts/{post['id'].split('_')[1]}",
            }
            if post["message"]:
                item["message"] = post["message"]
            if post["link"]:
                item["attachments"] = {
                    "data": [
                        {
                            "url": "https://l.facebook.com/l.php?u=" + quote(post["link"], safe="") + "&h=AT0fake",
                            "unshimmed_url": post["link"],
                        }
                    ]
                }
            data.append(item)
        paging: dict[str, Any] = {"cursors": {"before": f"offset-{start}", "after": f"offset-{start + len(data)}"}}
        if start + limit < len(newest):
            query = {**{k: v[0] for k, v in request.query.items()}, "after": f"offset-{start + len(data)}"}
            paging["next"] = f"{self.url}{request.path}?" + "&".join(
                f"{k}={quote(v, safe='')}" for k, v in query.items()
            )
        return {"data": data, "paging": paging}

    def _error(
        self, status: int, code: int, message: str, headers: dict[str, str], *, subcode: int | None = None
    ) -> Answer:
        fault = graph_error(code, message, subcode=subcode, status=status)
        return json_answer(status, fault.body, headers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local stand-in for the Facebook Graph API.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds every answer takes")
    parser.add_argument("--keep-alive", action="store_true", help="HTTP/1.1 with persistent connections")
    parser.add_argument("--page-id", default="123456789")
    parser.add_argument("--page-name", default="ShortScience")
    parser.add_argument("--access-token")
    args = parser.parse_args(argv)
    serve_main(
        FakeGraph(
            port=args.port,
            delay=args.delay,
            keep_alive=args.keep_alive,
            page_id=args.page_id,
            page_name=args.page_name,
            access_token=args.access_token,
        )
    )


if __name__ == "__main__":
    main()
