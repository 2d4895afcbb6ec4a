"""Fetching a source's bytes: http(s) with conditional GET and limits, or a local file.

A source only brings bytes back (`FetchResult`); it never parses, stores or
publishes. httpx errors are translated into ``SourceError`` here.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import re
import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bot.errors import ConfigError, SourceError
from bot.records import FetchResult, SourceState

if TYPE_CHECKING:
    import httpx


class Source(Protocol):
    """Where summaries come from: one feed."""

    #: the feed's URL or path, as the store names it
    url: str

    def fetch(self, state: SourceState, *, now: datetime) -> FetchResult:
        """The feed's bytes, or a 304 result when unchanged; raises SourceError."""
        ...


def parse_retry_after(value: str | None, now: datetime) -> datetime | None:
    """Retry-After is either seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return now + timedelta(seconds=min(int(value), 7 * 86400))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*\"?(\d+)", re.I)


def parse_fresh_until(cache_control: str | None, now: datetime) -> datetime | None:
    """Cache-Control max-age: the server asks not to be polled again before then."""
    if not cache_control:
        return None
    if "no-cache" in cache_control.lower() or "no-store" in cache_control.lower():
        return None
    m = _MAX_AGE.search(cache_control)
    if not m:
        return None
    # Never let a server push us away for more than a day.
    return now + timedelta(seconds=min(int(m.group(1)), 86400))


_FEED_TYPES = ("xml", "rss", "atom", "json", "text/plain", "octet-stream", "text/html")


class HttpSource:
    """A feed on http(s): conditional GET, timeouts, a size limit, Retry-After."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        max_bytes: int,
        user_agent: str,
        deadline: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx  # here: a file source (the quick start's) never loads it

        self.url = url
        self.max_bytes = max_bytes
        #: seconds the whole download may take (the timeout bounds each read only: a server
        #: that drips a byte a second would otherwise hold the poll as long as it likes)
        self.deadline = deadline
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={
                "User-Agent": user_agent,
                "Accept": (
                    "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, */*;q=0.5"
                ),
            },
            follow_redirects=True,
            max_redirects=5,
            transport=transport,
            # A new connection per poll (polls are minutes apart anyway): the deadline's watchdog
            # learns each connection's socket when it is opened.
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        self._timeout = timeout

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, state: SourceState, *, now: datetime) -> FetchResult:
        import httpx

        headers = {}
        if state.etag:
            headers["If-None-Match"] = state.etag
        if state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
        watchdog = _Watchdog(self.deadline)
        try:
            with watchdog:
                return self._download(headers, state, now, watchdog)
        except httpx.HTTPError as exc:
            if watchdog.fired:
                raise self._past_deadline() from None
            if isinstance(exc, httpx.TimeoutException):
                raise SourceError(
                    f"{self.url}: no answer within {self._timeout:g} s (source.timeout_seconds)"
                ) from None
            if isinstance(exc, httpx.RemoteProtocolError):
                raise SourceError(f"{self.url}: the connection broke off: {exc}") from None
            raise SourceError(f"{self.url}: {type(exc).__name__}: {exc}") from None

    def _download(self, headers: dict[str, str], state: SourceState, now: datetime, watchdog: _Watchdog) -> FetchResult:
        with self._client.stream(
            "GET", self.url, headers=headers, timeout=self._request_timeout(), extensions={"trace": watchdog.trace}
        ) as response:
            if response.status_code == 304:
                return FetchResult(
                    body=None,
                    etag=response.headers.get("ETag", state.etag),
                    last_modified=response.headers.get("Last-Modified", state.last_modified),
                    fresh_until=parse_fresh_until(response.headers.get("Cache-Control"), now),
                    status=304,
                )
            if response.status_code in (429, 503) or response.status_code >= 500:
                raise SourceError(
                    f"{self.url}: server answered HTTP {response.status_code}",
                    retry_after=parse_retry_after(response.headers.get("Retry-After"), now),
                )
            if response.status_code != 200:
                raise SourceError(f"{self.url}: server answered HTTP {response.status_code}; expected 200")
            ctype = response.headers.get("Content-Type", "")
            if ctype and not any(k in ctype.lower() for k in _FEED_TYPES):
                raise SourceError(f"{self.url}: content type {ctype!r} is not a feed")
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise SourceError(
                    f"{self.url}: body of {declared} bytes is over the limit of {self.max_bytes} bytes "
                    "(source.max_bytes)"
                )
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                if watchdog.fired:
                    raise self._past_deadline()
                size += len(chunk)
                if size > self.max_bytes:
                    raise SourceError(
                        f"{self.url}: body is over the limit of {self.max_bytes} bytes (source.max_bytes)"
                    )
                chunks.append(chunk)
            return FetchResult(
                body=b"".join(chunks),
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
                fresh_until=parse_fresh_until(response.headers.get("Cache-Control"), now),
                status=200,
                content_type=ctype or None,
            )

    def _request_timeout(self) -> httpx.Timeout:
        import httpx

        # No single wait may outlast the whole deadline either.
        each = self._timeout if self.deadline is None else min(self._timeout, self.deadline)
        return httpx.Timeout(each, connect=min(each, 10.0))

    def _past_deadline(self) -> SourceError:
        return SourceError(
            f"{self.url}: the download took longer than {self.deadline:g} s "
            "(source.download_deadline_seconds); given up"
        )


class _Watchdog:
    """Ends a download at its deadline, wherever it is: connecting, TLS, headers or body.

    httpx has no overall timeout and a dripping server keeps every single read short, so a
    timer shuts the connection's socket down; the blocked read then fails and `fired` says why.
    """

    def __init__(self, seconds: float | None) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._fire) if seconds is not None else None
        if self._timer is not None:
            self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        if self._timer is not None:
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: keep the socket of each connection it opens."""
        if event != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with self._lock:
                self._sockets.append(sock)
                fired = self.fired
            if fired:
                _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: nothing left to stop


class FileSource:
    """A feed in a local file; its mtime and a hash stand in for Last-Modified and ETag."""

    def __init__(self, path: str, *, max_bytes: int) -> None:
        self.url = path
        self.path = Path(path[7:] if path.startswith("file://") else path)
        self.max_bytes = max_bytes

    def fetch(self, state: SourceState, *, now: datetime) -> FetchResult:
        try:
            stat = self.path.stat()
            # Same mtime and size as last time: treat like a 304 without reading.
            stamp = f"{stat.st_mtime_ns}-{stat.st_size}"
            if state.last_modified == stamp and state.etag:
                return FetchResult(body=None, etag=state.etag, last_modified=stamp, status=304)
            if stat.st_size > self.max_bytes:
                raise SourceError(
                    f"{self.path}: file of {stat.st_size} bytes is over the limit of {self.max_bytes} "
                    "(source.max_bytes)"
                )
            body = self.path.read_bytes()
        except FileNotFoundError:
            raise SourceError(f"{self.path}: no such file (SHORTSCIENCE_FEED_URL)") from None
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot be read: {os.strerror(exc.errno or 0) or exc}") from None
        etag = hashlib.sha256(body).hexdigest()[:32]
        if state.etag == etag:
            return FetchResult(body=None, etag=etag, last_modified=stamp, status=304)
        return FetchResult(body=body, etag=etag, last_modified=stamp, status=200)


def make_source(
    url: str, *, timeout: float, max_bytes: int, user_agent: str, deadline: float | None = None
) -> HttpSource | FileSource:
    if url.startswith(("http://", "https://")):
        return HttpSource(url, timeout=timeout, max_bytes=max_bytes, user_agent=user_agent, deadline=deadline)
    if "://" in url and not url.startswith("file://"):
        # A bad setting, not a failing source: exit 2 like every other bad setting.
        raise ConfigError(
            f"setting SHORTSCIENCE_FEED_URL = {url!r} is invalid: expected an http(s):// URL or a file path"
        )
    return FileSource(url, max_bytes=max_bytes)
