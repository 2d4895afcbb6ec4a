"""Images in rendered HTML: only from allowed hosts, and no empty paragraph where one was removed.

A summary may embed an image from any host, and every feed reader or mail
client that shows the entry would fetch it: a 1×1 image is a tracking pixel.
An image is kept only when its host is allowed (``render.image_hosts`` and the
site itself); any other becomes a plain link to it, labelled with its alt text.
Works on the sanitiser's output (well-formed, attributes double-quoted), no I/O.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

#: a start or end tag of a link, or an image (nh3 writes lowercase names, double-quoted values)
_TAGS = re.compile(r"<a\b[^>]*>|</a>|<img\b[^>]*>")
_ATTRIBUTE = re.compile(r'\s([a-z-]+)="([^"]*)"')
#: a paragraph with nothing to read (an image was all it held)
_EMPTY_PARAGRAPH = re.compile(r"<p>(?:\s|<br>)*</p>\n?")

#: what a replaced image without alt text says
NO_ALT = "image"
#: the rel of the link that replaces an image (the sanitiser's, which runs before)
LINK_REL = "nofollow noopener noreferrer"


def allowed_hosts(image_hosts: Iterable[str], site_base_url: str) -> frozenset[str]:
    """The hosts images may come from: the configured ones plus the site's own, lowercased."""
    hosts = {h.strip().lower() for h in image_hosts if h.strip()}
    site = urlsplit(site_base_url).hostname
    if site:
        hosts.add(site.lower())
    return frozenset(hosts)


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def filter_images(html: str, hosts: frozenset[str]) -> str:
    """`html` with each image from a host not in `hosts` replaced by a link to it (its alt text inside a link)."""
    if "<img" not in html:
        return html
    out: list[str] = []
    last = 0
    depth = 0  # inside a link, a replaced image keeps only its text: links do not nest
    for m in _TAGS.finditer(html):
        tag = m.group(0)
        if tag.startswith("</a"):
            depth = max(depth - 1, 0)
            continue
        if tag.startswith("<a"):
            depth += 1
            continue
        attrs = dict(_ATTRIBUTE.findall(tag))
        src = htmllib.unescape(attrs.get("src", ""))
        if src and _host(src) in hosts:
            continue
        alt = " ".join(htmllib.unescape(attrs.get("alt", "")).split())
        label = htmllib.escape(alt or NO_ALT, quote=False)
        if src and not depth:
            replacement = f'<a href="{htmllib.escape(src)}" rel="{LINK_REL}">{label}</a>'
        else:
            replacement = htmllib.escape(alt, quote=False)
        out.append(html[last : m.start()])
        out.append(replacement)
        last = m.end()
    out.append(html[last:])
    return "".join(out)


def drop_empty_paragraphs(html: str) -> str:
    """`html` without paragraphs that hold nothing (left where an image was removed)."""
    if "<p>" not in html:
        return html
    return _EMPTY_PARAGRAPH.sub("", html)
