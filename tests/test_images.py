"""Finding a summary's first image and fetching it within limits (bot/channels/images.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import httpx
import pytest
from fake_x import png

from bot.channels.images import fetch_image, first_image_url, sniff_image_type
from bot.errors import PermanentPublishError
from bot.settings import RenderSettings, Settings

BASE = "https://www.shortscience.org"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\x00" * 16


# ---- first_image_url ----


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("Intro.\n\n![Figure 1](https://i.imgur.com/abc.png)\n\nMore.", "https://i.imgur.com/abc.png"),
        (
            '![fig](https://i.imgur.com/abc.png "a title") and ![two](https://i.imgur.com/two.png)',
            "https://i.imgur.com/abc.png",
        ),
        ("![fig](/static/figs/1.png)", "https://www.shortscience.org/static/figs/1.png"),
        ("![fig](figs/1.png)", "https://www.shortscience.org/figs/1.png"),
        # The site's feed strips URLs: an empty image means nothing; the next one counts.
        ("![figure]() then ![real](https://i.imgur.com/real.jpg)", "https://i.imgur.com/real.jpg"),
        ('Text <img width="300" src="https://i.imgur.com/html.png"> more', "https://i.imgur.com/html.png"),
        ("<div>\n<img src='https://i.imgur.com/block.gif'/>\n</div>\n", "https://i.imgur.com/block.gif"),
        ("![ref style][fig]\n\n[fig]: https://i.imgur.com/ref.png", "https://i.imgur.com/ref.png"),
        ("`![not an image](https://i.imgur.com/code.png)` in code", None),
        ("![data](data:image/png;base64,AAAA)", None),
        ("![js](javascript:alert(1))", None),
        ("No images here, only $\\sum_i x_i$ and a [link]().", None),
        ("", None),
    ],
)
def test_first_image_url(markdown: str, expected: str | None) -> None:
    assert first_image_url(markdown, BASE) == expected


def test_sniff_image_type() -> None:
    assert sniff_image_type(png()) == "image/png"
    assert sniff_image_type(JPEG) == "image/jpeg"
    assert sniff_image_type(GIF) == "image/gif"
    assert sniff_image_type(b"<svg xmlns='http://www.w3.org/2000/svg'/>") is None
    assert sniff_image_type(b"") is None


# ---- fetch_image (an httpx transport passed in: no network) ----


def settings(**render: object) -> Settings:
    render.setdefault("image_hosts", ("i.imgur.com", "img.example.org"))
    render.setdefault("image_max_bytes", 1000)
    return Settings(render=dataclasses.replace(RenderSettings(), **render))  # type: ignore[arg-type]


class Images:
    """A fake image host: path → handler; remembers what was asked and how much of a body was read."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[httpx.Request], httpx.Response]] = {}
        self.seen: list[str] = []
        self.chunks_sent = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(str(request.url))
        return self.routes.get(request.url.path, lambda r: httpx.Response(404))(request)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))

    def endless(self, chunk: bytes) -> Iterator[bytes]:
        """A body without Content-Length, far bigger than any limit (counts what was pulled)."""
        for _ in range(10_000):
            self.chunks_sent += 1
            yield chunk


@pytest.fixture
def images() -> Images:
    return Images()


@pytest.mark.parametrize(("body", "media_type"), [(png(), "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif")])
def test_an_allowed_image_is_fetched(images: Images, body: bytes, media_type: str) -> None:
    # The server's Content-Type is not trusted: the bytes decide.
    images.routes["/a"] = lambda r: httpx.Response(
        200, content=body, headers={"Content-Type": "application/octet-stream"}
    )
    assert fetch_image("https://i.imgur.com/a", settings(), images.client()) == (body, media_type)


def test_the_host_must_be_allowed(images: Images) -> None:
    with pytest.raises(PermanentPublishError, match=r"not in render.image_hosts"):
        fetch_image("https://evil.example.com/a.png", settings(), images.client())
    with pytest.raises(PermanentPublishError, match=r"not in render.image_hosts"):
        fetch_image("https://i.imgur.com.evil.example.com/a.png", settings(), images.client())
    assert images.seen == []


@pytest.mark.parametrize("url", ["ftp://i.imgur.com/a.png", "file:///etc/passwd", "data:image/png;base64,AAAA"])
def test_only_http_is_fetched(images: Images, url: str) -> None:
    with pytest.raises(PermanentPublishError, match="only http"):
        fetch_image(url, settings(), images.client())
    assert images.seen == []


def test_a_declared_size_over_the_limit_is_refused_before_reading(images: Images) -> None:
    images.routes["/big"] = lambda r: httpx.Response(
        200, content=images.endless(b"\x89PNG\r\n\x1a\n" * 64), headers={"Content-Length": "5000"}
    )
    with pytest.raises(PermanentPublishError, match=r"5000 bytes is more than render.image_max_bytes"):
        fetch_image("https://i.imgur.com/big", settings(), images.client())
    assert images.chunks_sent <= 1


def test_an_undeclared_size_over_the_limit_stops_the_download(images: Images) -> None:
    images.routes["/stream"] = lambda r: httpx.Response(
        200, content=images.endless(b"\x89PNG\r\n\x1a\n" + b"\x00" * 248)
    )
    with pytest.raises(PermanentPublishError, match=r"more than render.image_max_bytes"):
        fetch_image("https://i.imgur.com/stream", settings(image_max_bytes=1000), images.client())
    # 256-byte chunks, 1000-byte limit: it stops at the fourth or fifth, not at the end of an endless body.
    assert images.chunks_sent <= 5


def test_something_else_than_an_image_is_refused(images: Images) -> None:
    images.routes["/page"] = lambda r: httpx.Response(
        200, content=b"<html>hi</html>", headers={"Content-Type": "image/png"}
    )
    with pytest.raises(PermanentPublishError, match="not a PNG, JPEG or GIF"):
        fetch_image("https://i.imgur.com/page", settings(), images.client())


@pytest.mark.parametrize("status", [404, 500, 503])
def test_an_error_status_is_refused(images: Images, status: int) -> None:
    images.routes["/x"] = lambda r: httpx.Response(status, content=png())
    with pytest.raises(PermanentPublishError) as caught:
        fetch_image("https://i.imgur.com/x", settings(), images.client())
    assert caught.value.status == status


def test_a_network_failure_is_a_refusal(images: Images) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("too slow", request=request)

    images.routes["/slow"] = fail
    with pytest.raises(PermanentPublishError, match="could not be fetched: ConnectTimeout"):
        fetch_image("https://i.imgur.com/slow", settings(), images.client())


def test_redirects_are_followed_only_to_allowed_hosts(images: Images) -> None:
    images.routes["/moved"] = lambda r: httpx.Response(302, headers={"Location": "https://img.example.org/real.png"})
    images.routes["/real.png"] = lambda r: httpx.Response(200, content=png())
    images.routes["/away"] = lambda r: httpx.Response(
        301, headers={"Location": "http://169.254.169.254/latest/meta-data"}
    )
    images.routes["/loop"] = lambda r: httpx.Response(302, headers={"Location": "/loop"})

    assert fetch_image("https://i.imgur.com/moved", settings(), images.client()) == (png(), "image/png")
    with pytest.raises(PermanentPublishError, match=r"not in render.image_hosts"):
        fetch_image("https://i.imgur.com/away", settings(), images.client())
    assert "169.254.169.254" not in " ".join(images.seen)
    with pytest.raises(PermanentPublishError, match="redirects"):
        fetch_image("https://i.imgur.com/loop", settings(), images.client())


def test_the_timeout_setting_is_passed_on(images: Images) -> None:
    timeouts: list[object] = []

    def record(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions.get("timeout"))
        return httpx.Response(200, content=png())

    images.routes["/t"] = record
    fetch_image("https://i.imgur.com/t", settings(image_timeout_seconds=2.5), images.client())
    assert timeouts == [{"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}]
