"""Make untrusted text safe for XML and JSON feeds: pure string functions, no I/O.

Titles and author names become one clean line (no controls, no bidi overrides,
no tag-like markup); HTML keeps its markup but loses XML-invalid characters and
relative links.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urljoin, urlsplit

from bot.render.markdown import clean_chars

#: everything XML 1.0 forbids (C0 controls but TAB/LF/CR, lone surrogates, U+FFFE/U+FFFF)
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: something that looks like an HTML tag in what must be plain text (validators flag HTML in titles)
_TAG = re.compile(r"</?[A-Za-z!][^<>]*>")
#: href/src attributes whose value is not absolute (the renderer should never leave one)
_URL_ATTR = re.compile(r"""(\s(?:href|src)=)(["'])([^"']*)\2""", re.IGNORECASE)
_ABSOLUTE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|#)")
#: an href/src _URL_ATTR could find not absolute, searched from every position: it finds each one that
#: _URL_ATTR finds (and maybe more, inside other values), so none found means nothing to make absolute
#: (case folded only where _URL_ATTR is: under re.IGNORECASE, [a-zA-Z] would also take "ſ" and the Kelvin sign)
_RELATIVE_ATTR = re.compile(r"""(?i:\s(?:href|src)=)(["'])(?!\s*(?:[a-zA-Z][a-zA-Z0-9+.-]*:|#))[^"']*\1""")

#: the longest title / author / teaser kept (a 5 MB title is an attack, not a title)
MAX_TITLE = 500
MAX_AUTHOR = 200
MAX_TEASER = 2000


def strip_xml_invalid(text: str) -> str:
    """Drop characters no XML 1.0 document may contain."""
    return _XML_INVALID.sub("", text)


def clean_line(text: str, *, limit: int, fallback: str = "") -> str:
    """One line of plain text: safe characters only, whitespace collapsed, at most `limit` characters."""
    if len(text) > limit * 4:
        # Cleaning never grows text, so cut early and keep hostile megabytes cheap.
        text = text[: limit * 4]
    # C1 controls, bidi overrides and marks, zero-width spaces: the one cleaner every output uses.
    text = clean_chars(strip_xml_invalid(text))
    # Until none is left: removing "<b>" from "<img src=x onerror=f()<b>>" makes a new, whole tag.
    # Each pass removes at least one "<", so this ends.
    while _TAG.search(text):
        text = _TAG.sub(" ", text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text or fallback


def clean_html(html: str, base: str) -> str:
    """Sanitised HTML made XML-safe, with any relative href/src made absolute against `base`."""
    html = clean_chars(strip_xml_invalid(html))
    if not _RELATIVE_ATTR.search(html):
        # The renderer's links are all absolute: skip calling back for each of them.
        return html

    def absolute(match: re.Match[str]) -> str:
        url = match.group(3)
        if _ABSOLUTE.match(url.strip()):
            return match.group(0)
        return f"{match.group(1)}{match.group(2)}{urljoin(base, url.strip())}{match.group(2)}"

    return _URL_ATTR.sub(absolute, html)


def clean_url(url: str | None) -> str | None:
    """An absolute http(s) URL without unsafe characters, or None."""
    if not url:
        return None
    url = "".join(strip_xml_invalid(url).split())
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_names(categories: set[str]) -> dict[str, str]:
    """A file/URL-safe, unique file name stem for each category.

    "cs.LG" stays "cs.LG"; a name that had to change, or that would clash with
    another on a case-insensitive file system, gets a short hash so two
    categories never share a file.
    """
    stems: dict[str, str] = {}
    for category in categories:
        stem = _UNSAFE_NAME.sub("-", category).strip(".-")[:80]
        stems[category] = stem
    clashes: dict[str, int] = {}
    for stem in stems.values():
        clashes[stem.casefold()] = clashes.get(stem.casefold(), 0) + 1
    out = {}
    for category, stem in stems.items():
        if stem != category or clashes[stem.casefold()] > 1 or not stem:
            digest = hashlib.sha256(category.encode("utf-8", "surrogatepass")).hexdigest()[:8]
            stem = f"{stem}-{digest}" if stem else f"category-{digest}"
        out[category] = stem
    return out
