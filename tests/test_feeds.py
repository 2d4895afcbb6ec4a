"""The feed builder: valid RSS/Atom/JSON Feed, determinism, archive, hostile input, atomic writes, WebSub."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs

import feedparser
import httpx
import pytest
from lxml import etree

from bot.errors import RenderError
from bot.feeds import MANIFEST, FeedEntry, FragmentCache, build_feeds, ping_websub, write_atomic
from bot.settings import Env, FeedSettings, Settings

BASE = "https://feeds.example.org"
HUB = "https://hub.example.org/"
NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "content": "http://purl.org/rss/1.0/modules/content/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "fh": "http://purl.org/syndication/history/1.0",
}
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
RFC822 = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"\d{2}:\d{2}:\d{2} [+-]\d{4}$"
)
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def make_settings(out: Path, **feeds: object) -> Settings:
    values: dict[str, object] = {"websub_hub": HUB, "archive_page_size": 4, "size": 5}
    values.update(feeds)
    return Settings(env=Env(bot_public_dir=str(out), public_base_url=BASE), feeds=FeedSettings(**values))  # type: ignore[arg-type]


def entry(i: int, **changes: object) -> FeedEntry:
    link = f"https://www.shortscience.org/paper?bibtexKey=key{i}#user{i}"
    e = FeedEntry(
        guid=link,
        title=f"Paper {i}: Group Normalization",
        author=f"Reader {i}",
        link=link,
        content_html=(
            f'<p>Summary {i} with <math><mi>x</mi></math> and <a href="https://arxiv.org/abs/1803.08494">a '
            "link</a>.</p>"
        ),
        summary_text=f"Summary {i}, a teaser.",
        published=T0 + timedelta(days=i),
        updated=T0 + timedelta(days=i, hours=1),
        categories=("cs.LG", "stat.ML") if i % 2 else ("cs.CV",),
        paper_url="https://arxiv.org/abs/1803.08494",
    )
    return replace(e, **changes)  # type: ignore[arg-type]


def feed_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))


def check_rss(path: Path, url: str) -> etree._Element:
    root = etree.fromstring(path.read_bytes())
    assert root.tag == "rss" and root.get("version") == "2.0"
    channel = root.find("channel")
    assert channel is not None
    for name in ("title", "link", "description", "lastBuildDate"):
        assert (channel.findtext(name) or "").strip(), name
    assert RFC822.match(channel.findtext("lastBuildDate") or "")
    assert channel.findtext("link") == BASE + "/"  # the RSS <link> is the alternate page, not the feed
    selfs = channel.findall("atom:link[@rel='self']", NS)
    assert [s.get("href") for s in selfs] == [url]
    for item in channel.findall("item"):
        guid = item.find("guid")
        assert guid is not None and guid.get("isPermaLink") == "true" and guid.text == item.findtext("link")
        assert RFC822.match(item.findtext("pubDate") or ""), item.findtext("pubDate")
        assert item.findtext("title") and item.findtext("description") is not None
        assert item.find("content:encoded", NS) is not None
        assert item.findtext("dc:creator", namespaces=NS)
        assert item.find("author") is None  # a display name is not a valid RSS author
    return channel


def check_atom(path: Path, url: str) -> etree._Element:
    root = etree.fromstring(path.read_bytes())
    assert root.tag == "{http://www.w3.org/2005/Atom}feed"
    for name in ("id", "title", "updated"):
        assert root.findtext(f"atom:{name}", namespaces=NS), name
    assert RFC3339.match(root.findtext("atom:updated", namespaces=NS) or "")
    assert [link.get("href") for link in root.findall("atom:link[@rel='self']", NS)] == [url]
    ids = []
    for e in root.findall("atom:entry", NS):
        for name in ("id", "title", "updated", "published"):
            assert e.findtext(f"atom:{name}", namespaces=NS), name
        assert RFC3339.match(e.findtext("atom:updated", namespaces=NS) or "")
        assert e.find("atom:content[@type='html']", NS) is not None
        assert e.findtext("atom:author/atom:name", namespaces=NS)
        alternates = e.findall("atom:link[@rel='alternate']", NS)
        assert len(alternates) == 1
        ids.append(e.findtext("atom:id", namespaces=NS))
    assert len(ids) == len(set(ids))
    return root


def check_json(path: Path, url: str) -> dict[str, object]:
    doc = json.loads(path.read_bytes().decode("utf-8"))
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert doc["title"] and doc["feed_url"] == url and doc["home_page_url"] == BASE + "/"
    for item in doc["items"]:
        assert item["id"] and ("content_html" in item or "content_text" in item)
        assert RFC3339.match(item["date_published"]) and RFC3339.match(item["date_modified"])
        assert item["authors"][0]["name"]
    return doc  # type: ignore[no-any-return]


def check_all(out: Path) -> None:
    files = feed_files(out)
    assert files
    for path in files:
        rel = path.relative_to(out).as_posix()
        url = f"{BASE}/{rel}"
        if path.suffix != ".json":  # feedparser 6 reads RSS and Atom only
            parsed = feedparser.parse(path.read_bytes())
            assert not parsed.bozo, (rel, parsed.get("bozo_exception"))
        if path.suffix == ".rss":
            etree.fromstring(path.read_bytes())
            check_rss(path, url)
        elif path.suffix == ".atom":
            check_atom(path, url)
        else:
            check_json(path, url)


def test_every_feed_is_valid_and_complete(tmp_path: Path) -> None:
    entries = [entry(i) for i in range(10)]
    report = build_feeds(entries, make_settings(tmp_path))
    names = {p.relative_to(tmp_path).as_posix() for p in feed_files(tmp_path)}
    assert {"feed.rss", "feed.atom", "feed.json"} <= names
    assert {f"category/{c}.{k}" for c in ("cs.LG", "stat.ML", "cs.CV") for k in ("rss", "atom", "json")} <= names
    assert {"archive/1.atom", "archive/2.atom", "archive/3.atom"} <= names  # 10 entries, 4 a page
    assert set(report.changed) == names
    check_all(tmp_path)

    # Main feeds: the 5 newest summaries, newest first, with every field.
    channel = check_rss(tmp_path / "feed.rss", f"{BASE}/feed.rss")
    items = channel.findall("item")
    assert [i.findtext("guid") for i in items] == [entry(i).guid for i in (9, 8, 7, 6, 5)]
    first = items[0]
    assert first.findtext("title") == "Paper 9: Group Normalization"
    assert first.findtext("dc:creator", namespaces=NS) == "Reader 9"
    assert "<math>" in (first.findtext("content:encoded", namespaces=NS) or "")
    assert [c.text for c in first.findall("category")] == ["cs.LG", "stat.ML"]
    assert first.find("atom:link[@rel='related']", NS).get("href") == "https://arxiv.org/abs/1803.08494"  # type: ignore[union-attr]
    assert parsedate_to_datetime(first.findtext("pubDate") or "") == entry(9).published
    assert channel.find("atom:link[@rel='hub']", NS).get("href") == HUB  # type: ignore[union-attr]
    assert parsedate_to_datetime(channel.findtext("lastBuildDate") or "") == entry(9).updated

    atom = feedparser.parse((tmp_path / "feed.atom").read_bytes())
    assert atom.feed.updated_parsed[:6] == entry(9).updated.timetuple()[:6]
    e9 = atom.entries[0]
    assert e9.id == entry(9).guid and e9.author == "Reader 9"
    assert e9.published_parsed[:6] == entry(9).published.timetuple()[:6]
    assert e9.updated_parsed[:6] == entry(9).updated.timetuple()[:6]
    assert {(link.rel, link.href) for link in e9.links} == {
        ("alternate", entry(9).link),
        ("related", "https://arxiv.org/abs/1803.08494"),
    }
    assert e9.summary == "Summary 9, a teaser."
    assert {link.rel: link.href for link in atom.feed.links}["hub"] == HUB

    doc = check_json(tmp_path / "feed.json", f"{BASE}/feed.json")
    assert doc["hubs"] == [{"type": "WebSub", "url": HUB}]
    item = doc["items"][0]  # type: ignore[index]
    assert item["external_url"] == "https://arxiv.org/abs/1803.08494" and item["tags"] == ["cs.LG", "stat.ML"]
    assert item["date_modified"] == "2024-03-10T13:00:00Z"

    # A category feed holds only its category.
    lg = feedparser.parse((tmp_path / "category/cs.LG.atom").read_bytes())
    assert [e.id for e in lg.entries] == [entry(i).guid for i in (9, 7, 5, 3, 1)]


def test_rebuild_is_byte_identical_and_reports_no_change(tmp_path: Path) -> None:
    entries = [entry(i) for i in range(9)]
    build_feeds(entries, make_settings(tmp_path / "a"))
    build_feeds(list(reversed(entries)), make_settings(tmp_path / "b"), cache=FragmentCache())
    a = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in feed_files(tmp_path / "a")}
    b = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in feed_files(tmp_path / "b")}
    assert a == b  # input order does not matter, and nothing depends on the clock

    mtimes = {p: p.stat().st_mtime_ns for p in feed_files(tmp_path / "a")}
    again = build_feeds(entries, make_settings(tmp_path / "a"))
    assert again.changed == () and again.removed == () and again.unchanged == len(a)
    forced = build_feeds(entries, make_settings(tmp_path / "a"), force=True)
    assert forced.changed == ()  # re-serialised, found identical, not rewritten
    assert {p: p.stat().st_mtime_ns for p in feed_files(tmp_path / "a")} == mtimes


def test_edit_updates_the_entry_and_pings_only_subscribed_feeds(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    entries = [entry(i) for i in range(9)]
    cache = FragmentCache()
    build_feeds(entries, settings, cache=cache)
    entries[8] = replace(entries[8], title="Paper 8, edited", updated=T0 + timedelta(days=30))
    report = build_feeds(entries, settings, cache=cache)
    assert "feed.rss" in report.changed and "category/cs.CV.atom" in report.changed
    assert "category/cs.LG.rss" not in report.changed  # entry 8 is cs.CV only
    assert f"{BASE}/feed.atom" in report.hub_topics and not any("archive" in u for u in report.hub_topics)
    titles = [e.title for e in feedparser.parse((tmp_path / "feed.atom").read_bytes()).entries]
    assert titles[0] == "Paper 8, edited"  # still in place: ordered by first seen, not by edit


def test_empty_store_writes_valid_deterministic_feeds(tmp_path: Path) -> None:
    build_feeds([], make_settings(tmp_path / "a"))
    build_feeds([], make_settings(tmp_path / "b"))
    names = sorted(p.relative_to(tmp_path / "a").as_posix() for p in feed_files(tmp_path / "a"))
    assert names == ["archive/1.atom", "feed.atom", "feed.json", "feed.rss"]
    check_all(tmp_path / "a")
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert b"<updated>1970-01-01T00:00:00+00:00</updated>" in (tmp_path / "a/feed.atom").read_bytes()


def archive_links(path: Path) -> dict[str, str]:
    root = etree.fromstring(path.read_bytes())
    return {str(link.get("rel")): str(link.get("href")) for link in root.findall("atom:link", NS)}


def test_archive_pages_are_linked_and_full_pages_immutable(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, archive_page_size=3)
    entries = [entry(i) for i in range(7)]
    build_feeds(entries, settings)
    # 7 entries, 3 a page: two full pages and an open one, oldest first.
    ids = [[e.id for e in feedparser.parse((tmp_path / f"archive/{n}.atom").read_bytes()).entries] for n in (1, 2, 3)]
    assert ids == [[entry(i).guid for i in r] for r in ((0, 1, 2), (3, 4, 5), (6,))]
    first, middle, last = (archive_links(tmp_path / f"archive/{n}.atom") for n in (1, 2, 3))
    assert "prev-archive" not in first and first["next-archive"] == f"{BASE}/archive/2.atom"
    assert middle["prev-archive"] == f"{BASE}/archive/1.atom" and middle["next-archive"] == f"{BASE}/archive/3.atom"
    assert last["prev-archive"] == f"{BASE}/archive/2.atom" and "next-archive" not in last
    assert first["current"] == middle["current"] == f"{BASE}/feed.atom"
    for n in (1, 2, 3):
        assert etree.fromstring((tmp_path / f"archive/{n}.atom").read_bytes()).find("fh:archive", NS) is not None
    assert archive_links(tmp_path / "feed.atom")["prev-archive"] == f"{BASE}/archive/3.atom"

    full = {n: (tmp_path / f"archive/{n}.atom").read_bytes() for n in (1, 2)}
    entries += [entry(i) for i in range(7, 12)]  # fills page 3, opens page 4 (12 entries: page 5 is the empty open one)
    report = build_feeds(entries, settings)
    assert {n: (tmp_path / f"archive/{n}.atom").read_bytes() for n in (1, 2)} == full
    assert "archive/1.atom" not in report.changed and "archive/3.atom" in report.changed
    assert (tmp_path / "archive/5.atom").is_file()
    page3 = (tmp_path / "archive/3.atom").read_bytes()
    entries.append(entry(12))
    build_feeds(entries, settings)
    assert (tmp_path / "archive/3.atom").read_bytes() == page3  # a full page stays put

    entries[1] = replace(entries[1], title="Edited", updated=T0 + timedelta(days=99))
    report = build_feeds(entries, settings)
    assert "archive/1.atom" in report.changed and "archive/2.atom" not in report.changed
    check_all(tmp_path)


HOSTILE = "Evil\r\nTitle\x0b\x00\x1f\ufffe\ufeff \u202eetirw\u202c <script>alert(1)</script> \udcff end"


def test_hostile_entries_make_valid_feeds(tmp_path: Path) -> None:
    huge = "A" * 5_000_000
    entries = [
        entry(
            1,
            title=HOSTILE,
            author="Mallory\r\nBcc: x@example.org\u202e",
            summary_text=HOSTILE,
            categories=("../../etc/passwd", "cs.LG\x00", "a b"),
            content_html="<p>bad \x0b char \ufffe</p>",
        ),
        entry(2, title=huge, author=huge, summary_text=huge, content_html=f"<p>{huge}</p>"),
        entry(
            3,
            title="\x0b\u202e  ",
            author="",
            content_html='<p><a href="/relative/path">rel</a><img src="img.png"></p>',
        ),
    ]
    report = build_feeds(entries, make_settings(tmp_path))
    check_all(tmp_path)
    # Category names are made safe: every file stays inside category/.
    for rel in report.changed:
        assert ".." not in rel and (tmp_path / rel).resolve().is_relative_to(tmp_path.resolve())
    assert (tmp_path / "category/cs.LG.rss").is_file()

    doc = json.loads((tmp_path / "feed.json").read_text(encoding="utf-8"))
    by_id = {i["id"]: i for i in doc["items"]}
    one = by_id[entry(1).guid]
    assert one["title"] == "Evil Title etirw alert(1) end"
    assert one["authors"] == [{"name": "Mallory Bcc: x@example.org"}]
    assert "\x0b" not in one["content_html"] and "\ufffe" not in one["content_html"]
    two = by_id[entry(2).guid]
    assert len(two["title"]) <= 500 and len(two["authors"][0]["name"]) <= 200
    assert len(two["content_html"]) > 5_000_000  # content is kept whole
    three = by_id[entry(3).guid]
    assert three["title"] == "(untitled)" and three["authors"] == [{"name": "Anonymous"}]
    link = entry(3).link
    assert 'href="https://www.shortscience.org/relative/path"' in three["content_html"]
    assert 'src="https://www.shortscience.org/img.png"' in three["content_html"] and link
    for path in feed_files(tmp_path):
        text = path.read_text(encoding="utf-8")
        assert "\u202e" not in text and "<script" not in text and "\x0b" not in text


def test_naive_dates_are_refused_with_the_entry_named(tmp_path: Path) -> None:
    bad = entry(1, updated=datetime(2024, 1, 1))
    with pytest.raises(RenderError, match=r"key1.*naive"):
        build_feeds([bad], make_settings(tmp_path))


def test_files_of_a_vanished_category_are_removed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    build_feeds([entry(1), entry(2)], settings)
    assert (tmp_path / "category/cs.CV.rss").is_file()
    report = build_feeds([entry(1)], settings)
    assert set(report.removed) == {"category/cs.CV.rss", "category/cs.CV.atom", "category/cs.CV.json"}
    assert not (tmp_path / "category/cs.CV.rss").exists()


def test_atomic_write_never_leaves_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "feed.rss"
    write_atomic(target, b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    # The final step fails (the target is a directory): the temp file is gone, nothing half-written appears.
    blocked = tmp_path / "blocked.rss"
    blocked.mkdir()
    with pytest.raises(OSError):
        write_atomic(blocked, b"x" * 100_000)
    assert blocked.is_dir()
    build_feeds([entry(i) for i in range(6)], make_settings(tmp_path / "out"))
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert json.loads((tmp_path / "out" / MANIFEST).read_text())["files"]


class _Hub(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, list[str]]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        form = parse_qs(self.rfile.read(length).decode())
        type(self).received.append(form)
        self.send_response(500 if form["hub.url"][0].endswith("broken.atom") else 204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[str]:
    _Hub.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_websub_ping_publishes_each_feed_and_reports_failures(hub: str) -> None:
    with httpx.Client(timeout=5) as client:
        problems = ping_websub(hub, [f"{BASE}/feed.atom", f"{BASE}/broken.atom"], client)
        assert [f["hub.mode"] for f in _Hub.received] == [["publish"], ["publish"]]
        assert [f["hub.url"] for f in _Hub.received] == [[f"{BASE}/feed.atom"], [f"{BASE}/broken.atom"]]
        assert len(problems) == 1 and "broken.atom" in problems[0] and "500" in problems[0]
        # An unreachable hub is a problem line, not an exception.
        gone = ping_websub("http://127.0.0.1:9/", [f"{BASE}/feed.atom"], client)
        assert len(gone) == 1 and "ConnectError" in gone[0]
        assert ping_websub("", [f"{BASE}/feed.atom"], client) == []
