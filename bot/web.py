"""The web process: serves the feed files, a small index page and /healthz.

``create_app`` wires everything from settings; the store is reached only
through the ``health`` callable the caller passes in. Routes live in one list,
and callers add theirs with ``extra_routes`` (they take precedence over files).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path, PurePosixPath
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.feeds.build import MANIFEST
from bot.render.templates import make_environment
from bot.settings import Settings
from bot.webguard import ProxyHeaders, SecurityHeaders, trusted_proxies
from bot.wording import category_label

#: what each served file is (nothing else under public_dir is served)
CONTENT_TYPES = {
    ".rss": "application/rss+xml; charset=utf-8",
    ".atom": "application/atom+xml; charset=utf-8",
    ".json": "application/feed+json; charset=utf-8",
}
_FORMAT_NAMES = {".rss": "RSS 2.0", ".atom": "Atom 1.0", ".json": "JSON Feed 1.1"}


@dataclass(frozen=True, slots=True)
class HealthInfo:
    """What /healthz reports; the caller builds it from the store."""

    #: the database answered
    database_ok: bool
    #: end of the last poll that succeeded, or None if none has
    last_good_poll: datetime | None
    #: the time of the check (aware UTC)
    now: datetime


@dataclass(frozen=True, slots=True)
class FeedLink:
    """One feed on the index page."""

    title: str
    path: str
    content_type: str
    format_name: str


def health_verdict(info: HealthInfo, stale_after_minutes: int) -> tuple[int, dict[str, Any]]:
    """Status code and JSON body of /healthz: 503 if the database is down or the last good poll is stale."""
    age = (info.now - info.last_good_poll).total_seconds() if info.last_good_poll else None
    problems = []
    if not info.database_ok:
        problems.append("database unreachable")
    if age is None:
        problems.append("no successful poll yet")
    elif age > stale_after_minutes * 60:
        problems.append(f"last successful poll is {age / 60:.0f} minutes old (limit {stale_after_minutes})")
    body = {
        "status": "ok" if not problems else "unhealthy",
        "database": info.database_ok,
        "last_good_poll": info.last_good_poll.isoformat() if info.last_good_poll else None,
        "poll_age_seconds": round(age, 1) if age is not None else None,
        "stale_after_seconds": stale_after_minutes * 60,
        "problems": problems,
    }
    return (200 if not problems else 503), body


def resolve_public(root: Path, url_path: str) -> Path | None:
    """The file under `root` a URL path names, or None: no dot segments, no hidden files, no escape."""
    parts = PurePosixPath(url_path).parts
    if not parts or any(p in ("/", "..", ".") or p.startswith(".") or "\\" in p or "\x00" in p for p in parts):
        return None
    if Path(url_path).suffix not in CONTENT_TYPES:
        return None
    candidate = root.joinpath(*parts)
    try:
        real = candidate.resolve(strict=True)
        if not real.is_relative_to(root.resolve()):  # a symlink pointing out
            return None
    except (OSError, RuntimeError):
        return None
    return candidate


def list_feeds(root: Path) -> list[FeedLink]:
    """Every feed file under `root`: main feeds, categories, archive pages (oldest first)."""
    links: list[FeedLink] = []

    def add(rel: str, title: str) -> None:
        suffix = PurePosixPath(rel).suffix
        links.append(
            FeedLink(
                f"{title} ({_FORMAT_NAMES[suffix]})", rel, CONTENT_TYPES[suffix].split(";")[0], _FORMAT_NAMES[suffix]
            )
        )

    for suffix in (".rss", ".atom", ".json"):
        if (root / f"feed{suffix}").is_file():
            add(f"feed{suffix}", "All summaries")
    category = root / "category"
    if category.is_dir():
        for path in sorted(category.iterdir(), key=lambda p: (p.stem.casefold(), p.suffix)):
            if path.suffix in CONTENT_TYPES and not path.name.startswith(".") and path.is_file():
                add(f"category/{path.name}", category_label(path.stem))
    archive = root / "archive"
    if archive.is_dir():
        pages = [p for p in archive.iterdir() if p.suffix == ".atom" and p.stem.isdigit() and p.is_file()]
        for path in sorted(pages, key=lambda p: int(p.stem)):
            add(f"archive/{path.name}", f"Archive page {path.stem}")
    return links


def _etag(st: os.stat_result) -> str:
    # Files are replaced atomically (a new inode) and rewritten only when their
    # bytes change, so inode + mtime + size identify the content.
    raw = f"{st.st_ino}-{st.st_mtime_ns}-{st.st_size}".encode()
    return 'W/"' + hashlib.sha256(raw).hexdigest()[:32] + '"'


def _not_modified(request: Request, etag: str, mtime: float) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        # Weak comparison (RFC 9110 13.1.2); If-None-Match wins over If-Modified-Since.
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or etag.removeprefix("W/") in tags
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return int(mtime) <= since.timestamp()
    return False


def _read(path: Path) -> tuple[bytes, os.stat_result] | None:
    """The file's bytes and the stat of that very file (it may be replaced meanwhile)."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                return None
            return f.read(), st
    except OSError:
        return None


class MergeVary:
    """Outermost ASGI step: one Vary header with each token once.

    The feed handler sets ``Vary: Accept-Encoding`` itself (a 304 and a small
    body need it too), and GZipMiddleware appends the same token to the
    responses it considers compressing.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_merged(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                tokens = [t.strip() for k, v in headers if k.lower() == b"vary" for t in v.decode("latin-1").split(",")]
                if tokens:
                    merged = ", ".join(dict.fromkeys(t for t in tokens if t)).encode("latin-1")
                    message["headers"] = [(k, v) for k, v in headers if k.lower() != b"vary"] + [(b"vary", merged)]
            await send(message)

        await self.app(scope, receive, send_merged)


# long: the route table and its middleware, declared in one place
def create_app(
    settings: Settings,
    *,
    health: Callable[[], HealthInfo] | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The web app: `/`, `/healthz`, `extra_routes`, then the feed files of settings.public_dir."""
    root = settings.public_dir
    max_age = settings.web.feed_max_age_seconds
    # Pages keep their whitespace as written, and an edited template shows without a restart.
    env = make_environment(settings.render.templates_dir, trim_blocks=False, auto_reload=True)
    # The index points newcomers to the digest's form when this process serves it.
    subscribe_url = "/subscribe" if any(getattr(r, "path", None) == "/subscribe" for r in extra_routes) else ""

    async def index(request: Request) -> Response:
        feeds = await anyio.to_thread.run_sync(list_feeds, root)
        page = env.get_template("index.html.j2").render(
            title=settings.feeds.title,
            description=settings.feeds.description,
            language=settings.feeds.language,
            feeds=feeds,
            main=[f for f in feeds if f.path.startswith("feed.")],
            categories=[f for f in feeds if f.path.startswith("category/")],
            archive=[f for f in feeds if f.path.startswith("archive/")],
            subscribe_url=subscribe_url,
        )
        return HTMLResponse(page, headers={"Cache-Control": f"public, max-age={max_age}"})

    async def healthz(request: Request) -> Response:
        if health is None:
            return JSONResponse({"status": "ok", "database": None, "problems": [], "note": "no health check wired"})
        try:
            info = await anyio.to_thread.run_sync(health)
        except Exception as exc:  # the check itself failing is what /healthz exists to say
            body = {
                "status": "unhealthy",
                "database": False,
                "problems": [f"health check failed: {type(exc).__name__}"],
            }
            return JSONResponse(body, status_code=503, headers={"Cache-Control": "no-store"})
        code, body = health_verdict(info, settings.web.stale_after_minutes)
        return JSONResponse(body, status_code=code, headers={"Cache-Control": "no-store"})

    async def feed_file(request: Request) -> Response:
        path = resolve_public(root, request.path_params["path"])
        if path is None or path.name == MANIFEST:
            return PlainTextResponse("Not Found", status_code=404)
        found = await anyio.to_thread.run_sync(_read, path)
        if found is None:
            return PlainTextResponse("Not Found", status_code=404)
        data, st = found
        etag = _etag(st)
        headers = {
            "ETag": etag,
            "Last-Modified": formatdate(st.st_mtime, usegmt=True),
            "Cache-Control": f"public, max-age={max_age}",
            "Vary": "Accept-Encoding",
        }
        if _not_modified(request, etag, st.st_mtime):
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=CONTENT_TYPES[path.suffix], headers=headers)

    routes: list[BaseRoute] = [
        Route("/", index, methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        *extra_routes,
        Route("/{path:path}", feed_file, methods=["GET", "HEAD"]),
    ]
    middleware = [
        # Outermost: the client address every handler (the per-client limits) sees.
        Middleware(ProxyHeaders, trusted=trusted_proxies(settings.env.forwarded_allow_ips)),
        Middleware(SecurityHeaders),
        Middleware(MergeVary),
        Middleware(GZipMiddleware, minimum_size=500),
    ]
    return Starlette(routes=routes, middleware=middleware)
