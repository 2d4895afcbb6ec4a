"""The Markdown parser shared by the HTML and plain-text renderers, and input hygiene.

Owns how summary Markdown is read (CommonMark + tables + ``$…$`` math) and which
characters are dropped before anything else sees the text. No I/O.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.dollarmath import dollarmath_plugin

# Characters XML 1.0 forbids (C0 controls but tab/newline, lone surrogates,
# U+FFFE/U+FFFF), plus CR (we use \n only), DEL and the C1 controls (allowed by
# XML but never meant as text), and U+FEFF, which X counts as an invalid character.
# Also the explicit bidi embeddings, overrides and isolates (U+202A-202E, U+2066-2069): one left
# open in an author name reverses the rest of its line on screen, the post's link included
# ("Summary by \u202eadmin: https://…" shows the URL backwards). Plain RTL text needs none of them.
_BAD_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff]")

#: longest summary text we render; the site's longest summaries are ~30k characters
MAX_SOURCE_CHARS = 200_000


def clean_chars(text: str) -> str:
    """The text with CRLF/CR made LF and every character invalid in XML 1.0 (or X posts) removed."""
    return _BAD_CHARS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def make_markdown() -> MarkdownIt:
    """A parser for summary Markdown: CommonMark, tables, strikethrough, dollar math.

    Raw HTML is parsed (html=True) so the sanitiser sees real elements and can
    keep the harmless ones; nothing from it reaches output unsanitised.
    ``allow_digits=False`` keeps "costs $5 and $10" from becoming math.
    """
    md = MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.use(dollarmath_plugin, allow_space=True, allow_digits=False, double_inline=True)
    return md


def absolute_url(url: str | None, base: str) -> str | None:
    """`url` made absolute against `base`, or None unless the result is an http(s) URL with a host.

    Fragment-only and empty URLs are None: the site's feed strips URLs, leaving
    ``[paper]()``, and a bare ``#x`` would point at the wrong page once made absolute.
    """
    if url is None:
        return None
    url = url.strip()
    if not url or url.startswith("#"):
        return None
    try:
        joined = urljoin(base, url)
        parts = urlsplit(joined)
    except ValueError:  # e.g. an invalid IPv6 host "http://[x"
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if any(c.isspace() or c in "\"'<>`" for c in joined):
        return None
    return joined


def resolve_links(tokens: list[Token], base: str) -> None:
    """Make link and image URLs absolute in place; unlink links and drop images without a usable URL.

    A link whose URL is empty (the feed strips URLs) or not http(s) keeps its
    text; an image without one disappears.
    """
    for token in tokens:
        if token.type != "inline" or not token.children:
            continue
        kept: list[Token] = []
        open_links: list[bool] = []
        for child in token.children:
            if child.type == "link_open":
                href = absolute_url(str(child.attrGet("href") or ""), base)
                open_links.append(href is not None)
                if href is None:
                    continue
                child.attrSet("href", href)
            elif child.type == "link_close":
                if open_links and not open_links.pop():
                    continue
            elif child.type == "image":
                src = absolute_url(str(child.attrGet("src") or ""), base)
                if src is None:
                    continue
                child.attrSet("src", src)
            kept.append(child)
        token.children = kept
