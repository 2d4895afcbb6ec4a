"""feedparser's own corpora of ill-formed, encoding, entity and compressed feeds, served as sources
through the real pipeline (issue 7, reliability test 4).

Every feed is fetched over HTTP with the headers it asks for, parsed, stored and
dispatched to the dry-run channels: no crash; what the bot keeps is exactly what
feedparser could read, less what failed validation (each a problem line); feeds
with nothing readable are source errors with a reason; no delivery for anything
half-read. A second pass adds one complete item to each feed, and that item must
come through wherever feedparser itself can read it. A third feeds the HTML of
feedparser's sanitiser corpus in as summary texts: no script reaches a feed.

The corpora are downloaded from PyPI at test time (tests/corpora.py); without
network the tests skip.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import feedparser
import httpx
import pytest
from conftest import FakeClock, make_settings
from corpora import SANITIZE, CorpusFile, CorpusServer, CorpusUnavailable, corpus_files, corpus_root
from feeds_util import Item, site_feed
from inert import active_content
from twitter_text import parse_tweet

from bot.app import build_app
from bot.dispatcher import Dispatcher
from bot.errors import SourceError
from bot.jobs import build_feeds
from bot.pipeline import poll
from bot.records import DeliveryState
from bot.settings import Settings, with_overrides
from bot.sources.fetch import HttpSource
from bot.sources.memory import MemorySource
from bot.store import Store

BACKFILL = 1_000_000  # a first poll of each corpus feed queues everything it keeps


@pytest.fixture(scope="module")
def corpus() -> Path:
    try:
        return corpus_root()
    except CorpusUnavailable as exc:
        pytest.skip(f"feedparser's test corpora are not available: {exc}")


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = Store.open(settings.database_url)
    yield s
    s.close()


def feedparser_entries(file: CorpusFile) -> list[Any]:
    """What feedparser itself reads from the response: the reference the bot is held to."""
    body = file.decoded()
    if body is None:
        return []  # a broken compressed body: no client gets a document out of it
    parsed = feedparser.parse(
        io.BytesIO(body), response_headers=dict(file.headers), sanitize_html=False, resolve_relative_uris=False
    )
    return list(parsed.entries)


class Outcome:
    """What became of each feed of a corpus run."""

    def __init__(self) -> None:
        #: (folder, "error" | "items" | "rejected items only" | "no items") → feeds
        self.kinds: Counter[tuple[str, str]] = Counter()
        self.crashes: list[str] = []
        self.mismatches: list[str] = []

    def describe(self) -> str:
        totals: Counter[str] = Counter()
        for (_, kind), n in self.kinds.items():
            totals[kind] += n
        folders = sorted({folder for folder, _ in self.kinds})
        per_folder = "; ".join(
            f"{folder}: " + ", ".join(f"{n} {kind}" for (f, kind), n in sorted(self.kinds.items()) if f == folder)
            for folder in folders
        )
        return (
            f"{sum(totals.values())} feeds: "
            + ", ".join(f"{n} {kind}" for kind, n in sorted(totals.items()))
            + f" ({per_folder})"
        )


def poll_corpus(
    files: list[CorpusFile],
    server: CorpusServer,
    settings: Settings,
    store: Store,
    clock: FakeClock,
    *,
    expect: dict[str, list[Any]],
) -> Outcome:
    """Poll each file as its own source; check each poll against feedparser's reading (`expect`)."""
    out = Outcome()
    # One connection pool for all the sources: a client of its own each would cost 50 ms (TLS set-up).
    transport = httpx.HTTPTransport()
    for file in files:
        folder = file.name.split("/", 1)[0]
        url = server.url(file)
        source = HttpSource(
            url, timeout=10, max_bytes=settings.source.max_bytes, user_agent="corpus-test", transport=transport
        )
        app = build_app(settings, source=source, store=store, clock=clock, arxiv=False)
        before = store.count_summaries()
        try:
            report = poll(app, backfill=BACKFILL)
        except SourceError as exc:
            out.kinds[folder, "error"] += 1
            state = store.source_state(url)
            # Recorded with its reason, nothing stored, and the source backs off.
            if not (
                state.last_error
                and state.last_error == str(exc)
                and state.failures == 1
                and state.next_poll_at
                and state.next_poll_at > clock.now
            ):
                out.mismatches.append(f"{file.name}: error not recorded as such: {state}")
            if store.count_summaries() != before:
                out.mismatches.append(f"{file.name}: a failed poll stored summaries")
            if expect[file.name]:
                out.mismatches.append(
                    f"{file.name}: feedparser reads {len(expect[file.name])} entries, yet the whole feed was "
                    f"rejected: {exc}"
                )
            continue
        except Exception as exc:  # the point is to name every crash, not to stop at the first
            out.crashes.append(f"{file.name}: {type(exc).__name__}: {exc}")
            continue
        kept = report.new + report.edited + report.unchanged
        out.kinds[folder, "items" if kept else ("rejected items only" if report.problems else "no items")] += 1
        # Every entry feedparser reads is either kept or named in a problem line: nothing silently lost.
        if kept + len(report.problems) != len(expect[file.name]):
            out.mismatches.append(
                f"{file.name}: feedparser reads {len(expect[file.name])} entries; the bot kept {kept} and "
                f"reported {len(report.problems)} problems"
            )
        state = store.source_state(url)
        if report.problems and not (state.last_error and state.failures == 0):
            out.mismatches.append(f"{file.name}: skipped items not recorded on the source: {state}")
        if store.count_summaries() - before != report.new:
            out.mismatches.append(f"{file.name}: {report.new} new but {store.count_summaries() - before} stored")
    transport.close()
    return out


def dispatch_all(settings: Settings, store: Store, clock: FakeClock) -> list[dict[str, Any]]:
    """One dispatch pass to the dry-run channels; every line they wrote."""
    app = build_app(settings, store=store, clock=clock, arxiv=False)
    Dispatcher(app).run_once()
    lines = []
    for channel in ("twitter", "facebook"):
        path = settings.outbox_dir / f"{channel}.jsonl"
        if path.exists():
            lines += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return lines


def check_published(store: Store, lines: list[dict[str, Any]]) -> None:
    """Only whole, valid summaries were published, each once per channel, and nothing queued is left over."""
    deliveries = store.deliveries(limit=100_000)
    assert all(d.state is DeliveryState.SENT for d in deliveries), [
        (d.guid, d.state, d.last_error) for d in deliveries if d.state is not DeliveryState.SENT
    ][:5]
    assert sorted((x["channel"], x["summary_id"]) for x in lines) == sorted((d.channel, d.guid) for d in deliveries)
    for line in lines:
        stored = store.summary_by_guid(line["summary_id"])
        assert stored is not None, line
        s = stored.summary
        assert s.title.strip() and s.link.startswith(("http://", "https://")) and s.edited_at.tzinfo is not None
        assert line["url"] == s.link
        if line["channel"] == "twitter":
            assert parse_tweet(line["text"]).valid, line["text"]


INJECTED_DATE = "Mon, 02 Nov 2026 08:00:00 +0000"
INJECTED_TEXT = "The one complete item of this feed, added by the test."
# Where each kind of feed keeps its items, by the end tag found last in the document.
_ENDS = (("</channel>", "rss"), ("</rdf:RDF>", "rss"), ("</feed>", "atom"), ("</rss", "rss"))
# Encodings the corpora use that are not ASCII-compatible; the added item is written in the document's own.
_WIDE = ("utf-32-be", "utf-32-le", "utf-16-be", "utf-16-le", "cp037")


def injected_item(n: int, kind: str) -> tuple[str, str]:
    """(guid, markup) of a complete RSS item or Atom entry, ASCII only."""
    guid = f"https://example.org/corpus/item-{n}"
    if kind == "atom":
        return guid, (
            f'<entry><id>{guid}</id><title>Added item {n}</title><link href="{guid}"/>'
            f"<updated>2026-11-02T08:00:00Z</updated><summary>{INJECTED_TEXT}</summary></entry>"
        )
    return guid, (
        f"<item><title>Added item {n}</title><link>{guid}</link><guid>{guid}</guid>"
        f"<pubDate>{INJECTED_DATE}</pubDate><description>{INJECTED_TEXT}</description></item>"
    )


def with_good_item(file: CorpusFile, n: int) -> tuple[str, CorpusFile]:
    """The corpus feed with one complete item added where its items go (or at the end of a broken one)."""
    body = file.decoded()
    if body is None:
        return "", file  # nothing to add to: the body cannot be decoded at all
    for codec in ("ascii", *_WIDE):
        if "</".encode(codec) in body:
            break
    else:
        codec = "ascii"
    for end, kind in _ENDS:
        at = body.rfind(end.encode(codec))
        if at >= 0:
            guid, markup = injected_item(n, kind)
            body = body[:at] + markup.encode(codec) + body[at:]
            break
    else:
        guid, markup = injected_item(n, "rss")
        body = body + markup.encode(codec)
    return guid, file.with_decoded(body)


def test_corpora_as_sources_never_crash_and_keep_exactly_what_can_be_read(
    corpus: Path, settings: Settings, store: Store, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    files = corpus_files(corpus)
    assert len(files) > 400, f"only {len(files)} corpus files: the download looks incomplete"
    expect = {f.name: feedparser_entries(f) for f in files}
    with CorpusServer(files) as server:
        out = poll_corpus(files, server, settings, store, clock, expect=expect)
    assert out.crashes == []
    assert out.mismatches == []
    # The corpora hold both kinds: feeds the bot reads, and feeds it rejects as a whole.
    errors = sum(n for (_, kind), n in out.kinds.items() if kind == "error")
    assert 0 < errors < len(files)
    lines = dispatch_all(settings, store, clock)
    check_published(store, lines)
    with capsys.disabled():
        print(f"\ncorpora: {out.describe()}; {store.count_summaries()} summaries stored, {len(lines)} posts published")


def test_a_good_item_survives_every_defect_feedparser_can_read_past(
    corpus: Path, settings: Settings, store: Store, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    # One channel is enough to show what gets published; it halves the dispatch time. Its default
    # caps (X: 50 a day) would keep most of the corpus's hundreds of posts waiting.
    settings = with_overrides(settings, "channels.facebook", enabled=False)
    settings = with_overrides(settings, "channels.twitter", daily_cap=0, monthly_cap=0)
    added = [with_good_item(f, n) for n, f in enumerate(corpus_files(corpus))]
    files = [f for _, f in added]
    expect = {f.name: feedparser_entries(f) for f in files}
    with CorpusServer(files) as server:
        out = poll_corpus(files, server, settings, store, clock, expect=expect)
    assert out.crashes == []
    assert out.mismatches == []
    readable = lost = 0
    for guid, file in added:
        ref = [e for e in expect[file.name] if e.get("id") == guid]
        stored = store.summary_by_guid(guid)
        if ref and ref[0].get("title", "").startswith("Added item") and ref[0].get("link") == guid:
            readable += 1
            # feedparser reads the item whole: the bot must keep it whole, whatever else is wrong.
            if (
                stored is None
                or not stored.summary.title.startswith("Added item")
                or INJECTED_TEXT not in stored.summary.text
            ):
                lost += 1
                print(f"lost: {file.name}: {stored}")
        elif stored is not None:
            assert stored.summary.title.startswith("Added item") and stored.summary.link == guid
    assert lost == 0
    assert readable > len(files) * 0.9
    lines = dispatch_all(settings, store, clock)
    check_published(store, lines)
    stored_count = store.count_summaries()
    with capsys.disabled():
        print(
            f"\ncorpora + one good item each: {out.describe()}; feedparser reads the added item in "
            f"{readable}, the bot keeps it in {readable - lost}"
            + f"; {stored_count} summaries stored, {len(lines)} posts published"
        )


_TAG = re.compile(r"<[A-Za-z!/][^<>]*>")


def sanitizer_fragments(tests_dir: Path) -> list[tuple[str, str]]:
    """(file, raw HTML) for every marked-up text of feedparser's sanitiser corpus, read without sanitising."""
    out = []
    for path in sorted((tests_dir / SANITIZE).glob("*.xml")):
        parsed = feedparser.parse(io.BytesIO(path.read_bytes()), sanitize_html=False, resolve_relative_uris=False)
        texts = [parsed.feed.get(k) for k in ("title", "subtitle", "info", "rights")]
        for entry in parsed.entries:
            texts += [entry.get("title"), entry.get("summary"), *(c.get("value") for c in entry.get("content", []))]
        out += [(path.name, t) for t in dict.fromkeys(texts) if isinstance(t, str) and "<" in t]
    return out


def test_sanitizer_corpus_as_summaries_leaves_nothing_active_in_any_feed(
    corpus: Path, tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    fragments = sanitizer_fragments(corpus)
    assert len(fragments) > 500
    # Each hostile fragment is a summary's text, its title and its author name at once.
    feed = site_feed(
        [
            Item(key=f"sanitize/{n}", title=html[:300], author=html[:100], text=html)
            for n, (_, html) in enumerate(fragments)
        ]
    )
    settings = with_overrides(make_settings(tmp_path), "feeds", size=len(fragments))
    app = build_app(settings, source=MemorySource(feed), clock=clock, arxiv=False)
    try:
        report = poll(app)
        assert report.new == len(fragments) and report.problems == ()
        build_feeds(app)
    finally:
        app.close()
    found: list[str] = []
    checked = 0
    for path in sorted(settings.public_dir.rglob("*")):
        if path.name.startswith("."):
            continue  # the build's manifest
        if path.suffix in (".rss", ".atom"):
            parsed = feedparser.parse(path.read_bytes(), sanitize_html=False, resolve_relative_uris=False)
            assert not parsed.bozo, (path, parsed.get("bozo_exception"))
            entries = [
                (
                    e.get("title", ""),
                    e.get("author", ""),
                    "".join(c.get("value", "") for c in e.get("content", [])) or e.get("summary", ""),
                )
                for e in parsed.entries
            ]
        elif path.suffix == ".json":
            doc = json.loads(path.read_text(encoding="utf-8"))
            entries = [
                (
                    i.get("title", ""),
                    " ".join(a.get("name", "") for a in i.get("authors", [])),
                    i.get("content_html", ""),
                )
                for i in doc["items"]
            ]
        else:
            continue
        for title, author, content in entries:
            checked += 1
            found += [f"{path.name}: {bit}" for bit in active_content(content)]
            # Titles and names are plain text: no whole tag at all, let alone script (a tag cut
            # off at the end of a shortened title is text to every HTML parser).
            found += [
                f"{path.name}: markup in {what}: {value[:80]!r}"
                for what, value in (("title", title), ("author", author))
                if _TAG.search(value)
            ]
    assert checked >= 3 * len(fragments)
    assert found == []
    with capsys.disabled():
        print(
            f"\nsanitizer corpus: {len(fragments)} hostile fragments as summaries; {checked} feed entries "
            "checked, nothing active"
        )
