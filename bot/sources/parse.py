"""Parsing a feed's bytes into `Summary` records: the site's own RSS on a fast lxml path, any other
RSS/Atom feed through feedparser, JSON Feed through the json module.

Parsing never fetches, stores or sanitises HTML (rendering sanitises, once). A bad item becomes one
problem line and the other items go on; only a feed that is unusable as a whole raises SourceError.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import feedparser
from lxml import etree

from bot.errors import SourceError, SourceItemError
from bot.records import ParseResult, Summary
from bot.render.markdown import unescape_refs
from bot.sources.xmlchars import drop_xml_invalid, site_item_guid, site_item_spans

__all__ = ["parse_feed"]

# Raw C0 control bytes are never allowed in XML 1.0 (only as nothing at all), yet the site's template
# escapes titles and texts with htmlspecialchars() without ENT_DISALLOWED: one stray control character
# in one summary would make the whole rss-full.xml ill-formed. Deleting them before parsing is safe in
# every ASCII-compatible encoding (UTF-8, ISO-8859-x, Windows-125x: no multi-byte sequence contains a
# byte below 0x20) and loses nothing a reader could see; it is skipped for UTF-16/32 bodies.
_C0_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])

# Titles and authors become headers and one-line post texts: no control characters at all, and no
# explicit bidi embedding, override or isolate (U+202A-202E, U+2066-2069): one left open in an author
# name shows the rest of its line backwards wherever it is printed, a link beside it included.
_LINE_JUNK = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\u202a-\u202e\u2066-\u2069\ufffe\uffff]")
# A link is one URL: a control character inside it (CR/LF, tab, ...) makes it a broken or forged one.
_LINK_JUNK = re.compile("[\x00-\x1f\x7f]")
# The summary text keeps its newlines and tabs, and loses only what XML 1.0 cannot carry.
_TEXT_JUNK = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_HTML_TAG = re.compile(r"<[^>]*>")
_ARXIV_PREFIX = re.compile(r"^arxiv:", re.IGNORECASE)
_ARXIV_VERSION = re.compile(r"v[0-9]+$")
# An arXiv abstract or PDF link in a generic feed (e.g. arXiv's own listing feeds) names the paper.
_ARXIV_LINK = re.compile(r"^https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/([^?#\s]+?)(?:v[0-9]+)?(?:\.pdf)?/?$")
_XML_POSITION = re.compile(r", line \d+, column \d+$")
# Start and end tags of RSS items and Atom entries, any prefix: to tell a feed cut off inside an item.
_ENTRY_OPEN = re.compile(r"<(?:[A-Za-z_][\w.-]*:)?(?:item|entry)(?=[\s>])", re.IGNORECASE)
_ENTRY_CLOSE = re.compile(r"</(?:[A-Za-z_][\w.-]*:)?(?:item|entry)\s*>", re.IGNORECASE)
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_JSON_TYPES = frozenset({"application/feed+json", "application/json"})

ANONYMOUS = "Anonymous"


def parse_feed(body: bytes, source: str, *, content_type: str | None = None, min_votes: int = 0) -> ParseResult:
    """The good items of one feed as summaries, plus one problem line per rejected item.

    ``source`` names the feed in every message. ``content_type`` is the response's Content-Type, if
    any. Items with fewer than ``min_votes`` votes are left out silently (when the feed gives votes).
    Raises SourceError when the feed as a whole is unusable: empty, not XML/JSON, not a feed.
    """
    if not body or body.isspace():
        raise SourceError(f"{source}: the feed is empty")
    collector = _Collector(source, min_votes)
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in _JSON_TYPES or body[:256].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return _parse_json_feed(body, collector)

    if b"\x00" not in body[:4]:
        body = drop_xml_invalid(body.translate(None, _C0_BYTES))
    root: Any = None
    xml_error: etree.XMLSyntaxError | None = None
    try:
        root = etree.fromstring(body, _xml_parser())
    except etree.XMLSyntaxError as exc:
        xml_error = exc
        # The site's own feed must be well-formed: better one clear error than a guessed-at recovery.
        # What is still broken inside one item costs that item only (a problem line), not the poll.
        if b"xmlns:shortscience" in body[:4096]:
            root = _without_broken_items(body, exc, collector)
    if root is not None and root.tag == "rss":
        channel = root.find("channel")
        namespace = _site_namespace(channel.nsmap if channel is not None else root.nsmap)
        if namespace is not None:
            if channel is None:
                raise SourceError(f"{source}: not a feed: <rss> has no <channel>")
            return _parse_site_rss(channel, namespace, collector)
    return _parse_generic(body, content_type, collector, xml_error)


def _without_broken_items(body: bytes, error: etree.XMLSyntaxError, collector: _Collector) -> Any:
    """The site's feed parsed without the items that are not well-formed on their own; one problem each.

    Each item is tried between the document's head and tail; the head or tail itself broken (a
    DOCTYPE with entities, say), or no item to blame, is an error of the whole feed, as before.
    """
    spans = site_item_spans(body)
    whole = SourceError(f"{collector.source}: {_describe_xml_error(error)}")
    if not spans:
        raise whole from None
    head, tail = body[: spans[0][0]], body[spans[-1][1] :]
    try:
        etree.fromstring(head + tail, _xml_parser())
    except etree.XMLSyntaxError:
        raise whole from None  # the document around the items is broken: no item is to blame
    kept: list[bytes] = []
    for start, end in spans:
        item = body[start:end]
        try:
            etree.fromstring(head + item + tail, _xml_parser())
        except etree.XMLSyntaxError as exc:
            collector.problem(
                site_item_guid(item), f"not well-formed XML: {_XML_POSITION.sub('', exc.msg or str(exc))}: left out"
            )
            continue
        kept.append(item)
    if len(kept) == len(spans):
        raise whole from None
    try:
        return etree.fromstring(head + b"\n".join(kept) + tail, _xml_parser())
    except etree.XMLSyntaxError as exc:
        raise SourceError(f"{collector.source}: {_describe_xml_error(exc)}") from None


def _xml_parser() -> etree.XMLParser:
    # A parser per call: lxml parsers must not be shared between threads, and one costs microseconds.
    # No entity is ever expanded (XXE, billion laughs), nothing is fetched, no huge-document mode.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        recover=False,
        load_dtd=False,
        remove_comments=True,
        remove_pis=True,
    )


def _describe_xml_error(exc: etree.XMLSyntaxError) -> str:
    message = _XML_POSITION.sub("", exc.msg or str(exc))
    line, column = exc.position if exc.position else (exc.lineno, exc.offset)
    return f"not well-formed XML at line {line}, column {column}: {message}"


def _site_namespace(nsmap: Mapping[str | None, str]) -> str | None:
    """The URI of the site's extension namespace, whatever exact URI (http/https, slash) the site uses."""
    uri = nsmap.get("shortscience")
    if uri:
        return uri
    for value in nsmap.values():
        if "shortscience" in value.lower():
            return value
    return None


class _Collector:
    """Validates items one by one into summaries and problem lines; first occurrence of a guid wins."""

    __slots__ = ("min_votes", "problems", "seen", "source", "summaries")

    def __init__(self, source: str, min_votes: int) -> None:
        self.source = source
        self.min_votes = min_votes
        self.summaries: list[Summary] = []
        self.problems: list[str] = []
        self.seen: set[str] = set()

    def problem(self, guid: str | None, what: str) -> None:
        self.problems.append(str(SourceItemError(self.source, guid, what)))

    def add(
        self,
        *,
        guid: str | None,
        link: str | None,
        title: str | None,
        author: str | None,
        text: str | None,
        when: datetime | str,
        votes: str | None = None,
        arxiv_id: str | None = None,
        bibtex_key: str | None = None,
        categories: tuple[str, ...] = (),
    ) -> None:
        """Keep the item, or record why not. ``when`` is the edit time, or why there is none."""
        link = (link or "").strip()
        guid = (guid or "").strip() or link
        if not guid:
            self.problem(None, "has neither guid nor link")
            return
        if guid in self.seen:
            # Feeds list newest first: the first occurrence is the one to keep.
            self.problem(guid, "duplicate guid (the first occurrence was kept)")
            return
        self.seen.add(guid)
        clean_title = _feed_line(unescape_refs(title)) if title else ""
        if not clean_title:
            self.problem(guid, "has no title")
            return
        if not link.lower().startswith(("http://", "https://")) or _LINK_JUNK.search(link):
            self.problem(guid, f"link is not an http(s) URL: {link[:200]!r}")
            return
        # A space would end the URL wherever it is posted; encoded, the link still works.
        link = link.replace(" ", "%20")
        vote_count: int | None = None
        if votes is not None and votes.strip():
            try:
                vote_count = int(votes.strip())
            except ValueError:
                self.problem(guid, f"votes is not an integer: {votes[:50]!r}")
                return
            if vote_count < self.min_votes:
                return
        if isinstance(when, str):
            self.problem(guid, when)
            return
        self.summaries.append(
            Summary(
                guid=guid,
                title=clean_title,
                author=_feed_line(author) if author else ANONYMOUS,
                text=text or "",
                link=link,
                edited_at=when,
                votes=vote_count,
                arxiv_id=_arxiv_id(arxiv_id),
                bibtex_key=(bibtex_key or "").strip() or None,
                categories=categories,
            )
        )

    def result(self, title: str | None) -> ParseResult:
        return ParseResult(
            summaries=tuple(self.summaries),
            problems=tuple(self.problems),
            title=_feed_line(title) if title else None,
        )


def _feed_line(value: str) -> str:
    """A header-safe single line: control characters dropped, every run of whitespace one space.

    Not bot.render.posts.one_line: what is stored keeps what a reader sees (NFC and the invisible
    marks are the outputs' business), and the content hash, hence what counts as an edit, rests on it.
    """
    if _LINE_JUNK.search(value):
        value = _LINE_JUNK.sub("", value)
    return " ".join(value.split())


def _text(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _arxiv_id(value: str | None) -> str | None:
    if not value:
        return None
    value = _ARXIV_VERSION.sub("", _ARXIV_PREFIX.sub("", value.strip()))
    return value or None


def _rfc822(value: str | None) -> datetime | str:
    if not value or not value.strip():
        return "has no pubDate"
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return f"pubDate is not an RFC 822 date: {value.strip()[:80]!r}"
    # "-0000" means "UTC, local zone unknown" and comes back naive.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _rfc3339(value: object, field: str) -> datetime | str:
    if not isinstance(value, str) or not value.strip():
        return f"{field} is not a date: {value!r}"
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return f"{field} is not an RFC 3339 date: {value.strip()[:80]!r}"
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# --- the site's own RSS ----------------------------------------------------------------------------


def _element_text(element: Any) -> str:
    # Without children (the normal case) .text is the whole content, CDATA included. Unexpanded
    # entity references are children; itertext() keeps them as their literal "&name;".
    if len(element):
        return "".join(element.itertext())
    return element.text or ""


def _parse_site_rss(channel: Any, ns: str, collector: _Collector) -> ParseResult:
    votes_tag = f"{{{ns}}}votes"
    arxiv_tag = f"{{{ns}}}arxivid"
    bibtex_tag = f"{{{ns}}}bibtexkey"
    for item in channel.iterchildren("item"):
        fields: dict[str, str] = {}
        for child in item:
            tag = child.tag
            # First of each wins; entity references have a non-string tag.
            if isinstance(tag, str) and tag not in fields:
                fields[tag] = _element_text(child)
        collector.add(
            guid=fields.get("guid"),
            link=fields.get("link"),
            title=fields.get("title"),
            author=fields.get("author"),
            text=_text(fields.get("description", "")),
            when=_rfc822(fields.get("pubDate")),
            votes=fields.get(votes_tag),
            arxiv_id=fields.get(arxiv_tag),
            bibtex_key=fields.get(bibtex_tag),
        )
    return collector.result(channel.findtext("title"))


# --- any other RSS or Atom feed ----------------------------------------------------------------------


def _parse_generic(
    body: bytes, content_type: str | None, collector: _Collector, xml_error: etree.XMLSyntaxError | None
) -> ParseResult:
    source = collector.source
    # An HTTP charset overrides the document's own declaration (RFC 7303); without one, the
    # document decides, so a bare "text/xml" must not be passed on (feedparser would assume ASCII).
    headers = {"content-type": content_type} if content_type and "charset=" in content_type.lower() else {}
    # A stream, never the bytes themselves: feedparser opens a bytes value that looks like a path.
    parsed = feedparser.parse(
        io.BytesIO(body), response_headers=headers, sanitize_html=False, resolve_relative_uris=False
    )
    if not parsed.entries:
        if xml_error is not None:
            # "not a feed" would send the operator after the URL when it is the document that is broken.
            what = "no item could be read from this broken feed" if parsed.version else "not a feed"
            raise SourceError(f"{source}: {what}: {_describe_xml_error(xml_error)}")
        if parsed.bozo:
            raise SourceError(f"{source}: not a feed: {parsed.get('bozo_exception')}")
        if not parsed.version:
            raise SourceError(f"{source}: not an RSS, Atom or JSON feed")
    entries = list(parsed.entries)
    if xml_error is not None and entries and _ends_inside_entry(body, parsed.get("encoding")):
        # A cut-off download or a half-written file: feedparser hands the last item back with
        # whatever it had read so far, and publishing that would publish half a summary.
        cut = entries.pop()
        collector.problem(cut.get("id") or cut.get("link"), "the feed ends inside this item (cut off?): left out")
    feed = parsed.feed
    feed_author = _name_of(feed.get("author_detail"), feed.get("author"))
    for entry in entries:
        content = entry.get("content")
        text = content[0].get("value") if content else entry.get("summary")
        link = entry.get("link")
        collector.add(
            guid=entry.get("id"),
            link=link,
            title=_entry_title(entry),
            author=_name_of(entry.get("author_detail"), entry.get("author")) or feed_author,
            text=_clean_text(text),
            when=_struct_time(entry),
            arxiv_id=_arxiv_from_link(link),
            categories=_terms(entry.get("tags")),
        )
    return collector.result(feed.get("title"))


def _ends_inside_entry(body: bytes, encoding: str | None) -> bool:
    """Whether the document stops after an item's start tag and before its end tag (ill-formed feeds only)."""
    try:
        text = body.decode(encoding or "utf-8", "replace")
    except LookupError:
        text = body.decode("latin-1")
    after_last_close = 0
    for match in _ENTRY_CLOSE.finditer(text):
        after_last_close = match.end()
    return _ENTRY_OPEN.search(text, after_last_close) is not None


def _entry_title(entry: Any) -> str | None:
    title = entry.get("title")
    if not title:
        return None
    detail = entry.get("title_detail") or {}
    if detail.get("type") in _HTML_TYPES and "<" in title:
        # feedparser hands html-typed titles (every RSS title) back as markup: drop the tags here;
        # the collector's one round of unescaping then turns the markup into plain text.
        return _HTML_TAG.sub("", title)
    return title


def _name_of(detail: Any, fallback: Any) -> str | None:
    """A display name, never an e-mail address."""
    if detail and detail.get("name"):
        return str(detail["name"])
    if isinstance(fallback, str) and "@" not in fallback and fallback.strip():
        return fallback
    return None


def _struct_time(entry: Any) -> datetime | str:
    # dict.get: FeedParserDict.get("updated...") falls back to "published..." with a DeprecationWarning.
    for key in ("updated_parsed", "published_parsed"):
        value = dict.get(entry, key)
        if isinstance(value, time.struct_time):
            return datetime(*value[:6], tzinfo=UTC)
    raw = dict.get(entry, "updated") or dict.get(entry, "published")
    if raw:
        return f"date is not understood: {str(raw)[:80]!r}"
    return "has no date (updated or published)"


def _terms(tags: Any) -> tuple[str, ...]:
    if not tags:
        return ()
    return tuple(term for tag in tags if (term := _feed_line(str(tag.get("term") or tag.get("label") or ""))))


def _arxiv_from_link(link: str | None) -> str | None:
    match = _ARXIV_LINK.match(link.strip()) if link else None
    return match.group(1) if match else None


def _clean_text(text: Any) -> str:
    if not isinstance(text, str):
        return ""
    if _TEXT_JUNK.search(text):
        text = _TEXT_JUNK.sub("", text)
    return _text(text)


# --- JSON Feed 1.0 / 1.1 -----------------------------------------------------------------------------


def _parse_json_feed(body: bytes, collector: _Collector) -> ParseResult:
    source = collector.source
    try:
        document = json.loads(body)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise SourceError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise SourceError(f"{source}: not a JSON Feed: the top level is not an object")
    version = document.get("version")
    if not isinstance(version, str) or "jsonfeed.org/version/" not in version:
        raise SourceError(f"{source}: not a JSON Feed: version is {version!r}")
    items = document.get("items")
    if not isinstance(items, list):
        raise SourceError(f"{source}: not a JSON Feed: items is not a list")
    feed_author = _json_author(document)
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            collector.problem(f"#{index + 1}", "is not a JSON object")
            continue
        guid = item.get("id")
        link = item.get("url")
        text = next((v for k in ("content_html", "content_text", "summary") if isinstance(v := item.get(k), str)), "")
        if "date_modified" in item:
            when = _rfc3339(item["date_modified"], "date_modified")
        elif "date_published" in item:
            when = _rfc3339(item["date_published"], "date_published")
        else:
            when = "has no date (date_modified or date_published)"
        tags = item.get("tags")
        collector.add(
            guid=str(guid) if isinstance(guid, (str, int)) else None,
            link=link if isinstance(link, str) else None,
            title=item.get("title") if isinstance(item.get("title"), str) else None,
            author=_json_author(item) or feed_author,
            text=_clean_text(text),
            when=when,
            arxiv_id=_arxiv_from_link(link if isinstance(link, str) else None),
            categories=tuple(t for tag in tags if isinstance(tag, str) and (t := _feed_line(tag)))
            if isinstance(tags, list)
            else (),
        )
    title = document.get("title")
    return collector.result(title if isinstance(title, str) else None)


def _json_author(obj: Mapping[str, Any]) -> str | None:
    """JSON Feed 1.1 `authors` (a list) or 1.0 `author` (one object): the first name given."""
    candidates = obj.get("authors")
    if not isinstance(candidates, list):
        candidates = [obj.get("author")]
    for candidate in candidates:
        if isinstance(candidate, dict) and isinstance(candidate.get("name"), str) and candidate["name"].strip():
            return str(candidate["name"])
    return None
