"""Serialise feeds: feedgen writes RSS 2.0 and Atom 1.0, the json module JSON Feed 1.1.

Each entry is serialised once per format into a byte fragment (feedgen's own
``rss_entry``/``atom_entry``) and the fragments are spliced into a feed head
that feedgen writes without entries. The same entry appears in the main feed,
its category feeds and an archive page, so a :class:`FragmentCache` kept across
builds means a rebuild only serialises what is new. No I/O here.
"""

from __future__ import annotations

import functools
import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NewType

from feedgen.entry import FeedEntry as FeedgenEntry
from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.ext.dc import DcEntryExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from bot.errors import RenderError
from bot.feeds.clean import MAX_AUTHOR, MAX_TEASER, MAX_TITLE, clean_html, clean_line, clean_url
from bot.feeds.model import FeedEntry

ATOM_NS = "http://www.w3.org/2005/Atom"
CONTENT_NS = "http://purl.org/rss/1.0/modules/content/"
DC_NS = "http://purl.org/dc/elements/1.1/"
FH_NS = "http://purl.org/syndication/history/1.0"
JSONFEED_VERSION = "https://jsonfeed.org/version/1.1"

#: the date of an empty feed: fixed, so an empty store still builds byte-identical files
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: bump when the output format changes, so fingerprints of old files stop matching
FORMAT_VERSION = 2

#: the namespaces an RSS document declares at its root (feedgen: atom, content; dc extension: dc)
_RSS_NSMAP = {"atom": ATOM_NS, "content": CONTENT_NS, "dc": DC_NS}


#: a FeedEntry with every field made safe to serialise (see bot.feeds.clean): the same record, typed apart
CleanEntry = NewType("CleanEntry", FeedEntry)


def _utc(entry: FeedEntry, name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        # feedgen rejects naive datetimes too; say which entry broke the contract.
        raise RenderError(f"feed entry {entry.guid!r}: {name} is a naive datetime; expected aware UTC")
    return value.astimezone(UTC).replace(microsecond=0)


@functools.lru_cache(maxsize=4096)
def clean_categories(categories: tuple[str, ...]) -> tuple[str, ...]:
    """Categories as clean, unique labels, in their given order."""
    seen: dict[str, None] = {}
    for category in categories:
        label = clean_line(category, limit=100)
        if label:
            seen.setdefault(label, None)
    return tuple(seen)


def clean_entry(entry: FeedEntry) -> CleanEntry:
    """Validate the dates and make every text field safe."""
    guid = clean_line(entry.guid, limit=2000)
    link = clean_url(entry.link) or guid
    return CleanEntry(
        FeedEntry(
            guid=guid,
            title=clean_line(entry.title, limit=MAX_TITLE, fallback="(untitled)"),
            author=clean_line(entry.author, limit=MAX_AUTHOR, fallback="Anonymous"),
            link=link,
            content_html=clean_html(entry.content_html, link),
            summary_text=clean_line(entry.summary_text, limit=MAX_TEASER),
            published=_utc(entry, "published", entry.published),
            updated=_utc(entry, "updated", entry.updated),
            categories=clean_categories(entry.categories),
            paper_url=clean_url(entry.paper_url),
            first_seen=entry.first_seen,
        )
    )


# ---- feedgen extensions: what feedgen cannot say in RSS by itself ----


class _RssAtomLinks(BaseExtension):
    """Extra atom:link elements in the RSS channel (feedgen writes only rel=self there)."""

    def __init__(self) -> None:
        self.links: list[tuple[str, str]] = []

    def extend_ns(self) -> dict[str, str]:
        return {"atom": ATOM_NS}

    def extend_rss(self, feed: Any) -> Any:
        channel = feed[0]
        for rel, href in self.links:
            etree.SubElement(channel, f"{{{ATOM_NS}}}link", href=href, rel=rel)
        return feed


class _AtomArchive(BaseExtension):
    """RFC 5005 fh:archive marker of an archive document."""

    def extend_ns(self) -> dict[str, str]:
        return {"fh": FH_NS}

    def extend_atom(self, feed: Any) -> Any:
        etree.SubElement(feed, f"{{{FH_NS}}}archive")
        return feed


class _RssPaperLink(BaseEntryExtension):
    """The paper's page as atom:link rel=related in an RSS item (RSS has one <link>: the summary)."""

    def __init__(self) -> None:
        self.href: str | None = None

    def extend_rss(self, item: Any) -> Any:
        if self.href:
            etree.SubElement(item, f"{{{ATOM_NS}}}link", href=self.href, rel="related")
        return item


# ---- entries ----


def _feedgen_entry(e: CleanEntry) -> FeedgenEntry:
    fe = FeedgenEntry()
    # The display name goes to dc:creator: RSS <author> must be an e-mail address. Registered by class:
    # load_extension("dc") first tries to import a feedgen.ext.dc_entry that does not exist, which
    # searches the file system on every entry (a tenth of writing an archive entry).
    fe.register_extension("dc", DcEntryExtension, atom=False, rss=True)
    fe.register_extension("paper", _RssPaperLink, atom=False, rss=True)
    fe.guid(e.guid, permalink=e.guid == e.link)
    fe.title(e.title)
    fe.author(name=e.author)
    fe.dc.dc_creator(e.author)
    fe.link(href=e.link, rel="alternate", type="text/html")
    if e.paper_url:
        fe.link(href=e.paper_url, rel="related", type="text/html", title="Paper")
        fe.paper.href = e.paper_url
    # Order matters in feedgen: summary() fills the RSS description when empty,
    # description() overwrites Atom content, content() sets it last.
    fe.summary(e.summary_text or e.title, type="text")
    # RSS descriptions are read as HTML: escape the plain teaser so it stays text.
    fe.description(html.escape(e.summary_text or e.title, quote=False))
    fe.content(e.content_html, type="html")
    fe.published(e.published)
    fe.updated(e.updated)
    if e.categories:
        fe.category([{"term": c} for c in e.categories])
    return fe


def _rss_item_prefix() -> bytes:
    """The namespace declarations lxml puts on an item serialised out of its document."""
    channel = etree.Element("channel", nsmap=_RSS_NSMAP)
    item = etree.SubElement(channel, "item")
    text = etree.tostring(item)
    return text[len(b"<item") : -len(b"/>")]


_RSS_ITEM_DECLS = _rss_item_prefix()


def rss_fragment(e: CleanEntry) -> bytes:
    """One <item>, indented for its place in the channel."""
    item = _feedgen_entry(e).rss_entry()
    # Adopt the item into a channel with the document's prefixes, so it says
    # content:encoded and dc:creator instead of ns0:encoded.
    channel = etree.Element("channel", nsmap=_RSS_NSMAP)
    channel.append(item)
    etree.indent(item, space="  ", level=2)
    text = etree.tostring(item, encoding="UTF-8", xml_declaration=False, with_tail=False)
    # The root of the document declares these once; drop the copy on the start tag.
    if text.startswith(b"<item" + _RSS_ITEM_DECLS):
        text = b"<item" + text[len(b"<item" + _RSS_ITEM_DECLS) :]
    return b"    " + text + b"\n"


def atom_fragment(e: CleanEntry) -> bytes:
    """One <entry>, indented for its place in the feed."""
    fe = _feedgen_entry(e)
    entry = fe.atom_entry()
    # feedgen 1.0 drops rel/type/title of entry links (it reads them from the new
    # element instead of the link data): put them back, or the paper link would
    # be a second rel=alternate, which Atom forbids.
    for element, data in zip(entry.findall("link"), fe.link(), strict=True):
        for name in ("rel", "type", "title"):
            if data.get(name):
                element.set(name, data[name])
    etree.indent(entry, space="  ", level=1)
    return b"  " + etree.tostring(entry, encoding="UTF-8", xml_declaration=False, with_tail=False) + b"\n"


def _rfc3339(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def json_item(e: CleanEntry) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": e.guid,
        "url": e.link,
        "title": e.title,
        "content_html": e.content_html,
        "summary": e.summary_text or e.title,
        "date_published": _rfc3339(e.published),
        "date_modified": _rfc3339(e.updated),
        "authors": [{"name": e.author}],
    }
    if e.paper_url:
        item["external_url"] = e.paper_url
    if e.categories:
        item["tags"] = list(e.categories)
    return item


def json_fragment(e: CleanEntry) -> bytes:
    """One JSON Feed item, indented for its place in the items array."""
    text = json.dumps(json_item(e), ensure_ascii=False, indent=2)
    # JSON strings never hold a raw newline, so indenting by lines is safe.
    return ("\n".join("    " + line for line in text.split("\n"))).encode("utf-8")


class FragmentCache:
    """Serialised entries by format, kept between builds of a long-lived process.

    A fragment is reused only for an entry equal in every field to the one it
    was made from. After each build the builder keeps only the
    entries of the files a next build would touch.
    """

    def __init__(self) -> None:
        # (kind, guid, updated) -> (the entry it was made from, its bytes). Hashing
        # a whole entry (kilobytes of HTML) costs more than comparing it on a hit.
        self._fragments: dict[tuple[str, str, datetime], tuple[FeedEntry, bytes]] = {}
        self._clean: dict[tuple[str, datetime], tuple[FeedEntry, CleanEntry]] = {}

    def __len__(self) -> int:
        return len(self._fragments)

    def clean(self, entry: FeedEntry) -> CleanEntry:
        key = (entry.guid, entry.updated)
        found = self._clean.get(key)
        if found is None or found[0] != entry:
            found = self._clean[key] = (entry, clean_entry(entry))
        return found[1]

    def fragment(self, kind: str, entry: FeedEntry) -> bytes:
        key = (kind, entry.guid, entry.updated)
        found = self._fragments.get(key)
        if found is None or found[0] != entry:
            found = self._fragments[key] = (entry, _SERIALISERS[kind](self.clean(entry)))
        return found[1]

    def forget(self, guids: Iterable[str]) -> None:
        """Drop these entries' fragments (a full archive page once written: no other file needs them)."""
        gone = set(guids)
        if gone:
            self._clean = {k: v for k, v in self._clean.items() if k[0] not in gone}
            self._fragments = {k: v for k, v in self._fragments.items() if k[1] not in gone}

    def end_build(self, keep: set[str]) -> None:
        """Forget every entry whose guid is not in `keep`, so the cache never outgrows the feeds."""
        self._clean = {k: v for k, v in self._clean.items() if k[0] in keep}
        self._fragments = {k: v for k, v in self._fragments.items() if k[1] in keep}


_SERIALISERS = {"rss": rss_fragment, "atom": atom_fragment, "json": json_fragment}


# ---- documents ----


@dataclass(frozen=True, slots=True)
class FeedMeta:
    """Feed-level data of one document (all three formats of a feed share most of it)."""

    #: feed title
    title: str
    #: feed description / subtitle
    description: str
    #: the feed id (Atom) : the Atom document's URL, shared by a feed's archive pages
    feed_id: str
    #: this document's own URL (rel=self)
    self_url: str
    #: the HTML page the feed belongs to (rel=alternate, home_page_url)
    home_url: str
    #: RFC 5646 language tag
    language: str
    #: WebSub hub URL, or "" for none
    hub: str = ""
    #: RFC 5005 links: prev-archive, next-archive, current (absolute URLs or "")
    prev_archive: str = ""
    next_archive: str = ""
    current: str = ""
    #: an RFC 5005 archive document (fh:archive)
    archive: bool = False


def feed_updated(entries: Sequence[CleanEntry]) -> datetime:
    """The feed's date: its newest entry's last edit, never the clock."""
    return max((e.updated for e in entries), default=EPOCH)


def _generator(meta: FeedMeta, updated: datetime) -> FeedGenerator:
    fg = FeedGenerator()
    fg.id(meta.feed_id)
    fg.title(meta.title)
    fg.subtitle(meta.description)
    fg.description(meta.description)
    fg.language(meta.language)
    # feedgen would stamp the current time; the newest entry keeps rebuilds identical.
    fg.updated(updated)
    fg.generator("ShortScience feed bot", uri="https://www.shortscience.org")
    # RSS <link> is the LAST link added: self first, alternate last.
    fg.link(href=meta.self_url, rel="self")
    if meta.hub:
        fg.link(href=meta.hub, rel="hub")
    if meta.current:
        fg.link(href=meta.current, rel="current")
    if meta.prev_archive:
        fg.link(href=meta.prev_archive, rel="prev-archive")
    if meta.next_archive:
        fg.link(href=meta.next_archive, rel="next-archive")
    fg.link(href=meta.home_url, rel="alternate", type="text/html")
    return fg


def _splice(head: bytes, marker: bytes, fragments: Sequence[bytes]) -> bytes:
    at = head.rfind(marker)
    if at < 0:  # pragma: no cover - feedgen's output always closes the element
        raise RenderError(f"feed head has no {marker!r}")
    return b"".join((head[:at], *fragments, head[at:]))


def rss_document(meta: FeedMeta, entries: Sequence[CleanEntry], fragments: Sequence[bytes]) -> bytes:
    fg = _generator(meta, feed_updated(entries))
    fg.load_extension("dc", atom=False, rss=True)
    if meta.hub:
        fg.register_extension("websub", _RssAtomLinks, atom=False, rss=True)
        fg.websub.links.append(("hub", meta.hub))
    fg.ttl(60)
    head: bytes = fg.rss_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    return _splice(head, b"  </channel>", fragments)


def atom_document(meta: FeedMeta, entries: Sequence[CleanEntry], fragments: Sequence[bytes]) -> bytes:
    fg = _generator(meta, feed_updated(entries))
    if meta.archive:
        fg.register_extension("fh", _AtomArchive, atom=True, rss=False)
    head: bytes = fg.atom_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    return _splice(head, b"</feed>", fragments)


def json_document(meta: FeedMeta, entries: Sequence[CleanEntry], fragments: Sequence[bytes]) -> bytes:
    head: dict[str, Any] = {
        "version": JSONFEED_VERSION,
        "title": meta.title,
        "home_page_url": meta.home_url,
        "feed_url": meta.self_url,
        "description": meta.description,
        "language": meta.language,
    }
    if meta.hub:
        head["hubs"] = [{"type": "WebSub", "url": meta.hub}]
    text = json.dumps(head, ensure_ascii=False, indent=2).encode("utf-8")
    if not fragments:
        return text[:-2] + b',\n  "items": []\n}\n'
    return b"".join((text[:-2], b',\n  "items": [\n', b",\n".join(fragments), b"\n  ]\n}\n"))


DOCUMENTS = {"rss": rss_document, "atom": atom_document, "json": json_document}
