"""Byte-level repairs before XML parsing: characters XML 1.0 cannot carry, and where the site's items are.

Pure functions over a feed's bytes; parsing itself stays in bot.sources.parse.
"""

from __future__ import annotations

import html
import re

# Characters XML 1.0 cannot carry, written as references (&#11;, &#xFFFE;): as ill-formed as raw ones.
_CHAR_REF = re.compile(rb"&#([0-9]{1,8}|[xX][0-9a-fA-F]{1,8});")
_XML_DECLARATION = re.compile(rb"\s*<\?xml\s[^>]*\?>")
_DECLARED_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
# The site's items, to tell which one is ill-formed: an <item> holds no nested <item>.
_SITE_ITEM = re.compile(rb"<item(?=[\s>])(?:(?!</item\s*>).)*</item\s*>", re.S)
_SITE_GUID = re.compile(rb"<guid[^>]*>([^<]*)</guid", re.S)


def drop_xml_invalid(body: bytes) -> bytes:
    """The body without U+FFFE/U+FFFF (UTF-8 bodies) and references to characters XML 1.0 cannot carry.

    One such character in one summary would otherwise make the whole document ill-formed. For an
    ASCII-compatible body (raw C0 bytes are the caller's: it knows the encoding family).
    """
    if _is_utf8(body[:256]):
        # Only in a UTF-8 body are these three bytes those characters.
        body = body.replace(b"\xef\xbf\xbe", b"").replace(b"\xef\xbf\xbf", b"")
    return _CHAR_REF.sub(_valid_char_ref, body)


def site_item_spans(body: bytes) -> list[tuple[int, int]]:
    """(start, end) of each <item>…</item> of the document, in order."""
    return [(m.start(), m.end()) for m in _SITE_ITEM.finditer(body)]


def site_item_guid(item: bytes) -> str | None:
    """The guid of one item's markup, for a problem line about it (None when it has none)."""
    guid = _SITE_GUID.search(item)
    return html.unescape(guid.group(1).decode("utf-8", "replace")).strip() if guid else None


def _is_utf8(head: bytes) -> bool:
    """Whether the document says (or, saying nothing, defaults to) UTF-8."""
    declaration = _XML_DECLARATION.match(head.removeprefix(b"\xef\xbb\xbf"))
    encoding = _DECLARED_ENCODING.search(declaration.group(0)) if declaration else None
    return encoding is None or encoding.group(1).lower().replace(b"-", b"") == b"utf8"


def _valid_char_ref(match: re.Match[bytes]) -> bytes:
    digits = match.group(1)
    try:
        code = int(digits[1:], 16) if digits[:1] in (b"x", b"X") else int(digits)
    except ValueError:
        return match.group(0)
    valid = code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or 0x10000 <= code <= 0x10FFFF
    return match.group(0) if valid else b""
