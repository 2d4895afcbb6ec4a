"""The Markdown parser shared by the HTML and plain-text renderers, and input hygiene.

Owns how summary Markdown is read (CommonMark + tables + ``$…$`` math) and which
characters are dropped before anything else sees the text. No I/O.
"""

from __future__ import annotations

import html
import logging
import re
from urllib.parse import urljoin, urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.dollarmath import dollarmath_plugin

from bot.render.chars import clean_chars as clean_chars  # its old home, where most modules import it

log = logging.getLogger(__name__)

#: longest summary text we render; the site's longest summaries are ~30k characters
MAX_SOURCE_CHARS = 200_000


#: one complete HTML character reference: "R&D" and "&copy" (no semicolon) are not one
_CHAR_REF = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def unescape_refs(text: str) -> str:
    """The text with its complete character references decoded, once; "R&D" or "&copy" stay as written.

    Feed titles carry one left-over level of escaping (the site escapes titles that are
    sometimes stored escaped already: "&amp;amp;"); text renderings decode what tag
    stripping leaves.
    """
    if "&" not in text:
        return text
    return _CHAR_REF.sub(lambda m: html.unescape(m.group(0)), text)


def make_markdown() -> MarkdownIt:
    """A parser for summary Markdown: CommonMark, tables, strikethrough, dollar math.

    Raw HTML is parsed (html=True) so the sanitiser sees real elements and can
    keep the harmless ones; nothing from it reaches output unsanitised.
    ``allow_digits=False`` keeps "costs $5 and $10" from becoming math.
    """
    md = MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.use(dollarmath_plugin, allow_space=True, allow_digits=False, double_inline=True)
    # Every link is parsed as one, whatever its URL: resolve_links (HTML) unlinks what is not
    # http(s) and the plain text keeps only a link's words. Refused here, "[x](javascript:…)"
    # would stay text and reach posts verbatim.
    md.validateLink = lambda url: True  # type: ignore[method-assign]
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


# ---------------------------------------------------------------------------- cost bounds
# A summary is rendered once per version, but one hostile summary must not hold a poll for
# seconds: MathML conversion costs about 10 µs a TeX character, and the HTML sanitiser's tree
# building is quadratic in nesting (figures: docs/benchmarks.md). Past these bounds the cheap fallback is
# taken: math shown as its source (HTML) or with its markup dropped (text), tags removed.

#: most math spans converted per summary; past it, every formula of the summary is shown as source
MAX_MATH_SPANS = 1000
#: most TeX characters converted per summary (the busiest real summaries hold about 2,000)
MAX_MATH_CHARS = 20_000
#: most HTML tags per summary; past it, the summary's tags are removed before parsing
MAX_TAGS = 2000

_TAG_OPEN = re.compile(r"<[A-Za-z/!?]")
_ANY_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<!--.*?-->|<![^<>]*>|<\?[^<>]*>", re.S)


def bound_tags(source: str) -> str:
    """`source` itself, or without its tags (any "<" left escaped) when it holds more than MAX_TAGS of them."""
    if source.count("<") <= MAX_TAGS or len(_TAG_OPEN.findall(source)) <= MAX_TAGS:
        return source
    log.warning("summary holds more than %d HTML tags: rendered without them", MAX_TAGS)
    return _ANY_TAG.sub("", source).replace("<", "&lt;")


def math_size(tokens: list[Token]) -> tuple[int, int]:
    """How many formulas (inline and display) the parsed summary holds, and their TeX's total length."""
    count = chars = 0
    for token in tokens:
        if token.type.startswith("math_block"):
            count, chars = count + 1, chars + len(token.content)
        elif token.children:
            for child in token.children:
                if child.type.startswith("math_inline"):
                    count, chars = count + 1, chars + len(child.content)
    return count, chars


def math_within_bounds(tokens: list[Token]) -> bool:
    """Whether the summary's formulas may be converted (MAX_MATH_SPANS, MAX_MATH_CHARS); warns when not."""
    count, chars = math_size(tokens)
    if count <= MAX_MATH_SPANS and chars <= MAX_MATH_CHARS:
        return True
    log.warning(
        "summary holds %d formulas of %d characters (bounds: %d, %d): its math is shown as source",
        count, chars, MAX_MATH_SPANS, MAX_MATH_CHARS,
    )  # fmt: skip
    return False
