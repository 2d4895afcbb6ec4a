"""Images attached to posts: finding a summary's first image, and fetching it safely.

Both networks use this before attaching anything: only http(s), only from the
hosts in ``render.image_hosts``, at most ``render.image_max_bytes``, and only
PNG, JPEG or GIF by their first bytes. It never posts anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

import httpx
from markdown_it import MarkdownIt

from bot.errors import PermanentPublishError
from bot.settings import Settings

#: first bytes of the image formats we attach, and their media types
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)

_IMG_SRC = re.compile(r"""<img\b[^>]*?\bsrc\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)

_MAX_REDIRECTS = 3

_md = MarkdownIt("commonmark")


def first_image_url(markdown_text: str, base: str) -> str | None:
    """The first image of a summary (Markdown or inline HTML), made absolute against `base`.

    Empty sources are skipped: the site's feed strips every URL, so
    ``![figure]()`` is common and means nothing.
    """
    for token in _md.parse(markdown_text):
        candidates: list[str] = []
        if token.type == "html_block":
            candidates = _html_sources(token.content)
        for child in token.children or ():
            if child.type == "image":
                candidates.append(str(child.attrs.get("src") or ""))
            elif child.type == "html_inline":
                candidates.extend(_html_sources(child.content))
        for src in candidates:
            url = _absolute(src, base)
            if url:
                return url
    return None


def _html_sources(html: str) -> list[str]:
    return [next(g for g in m.groups() if g is not None) for m in _IMG_SRC.finditer(html)]


def _absolute(src: str, base: str) -> str | None:
    src = src.strip()
    if not src:
        return None
    url = urljoin(base if base.endswith("/") else base + "/", src)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return url


def sniff_image_type(data: bytes) -> str | None:
    """The media type of PNG, JPEG or GIF bytes, else None."""
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    return None


def check_image_url(url: str, settings: Settings) -> None:
    """Refuse (PermanentPublishError) a URL that is not http(s) on an allowed host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise PermanentPublishError(f"image {url!r} refused: only http(s) images are attached")
    allowed = {h.lower().rstrip(".") for h in settings.render.image_hosts}
    host = (parts.hostname or "").lower().rstrip(".")
    if host not in allowed:
        raise PermanentPublishError(
            f"image {url!r} refused: host {host!r} is not in render.image_hosts "
            f"({', '.join(sorted(allowed)) or 'none'})"
        )


def fetch_image(url: str, settings: Settings, client: httpx.Client) -> tuple[bytes, str]:
    """The image's bytes and media type (sniffed, not the server's word).

    Raises PermanentPublishError when the image is refused for any reason:
    host, size, type, HTTP status, or a network failure (an image is an
    extra; callers post without it rather than wait for it).
    """
    limit = settings.render.image_max_bytes
    timeout = httpx.Timeout(settings.render.image_timeout_seconds)
    for _ in range(_MAX_REDIRECTS + 1):
        check_image_url(url, settings)
        try:
            with client.stream(
                "GET",
                url,
                timeout=timeout,
                follow_redirects=False,
                headers={"Accept": "image/png, image/jpeg, image/gif"},
            ) as response:
                if response.is_redirect and "location" in response.headers:
                    # Follow by hand so each hop is checked against the allowed hosts.
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code != 200:
                    raise PermanentPublishError(
                        f"image {url!r} refused: HTTP {response.status_code}", status=response.status_code
                    )
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise PermanentPublishError(
                        f"image {url!r} refused: {declared} bytes is more than render.image_max_bytes ({limit})",
                        status=200,
                    )
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        # Stop reading: a lying or absent Content-Length must not cost us memory.
                        raise PermanentPublishError(
                            f"image {url!r} refused: more than render.image_max_bytes ({limit}) bytes", status=200
                        )
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise PermanentPublishError(f"image {url!r} could not be fetched: {type(exc).__name__}") from None
        data = b"".join(chunks)
        media_type = sniff_image_type(data)
        if media_type is None:
            raise PermanentPublishError(f"image {url!r} refused: not a PNG, JPEG or GIF image", status=200)
        return data, media_type
    raise PermanentPublishError(f"image {url!r} refused: more than {_MAX_REDIRECTS} redirects")


#: what a publisher is given to fetch a post's image: URL in, (bytes, media type) out
ImageFetcher = Callable[[str], tuple[bytes, str]]


def image_fetcher(settings: Settings) -> ImageFetcher:
    """The project's image fetcher (allowed hosts, size and type checks) with one HTTP client, made on first use."""
    client: list[httpx.Client] = []

    def fetch(url: str) -> tuple[bytes, str]:
        if not client:
            client.append(httpx.Client(timeout=settings.render.image_timeout_seconds))
        return fetch_image(url, settings, client[0])

    return fetch
