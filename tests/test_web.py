"""The web process through Starlette's TestClient: feed files, caching headers, gzip, index, /healthz."""

from __future__ import annotations

import gzip
import os
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import html
from starlette.exceptions import StarletteDeprecationWarning
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bot.feeds import FeedEntry, build_feeds
from bot.settings import Env, FeedSettings, Settings, WebSettings
from bot.web import HealthInfo, create_app

with warnings.catch_warnings():
    # Starlette 1.x asks for the `httpx2` package for its TestClient; httpx still works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def make_settings(public: Path) -> Settings:
    return Settings(
        env=Env(bot_public_dir=str(public), public_base_url="https://feeds.example.org"),
        feeds=FeedSettings(archive_page_size=2),
        web=WebSettings(stale_after_minutes=60),
    )


def entries() -> list[FeedEntry]:
    out = []
    for i in range(5):
        link = f"https://www.shortscience.org/paper?bibtexKey=k{i}#u"
        out.append(
            FeedEntry(
                guid=link,
                title=f"Paper {i}",
                author="Alice",
                link=link,
                content_html="<p>" + "A long enough summary to be worth compressing. " * 20 + "</p>",
                summary_text="teaser",
                published=NOW - timedelta(days=10 - i),
                updated=NOW - timedelta(days=10 - i),
                categories=("cs.LG",),
                paper_url=None,
            )
        )
    return out


@pytest.fixture
def public(tmp_path: Path) -> Path:
    out = tmp_path / "public"
    build_feeds(entries(), make_settings(out))
    return out


@pytest.fixture
def client(public: Path) -> TestClient:
    return TestClient(create_app(make_settings(public)))


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/feed.rss", "application/rss+xml; charset=utf-8"),
        ("/feed.atom", "application/atom+xml; charset=utf-8"),
        ("/feed.json", "application/feed+json; charset=utf-8"),
        ("/category/cs.LG.atom", "application/atom+xml; charset=utf-8"),
        ("/archive/1.atom", "application/atom+xml; charset=utf-8"),
    ],
)
def test_feed_files_are_served_with_their_content_type(
    client: TestClient, public: Path, path: str, content_type: str
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.content == (public / path.lstrip("/")).read_bytes()
    assert "max-age=300" in response.headers["cache-control"]
    assert response.headers["etag"] and response.headers["last-modified"]


def test_etag_round_trip_answers_304(client: TestClient, public: Path) -> None:
    first = client.get("/feed.atom")
    etag = first.headers["etag"]
    again = client.get("/feed.atom", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert client.get("/feed.atom", headers={"If-None-Match": '"something-else"'}).status_code == 200
    # A rebuild that changes the file changes the ETag.
    changed = entries()[1:]
    build_feeds(changed, make_settings(public))
    after = client.get("/feed.atom", headers={"If-None-Match": etag})
    assert after.status_code == 200 and after.headers["etag"] != etag


def test_last_modified_answers_304(client: TestClient, public: Path) -> None:
    os.utime(public / "feed.rss", (1_700_000_000, 1_700_000_000))
    first = client.get("/feed.rss")
    assert first.headers["last-modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert client.get("/feed.rss", headers={"If-Modified-Since": first.headers["last-modified"]}).status_code == 304
    assert client.get("/feed.rss", headers={"If-Modified-Since": "Tue, 14 Nov 2023 22:13:19 GMT"}).status_code == 200
    assert client.get("/feed.rss", headers={"If-Modified-Since": "not a date"}).status_code == 200


def test_gzip_when_asked(client: TestClient, public: Path) -> None:
    response = client.get("/feed.rss", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers.get_list("vary") == ["Accept-Encoding"]  # once, though gzip adds it too
    assert response.content == (public / "feed.rss").read_bytes()  # httpx decoded it
    raw = client.get("/feed.rss", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers and raw.headers.get_list("vary") == ["Accept-Encoding"]
    etag = raw.headers["etag"]
    not_modified = client.get("/feed.rss", headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    # A cache must know a 304 varies like the 200 it revalidates (RFC 9110 15.4.5).
    assert not_modified.status_code == 304 and not_modified.headers.get_list("vary") == ["Accept-Encoding"]
    with client.stream("GET", "/feed.rss", headers={"Accept-Encoding": "gzip"}) as streamed:
        body = b"".join(streamed.iter_raw())
    assert gzip.decompress(body) == (public / "feed.rss").read_bytes() and len(body) < len(raw.content)


def test_index_lists_every_feed_with_autodiscovery(client: TestClient, public: Path) -> None:
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = html.fromstring(response.text)
    tags = {(link.get("type"), link.get("href")) for link in page.xpath("//head/link[@rel='alternate']")}
    files = sorted(
        p.relative_to(public).as_posix() for p in public.rglob("*") if p.is_file() and not p.name.startswith(".")
    )
    types = {".rss": "application/rss+xml", ".atom": "application/atom+xml", ".json": "application/feed+json"}
    assert tags == {(types[Path(f).suffix], "/" + f) for f in files}
    assert {"/feed.atom", "/category/cs.LG.rss", "/archive/3.atom"} <= {a.get("href") for a in page.xpath("//body//a")}


def test_index_links_to_the_subscribe_page_and_names_categories(public: Path) -> None:
    async def form(request: object) -> PlainTextResponse:
        return PlainTextResponse("the form")

    settings = make_settings(public)
    page = html.fromstring(TestClient(create_app(settings, extra_routes=[Route("/subscribe", form)])).get("/").text)
    assert page.xpath("//body//a[@href='/subscribe']")
    assert "Machine Learning (cs.LG) (RSS" in page.text_content()
    # A web process without the subscription pages does not link to them.
    bare = html.fromstring(TestClient(create_app(settings)).get("/").text)
    assert not bare.xpath("//a[@href='/subscribe']")


def test_index_escapes_the_feed_title(public: Path) -> None:
    settings = make_settings(public)
    hostile = Settings(env=settings.env, feeds=FeedSettings(title="<script>alert(1)</script>"), web=settings.web)
    text = TestClient(create_app(hostile)).get("/").text
    assert "<script>alert" not in text and "&lt;script&gt;" in text


def health_app(public: Path, info: HealthInfo | Exception) -> TestClient:
    def health() -> HealthInfo:
        if isinstance(info, Exception):
            raise info
        return info

    return TestClient(create_app(make_settings(public), health=health))


def test_healthz_fresh_is_200(public: Path) -> None:
    response = health_app(public, HealthInfo(True, NOW - timedelta(minutes=10), NOW)).get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] is True and body["poll_age_seconds"] == 600


def test_healthz_stale_is_503(public: Path) -> None:
    response = health_app(public, HealthInfo(True, NOW - timedelta(minutes=61), NOW)).get("/healthz")
    assert response.status_code == 503 and "61 minutes" in response.json()["problems"][0]
    never = health_app(public, HealthInfo(True, None, NOW)).get("/healthz")
    assert never.status_code == 503 and never.json()["problems"] == ["no successful poll yet"]


def test_healthz_database_down_is_503(public: Path) -> None:
    response = health_app(public, HealthInfo(False, NOW, NOW)).get("/healthz")
    assert response.status_code == 503 and response.json()["database"] is False
    failing = health_app(public, RuntimeError("postgresql://user:secret@db/x refused")).get("/healthz")
    assert failing.status_code == 503 and "secret" not in failing.text


@pytest.mark.parametrize(
    "path",
    [
        "/../etc/passwd",
        "/%2e%2e/etc/passwd",
        "/category/..%2f..%2f..%2fetc%2fpasswd",
        "/category/%2e%2e/%2e%2e/feed.rss",
        "/.feeds-manifest.json",
        "/archive/.1.atom.tmp",
        "/nothing.rss",
        "/feed.rss%00.txt",
        "/etc/passwd",
    ],
)
def test_no_path_traversal(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_symlink_out_of_public_is_not_followed(tmp_path: Path, public: Path, client: TestClient) -> None:
    secret = tmp_path / "secret.rss"
    secret.write_text("secret")
    (public / "leak.rss").symlink_to(secret)
    assert client.get("/leak.rss").status_code == 404


def test_extra_routes_are_served_before_files(public: Path) -> None:
    async def hello(request: object) -> PlainTextResponse:
        return PlainTextResponse("subscribe here")

    app = create_app(make_settings(public), extra_routes=[Route("/subscribe", hello)])
    client = TestClient(app)
    assert client.get("/subscribe").text == "subscribe here"
    assert client.get("/feed.rss").status_code == 200
