"""Fetching feeds over real HTTP from a local server: conditional GET, limits, errors, timeouts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from feeds_util import items, site_feed
from http_util import Reply, ScriptedServer

from bot.errors import SourceError
from bot.records import SourceState
from bot.sources.fetch import FileSource, HttpSource, parse_fresh_until, parse_retry_after

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
FEED = site_feed(items(3))
RSS = {"Content-Type": "application/rss+xml; charset=utf-8"}


_OPEN: list[HttpSource] = []


def source(url: str, *, timeout: float = 5, max_bytes: int = 1_000_000) -> HttpSource:
    src = HttpSource(url + "/rss.xml", timeout=timeout, max_bytes=max_bytes, user_agent="test-bot")
    _OPEN.append(src)
    return src


@pytest.fixture(autouse=True)
def _close_sources() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def test_etag_and_last_modified_round_trip_to_304() -> None:
    def answer(headers: dict[str, str]) -> Reply:
        if headers.get("if-none-match") == '"v1"':
            return Reply(304, headers={"ETag": '"v1"'})
        return Reply(
            200,
            FEED,
            {**RSS, "ETag": '"v1"', "Last-Modified": "Mon, 02 Nov 2026 08:00:00 GMT", "Cache-Control": "max-age=600"},
        )

    with ScriptedServer(answer) as srv:
        src = source(srv.url)
        first = src.fetch(SourceState(url=src.url), now=NOW)
        assert first.status == 200 and first.body == FEED
        assert first.etag == '"v1"' and first.last_modified == "Mon, 02 Nov 2026 08:00:00 GMT"
        assert first.fresh_until == NOW + timedelta(seconds=600)
        second = src.fetch(SourceState(url=src.url, etag=first.etag, last_modified=first.last_modified), now=NOW)
        assert second.status == 304 and second.body is None
        sent = srv.requests[1]["headers"]
        assert sent["if-none-match"] == '"v1"' and sent["if-modified-since"] == "Mon, 02 Nov 2026 08:00:00 GMT"
        assert srv.requests[0]["headers"]["user-agent"] == "test-bot"


def test_429_with_retry_after_seconds() -> None:
    with ScriptedServer(Reply(429, b"slow down", {"Retry-After": "120"})) as srv:
        with pytest.raises(SourceError) as err:
            source(srv.url).fetch(SourceState(url="x"), now=NOW)
        assert "429" in str(err.value)
        assert err.value.retry_after == NOW + timedelta(seconds=120)


def test_503_with_retry_after_date() -> None:
    with ScriptedServer(Reply(503, b"", {"Retry-After": "Mon, 02 Nov 2026 10:00:00 GMT"})) as srv:
        with pytest.raises(SourceError) as err:
            source(srv.url).fetch(SourceState(url="x"), now=NOW)
        assert err.value.retry_after == datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def test_500_is_an_error_naming_the_url() -> None:
    with ScriptedServer(Reply(500, b"oops")) as srv:
        with pytest.raises(SourceError, match=r"rss\.xml: server answered HTTP 500"):
            source(srv.url).fetch(SourceState(url="x"), now=NOW)


def test_truncated_body_is_an_error() -> None:
    with ScriptedServer(Reply(200, FEED, RSS, truncate_at=100)) as srv:
        with pytest.raises(SourceError, match="broke off"):
            source(srv.url).fetch(SourceState(url="x"), now=NOW)


def test_oversized_body_is_refused() -> None:
    with ScriptedServer(Reply(200, b"<rss>" + b" " * 50_000 + b"</rss>", RSS)) as srv:
        with pytest.raises(SourceError, match="over the limit of 10000 bytes"):
            source(srv.url, max_bytes=10_000).fetch(SourceState(url="x"), now=NOW)


def test_wrong_content_type_is_refused() -> None:
    with ScriptedServer(Reply(200, b"\x89PNG....", {"Content-Type": "image/png"})) as srv:
        with pytest.raises(SourceError, match="content type 'image/png' is not a feed"):
            source(srv.url).fetch(SourceState(url="x"), now=NOW)


def test_slow_server_hits_the_timeout() -> None:
    with ScriptedServer(Reply(200, FEED, RSS, delay=3)) as srv:
        with pytest.raises(SourceError, match=r"no answer within 0.5 s"):
            source(srv.url, timeout=0.5).fetch(SourceState(url="x"), now=NOW)


def test_non_utf8_feed_bytes_pass_through_unchanged() -> None:
    latin = FEED.replace(b'encoding="UTF-8"', b'encoding="ISO-8859-1"').replace(
        b"A summary", "Caf\u00e9 summary".encode("latin-1")
    )
    with ScriptedServer(Reply(200, latin, {"Content-Type": "application/rss+xml; charset=ISO-8859-1"})) as srv:
        result = source(srv.url).fetch(SourceState(url="x"), now=NOW)
    assert result.body == latin  # decoding is the parser's job, by the XML declaration


def test_file_source_unchanged_file_is_304(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_bytes(FEED)
    src = FileSource(str(path), max_bytes=10**6)
    first = src.fetch(SourceState(url=str(path)), now=NOW)
    assert first.body == FEED
    again = src.fetch(SourceState(url=str(path), etag=first.etag, last_modified=first.last_modified), now=NOW)
    assert again.status == 304 and again.body is None
    with pytest.raises(SourceError, match="no such file"):
        FileSource(str(tmp_path / "missing.xml"), max_bytes=10).fetch(SourceState(url="x"), now=NOW)


def test_header_parsers() -> None:
    assert parse_retry_after("garbage", NOW) is None
    assert parse_fresh_until("public, max-age=3600", NOW) == NOW + timedelta(hours=1)
    assert parse_fresh_until("no-cache, max-age=3600", NOW) is None
    assert parse_fresh_until("max-age=99999999", NOW) == NOW + timedelta(days=1)


def test_a_server_that_drips_fails_the_download_at_its_deadline() -> None:
    """Each read comes well within the timeout; the whole download may still not take longer than the deadline."""
    with ScriptedServer(Reply(200, FEED, RSS, drip=0.2)) as srv:
        src = HttpSource(srv.url + "/rss.xml", timeout=5, max_bytes=1_000_000, user_agent="test-bot", deadline=1.0)
        _OPEN.append(src)
        with pytest.raises(
            SourceError, match=r"rss\.xml: the download took longer than 1 s \(source\.download_deadline_seconds\)"
        ):
            src.fetch(SourceState(url="x"), now=NOW)


def test_a_server_that_drips_its_headers_fails_at_the_deadline_too() -> None:
    """No body read to check the clock between: the deadline still ends the download (no read times out)."""
    import socket
    import threading
    import time

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            try:
                for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nX-Padding: " + b"a" * 1000:
                    if stop.is_set():
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(0.2)
            except OSError:
                pass  # the client gave up

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        src = HttpSource(
            f"http://127.0.0.1:{listener.getsockname()[1]}/rss.xml",
            timeout=5,
            max_bytes=1_000_000,
            user_agent="test-bot",
            deadline=1.0,
        )
        _OPEN.append(src)
        with pytest.raises(
            SourceError, match=r"the download took longer than 1 s \(source\.download_deadline_seconds\)"
        ):
            src.fetch(SourceState(url="x"), now=NOW)
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)
