"""Hostile summaries through the whole pipeline (issue 7, reliability test 5).

Script tags, CR/LF in titles and author names, a 5 MB text, a 100 KB title,
characters XML cannot carry (raw and as references; lone surrogates through a
JSON Feed, the one format that can carry them), bidi overrides, zero-width
joiners, duplicate guids and broken items go through poll → dispatch (dry-run
outbox) → feeds build → a digest e-mail. Every good item is stored and queued
exactly once and comes out as a valid X post, a Facebook post, inert feed
entries and a well-formed e-mail; every rejected item has one clear problem line.
A 10,000-item feed goes through `python -m bot poll` and `feeds build`, with
the first poll's time and peak memory printed (not asserted).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import unicodedata
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from html import escape
from pathlib import Path
from typing import Any

import feedparser
import pytest
from conftest import REPO, FakeClock
from env_util import clean_environ
from feeds_util import BASE, Item, items, site_feed
from inert import active_content
from lxml import etree
from twitter_text import extract_urls, parse_tweet

from bot.app import build_app
from bot.dispatcher import Dispatcher
from bot.jobs import build_feeds
from bot.mail import Digest, DigestComposer, OutboxMailer
from bot.pipeline import poll
from bot.records import DeliveryState
from bot.render.markdown import clean_chars
from bot.settings import Settings, load_settings, with_overrides
from bot.sources.memory import MemorySource
from bot.status import render_status
from bot.store import Store

#: what no post, feed or e-mail may carry: XML-invalid characters, lone surrogates, bidi overrides, BOM
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff]")
_TAG = re.compile(r"<[A-Za-z!/][^<>]*>")
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # one emoji: four people joined by ZWJ
RAINBOW = "\U0001f3f3\ufe0f\u200d\U0001f308"
BIG_TEXT_CHARS = 5_000_000
RECIPIENT = "reader@example.org"


def guid(key: str) -> str:
    return f"{BASE}/paper?bibtexKey={key}#alice"


def good_site_items() -> list[Item]:
    """The hostile but valid items of the site-format feed, newest first."""
    t = datetime(2026, 10, 30, 12, 0, tzinfo=UTC)
    words = "attention is all you need " * (BIG_TEXT_CHARS // 26 + 1)
    return [
        Item(
            key="h/script",
            author="alice",
            # Taking "<b>" out of the last one leaves a whole new tag: stripping must go on until none is left.
            title=(
                '<script>alert("title")</script>A <b onmouseover="alert(1)">bold</b> paper <img src=x '
                "onerror=alert(7)<b>>"
            ),
            text=(
                '<script>alert(1)</script>Intro <img src=x onerror=alert(2)> <a href="javascript:alert(3)">click</a> '
                '[md link](javascript:alert(4)) <iframe src="https://evil.example/"></iframe> '
                "<svg onload=alert(5)></svg> "
                '<p style="background:url(javascript:alert(6))">styled</p> <form '
                'action="https://evil.example/"><input name=x></form>'
            ),
            edited=t,
        ),
        Item(
            key="h/crlf",
            author="alice",
            title="First line\r\nBcc: victim@example.org\r\n\r\nInjected body",
            text="Text with\r\nCRLF and a lone\rCR.",
            edited=t - timedelta(minutes=1),
        ),
        Item(
            key="h/big",
            author="alice",
            title="A five megabyte summary",
            text=words[:BIG_TEXT_CHARS],
            edited=t - timedelta(minutes=2),
        ),
        Item(
            key="h/controls",
            author="alice",
            title="Controls \x0bin\x00 the &#x0B; title &#0;",
            text="Before\x0bafter\x00end, as references &#x0B; &#0; &#xD800; &#xFFFE; and $x\x0b^2$ math.",
            edited=t - timedelta(minutes=3),
        ),
        Item(
            key="h/rtl",
            author="alice",
            title="Harmless \u202egnp.exe and \u2067isolated",
            text=(
                "Reversed \u202etext\u202c and \u2066isolates\u2069, plus real RTL: \u05e9\u05dc\u05d5\u05dd "
                "\u0645\u0631\u062d\u0628\u0627."
            ),
            edited=t - timedelta(minutes=4),
        ),
        Item(
            key="h/zwj",
            author="alice",
            title=f"Families {FAMILY} and flags {RAINBOW} a\u200db",
            text=" ".join([FAMILY, RAINBOW, "x\u200dy"] * 120),
            edited=t - timedelta(minutes=5),
        ),
        Item(
            key="h/longtitle",
            author="alice",
            title="Long title " + "word " * 20_000,
            text="Short.",
            edited=t - timedelta(minutes=6),
        ),
    ]


def hostile_site_feed() -> tuple[bytes, list[str], dict[str, str]]:
    """The site-format feed: its bytes, the good guids, and the rejected guids with the reason each must name."""
    good = good_site_items()
    rejected = [
        Item(
            key="h/script",
            author="alice",
            title="Second item with the first one's guid",
            edited=datetime(2026, 10, 1, tzinfo=UTC),
        ),
        Item(key="r/baddate", author="alice", title="Bad date"),
        Item(key="r/notitle", author="alice", title="\x0b\x00 \r\n "),
        Item(key="r/crlflink", author="alice", title="CR/LF in the link"),
    ]
    body = site_feed([*good, *rejected])
    # Authors with CR/LF and markup go in raw: Item uses the author in its guid too.
    body = body.replace(
        b"<author>alice</author>",
        b"<author>Mallory\r\nSubject: hi &lt;img src=x onerror=alert(1)&gt;\xe2\x80\xae</author>",
        2,
    )
    bad_date = escape(guid("r/baddate")).encode()
    body = body.replace(
        b"<guid>" + bad_date + b"</guid>\n<pubDate>",
        b"<guid>" + bad_date + b"</guid>\n<pubDate>the day before yesterday ",
    )
    crlf = escape(guid("r/crlflink")).encode()
    body = body.replace(b"<link>" + crlf + b"</link>", b"<link>" + crlf + b"\r\nX-Injected: 1</link>")
    reasons = {
        guid("h/script"): "duplicate guid",
        guid("r/baddate"): "pubDate",
        guid("r/notitle"): "no title",
        guid("r/crlflink"): "link",
    }
    return body, [it.guid for it in good], reasons


def hostile_json_feed() -> tuple[bytes, list[str], dict[str, str]]:
    """A JSON Feed: lone surrogates, NUL and CR/LF as JSON escapes (XML cannot even carry them)."""
    items = [
        {
            "id": "https://example.org/j/1",
            "url": "https://example.org/j/1",
            "title": "Lone \ud800 surrogate, NUL \u0000 and VT \u000b in a title",
            "authors": [{"name": "Eve \udfff\r\nBcc: victim@example.org"}],
            "content_html": (
                '<p onclick="alert(1)">Text \ud83d with a lone high surrogate \u0000 NUL</p><script>alert(2)</script>'
            ),
            "date_modified": "2026-10-29T10:00:00Z",
        },
        {
            "id": "https://example.org/j/2",
            "url": "https://example.org/j/2",
            "title": "Zero width\u200b\u200c\u200d joiners",
            "content_text": f"Plain text {FAMILY} with \u202eoverride.",
            "date_published": "2026-10-29T09:00:00+02:00",
        },
        {
            "id": "https://example.org/j/3",
            "url": "https://example.org/j/3 with spaces",
            "title": "Spaces in the URL",
            "content_text": "The link still works, encoded.",
            "date_modified": "2026-10-29T07:00:00Z",
        },
        {
            "id": "https://example.org/j/1",
            "url": "https://example.org/j/1",
            "title": "Duplicate",
            "content_text": "x",
            "date_modified": "2026-10-29T08:00:00Z",
        },
        {"title": "No id and no url", "content_text": "x", "date_modified": "2026-10-29T08:00:00Z"},
    ]
    body = json.dumps(
        {"version": "https://jsonfeed.org/version/1.1", "title": "Hostile \ud800 JSON", "items": items}
    ).encode("ascii")
    return (
        body,
        ["https://example.org/j/1", "https://example.org/j/2", "https://example.org/j/3"],
        {"https://example.org/j/1": "duplicate guid", "(no guid)": "neither guid nor link"},
    )


def check_problems(problems: tuple[str, ...], reasons: dict[str, str]) -> None:
    """One clear line per rejected item, naming the item and why."""
    assert len(problems) == len(reasons), problems
    for name, why in reasons.items():
        lines = [p for p in problems if f"item {name}:" in p]
        assert len(lines) == 1 and why in lines[0], (name, why, problems)


def check_x_post(text: str, link: str) -> None:
    parsed = parse_tweet(text)
    assert parsed.valid, (parsed.weightedLength, text[:300])
    assert text == unicodedata.normalize("NFC", text)
    assert not _FORBIDDEN.search(text), ascii(text[:300])
    # The link is whole and is the URL X will see (t.co wraps exactly it).
    assert link in extract_urls(text), (link, text)
    assert text.count(link) == 1


def check_mastodon_post(text: str, link: str) -> None:
    """Fits 500 as Mastodon counts, the link whole, no control characters."""
    from fake_mastodon import mastodon_length

    assert mastodon_length(text) <= 500 and link in text, ascii(text[:300])
    assert not _FORBIDDEN.search(text), ascii(text[:300])


def check_bluesky_post(text: str, link: str) -> None:
    """At most 300 graphemes and 3,000 bytes, the link whole, no control characters."""
    from bot.channels.bluesky.post import fits

    assert fits(text) and link in text, ascii(text[:300])
    assert not _FORBIDDEN.search(text), ascii(text[:300])


def check_facebook_post(line: dict[str, Any], link: str) -> None:
    assert line["url"] == link
    text = line["text"]
    assert 0 < len(text) <= 63_206
    assert not _FORBIDDEN.search(text), ascii(text[:300])
    assert not re.search(r"[\x00-\x09\x0b-\x1f]", text)


def check_feeds(public: Path, good: list[str], links: dict[str, str]) -> int:
    """Every file parses, nothing in it is active, titles are plain; each good summary is in the archive once."""
    archived: Counter[str] = Counter()
    files = 0
    for path in sorted(public.rglob("*")):
        if path.name.startswith(".") or path.suffix not in (".rss", ".atom", ".json"):
            continue
        files += 1
        raw = path.read_bytes()
        if path.suffix == ".json":
            doc = json.loads(raw)
            entries = [(i["id"], i.get("title", ""), i.get("content_html", ""), i.get("url", "")) for i in doc["items"]]
        else:
            parsed = feedparser.parse(raw, sanitize_html=False, resolve_relative_uris=False)
            assert not parsed.bozo, (path, parsed.get("bozo_exception"))
            entries = [
                (
                    e["id"],
                    e.get("title", ""),
                    "".join(c["value"] for c in e.get("content", [])) or e.get("summary", ""),
                    e.get("link", ""),
                )
                for e in parsed.entries
            ]
        text = json.dumps(json.loads(raw), ensure_ascii=False) if path.suffix == ".json" else raw.decode("utf-8")
        assert not _FORBIDDEN.search(text), (path.name, ascii(_FORBIDDEN.findall(text)))
        for ident, title, content, link in entries:
            assert active_content(content) == [], (path.name, ident, active_content(content))
            assert not _TAG.search(title), (path.name, title[:200])
            assert "\n" not in title and "\r" not in title
            assert len(title) <= 500
            if ident in links:
                assert link == links[ident], (link, links[ident])
            if path.parts[-2] == "archive":
                archived[ident] += 1
    assert files >= 4
    assert {g: archived[g] for g in good} == dict.fromkeys(good, 1)
    return files


def check_email(path: Path, links: list[str], titles: list[str]) -> None:
    raw = path.read_bytes()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n")), "a line over RFC 5322's 998 characters"
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    message = BytesParser(policy=policy.default).parsebytes(raw)
    names = sorted(k.lower() for k in message.keys())
    # Exactly our headers: nothing a summary smuggled in (Bcc, a second Subject, ...).
    assert names == sorted(
        [
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "list-id",
            "list-unsubscribe",
            "list-unsubscribe-post",
            "mime-version",
            "content-type",
        ]
    ), names
    assert message["To"] == RECIPIENT and message["Bcc"] is None
    assert "victim" not in str(message["Subject"]) and "\n" not in str(message["Subject"])
    assert message.defects == []
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part.defects == []
    text = parts[0].get_content().replace("\r\n", "\n")
    page = parts[1].get_content()
    assert not _FORBIDDEN.search(text) and not _FORBIDDEN.search(page)
    # The head is our template's own (charset and viewport meta); summary text only reaches the body.
    head, _, body = page.partition("</head>")
    assert "<body" in body and active_content(body) == [], active_content(body)[:5]
    assert [x for x in active_content(head) if x != "<meta>"] == []
    for link in links:
        assert f"Read the summary: {link}\n" in text, link
        assert f'href="{escape(link)}"' in page, link
    for title in titles:
        title = clean_chars(title)  # as every output shows it: zero-width spaces and direction marks gone
        assert escape(title) in page or title in text


@pytest.mark.slow
def test_hostile_summaries_come_out_valid_everywhere_and_nothing_is_lost(
    settings: Settings, clock: FakeClock, tmp_path: Path
) -> None:
    settings = with_overrides(settings, "feeds", size=100)
    # Every channel: the newer ones too (the suite's settings leave them off).
    for name in ("mastodon", "bluesky"):
        settings = with_overrides(settings, f"channels.{name}", enabled=True)
    rss, rss_good, rss_rejected = hostile_site_feed()
    jf, json_good, json_rejected = hostile_json_feed()

    site = build_app(settings, source=MemorySource(rss, url="memory://site"), clock=clock, arxiv=False)
    other = build_app(
        settings,
        source=MemorySource(jf, url="memory://json", content_type="application/feed+json"),
        store=site.store,
        clock=clock,
        arxiv=False,
    )
    try:
        run_everything(site, other, settings, clock, rss_good, rss_rejected, json_good, json_rejected)
    finally:
        site.close()


def run_everything(
    site: Any,
    other: Any,
    settings: Settings,
    clock: FakeClock,
    rss_good: list[str],
    rss_rejected: dict[str, str],
    json_good: list[str],
    json_rejected: dict[str, str],
) -> None:
    good = [*rss_good, *json_good]
    report = poll(site, backfill=100)
    assert report.new == len(rss_good)
    check_problems(report.problems, rss_rejected)
    report = poll(other, backfill=100)
    assert report.new == len(json_good)
    check_problems(report.problems, json_rejected)
    # `status` shows the operator what was skipped, and why.
    status = render_status(site)
    assert status.count("skipped items:") == 2 and "duplicate guid" in status and "pubDate" in status

    store = site.store
    stored = {g: store.summary_by_guid(g) for g in good}
    assert all(s is not None for s in stored.values()) and store.count_summaries() == len(good)
    links = {g: s.summary.link for g, s in stored.items() if s is not None}
    for s in stored.values():
        assert s is not None
        for value in (s.summary.title, s.summary.author):
            assert not _FORBIDDEN.search(value) and "\n" not in value and "\r" not in value, ascii(value[:200])
        assert not re.search("[\x00\ud800-\udfff]", s.summary.text)
    assert len(stored[guid("h/big")].summary.text) == BIG_TEXT_CHARS
    assert links["https://example.org/j/3"] == "https://example.org/j/3%20with%20spaces"
    # Queued exactly once per summary and channel.
    deliveries = store.deliveries(limit=1000)
    channels = ("twitter", "facebook", "mastodon", "bluesky")
    assert sorted((d.guid, d.channel) for d in deliveries) == sorted((g, c) for g in good for c in channels)

    dispatched = Dispatcher(site).run_once()
    assert dispatched.sent == len(channels) * len(good) and dispatched.failed == 0
    assert all(d.state is DeliveryState.SENT for d in store.deliveries(limit=1000))
    outbox = settings.outbox_dir
    tweets = [json.loads(x) for x in (outbox / "twitter.jsonl").read_text(encoding="utf-8").splitlines()]
    pages = [json.loads(x) for x in (outbox / "facebook.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(x["summary_id"] for x in tweets) == sorted(good) == sorted(x["summary_id"] for x in pages)
    for line in tweets:
        check_x_post(line["text"], links[line["summary_id"]])
    for line in pages:
        check_facebook_post(line, links[line["summary_id"]])
    for name, check in (("mastodon", check_mastodon_post), ("bluesky", check_bluesky_post)):
        posts = [json.loads(x) for x in (outbox / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
        assert sorted(x["summary_id"] for x in posts) == sorted(good)
        for line in posts:
            check(line["text"], links[line["summary_id"]])

    build_feeds(site)
    check_feeds(settings.public_dir, good, links)

    # The digest's own item builder (paper details, render cache, teaser), then the composer.
    from bot.digest import digest_items

    summaries = [s for s in stored.values() if s is not None]
    items = tuple(digest_items(site, summaries))
    digest = Digest(issue=1, period_start=clock.now - timedelta(days=7), period_end=clock.now, items=items)
    email = (
        DigestComposer(settings)
        .compose(digest)
        .for_recipient(
            RECIPIENT,
            "https://bot.example.org/unsubscribe?token=abc",
            "https://bot.example.org/preferences?token=abc",
            now=clock.now,
        )
    )
    mailer = OutboxMailer(settings)
    mailer.send(email)
    check_email(mailer.path_for(email), [links[g] for g in good], [s.summary.title[:60] for s in summaries])


# Runs `python -m bot` and prints the process's peak resident memory on the way out. VmHWM, not
# getrusage: ru_maxrss survives fork and exec, so a child of pytest would report pytest's own size.
_MEASURED = (
    "import atexit, re, runpy, sys\n"
    "def peak():\n"
    "    try:\n"
    "        with open('/proc/self/status') as f:\n"
    "            m = re.search(r'VmHWM:\\s+(\\d+) kB', f.read())\n"
    "    except OSError:\n"
    "        m = None\n"
    "    sys.stderr.write(f'\\npeak-rss-kib {m.group(1) if m else -1}\\n')\n"
    "atexit.register(peak)\n"
    "sys.argv = ['bot', *sys.argv[1:]]\n"
    "runpy.run_module('bot', run_name='__main__')\n"
)


def run_measured(env: dict[str, str], *args: str) -> tuple[int, str, float, int]:
    """`python -m bot ARGS`: exit code, output, wall time and peak resident memory in KiB (-1 without /proc)."""
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", _MEASURED, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    elapsed = time.perf_counter() - start
    found = re.search(r"peak-rss-kib (-?\d+)", run.stderr)
    return run.returncode, run.stdout + run.stderr, elapsed, int(found.group(1)) if found else -1


@pytest.mark.slow
def test_a_ten_thousand_item_feed_is_stored_and_queued_exactly_once(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feed = items(10_000)
    # Ten repeats of guids further down the feed: the first occurrence wins, each repeat is one problem line.
    repeats = [
        Item(key=it.key, author=it.author, title="A repeat", edited=datetime(2020, 1, 1, tzinfo=UTC))
        for it in feed[::1000]
    ]
    path = tmp_path / "feed.xml"
    path.write_bytes(site_feed([*feed, *repeats]))
    env = clean_environ()
    config = tmp_path / "bot.toml"
    # feeds build would ask arXiv about the newest papers; the two channels this test counts, not the newer ones
    config.write_text(
        "[arxiv]\nenabled = false\n[channels.mastodon]\nenabled = false\n[channels.bluesky]\nenabled = false\n"
    )
    env.update(
        BOT_DATA_DIR=str(tmp_path / "var"),
        DATABASE_URL=db_url,
        SHORTSCIENCE_FEED_URL=str(path),
        BOT_DRY_RUN="1",
        BOT_CONFIG=str(config),
    )

    code, output, poll_s, poll_kib = run_measured(env, "poll", "--backfill", "10000")
    assert code == 0, output
    assert "10000 new, 0 edited, 0 unchanged, 20000 deliveries queued, 10 items skipped" in output
    settings = load_settings(env)
    store = Store.open(settings.database_url)
    try:
        assert store.count_summaries() == 10_000
        pairs = Counter((d.guid, d.channel) for d in store.deliveries(limit=30_000))
        assert len(pairs) == 20_000 and set(pairs.values()) == {1}
        assert {g for g, _ in pairs} == {it.guid for it in feed}
        # The repeats lost to the first occurrence: nothing of theirs was stored.
        assert all(store.summary_by_guid(it.guid).summary.title != "A repeat" for it in repeats)  # type: ignore[union-attr]
        assert store.source_state(str(path)).last_error.count("duplicate guid") == 10  # type: ignore[union-attr]
    finally:
        store.close()

    code, output, build_s, build_kib = run_measured(env, "feeds", "build")
    assert code == 0, output
    archived: Counter[str] = Counter()
    for page in (settings.public_dir / "archive").glob("*.atom"):
        archived.update(
            el.text or ""
            for el in etree.parse(str(page)).iterfind(
                "{http://www.w3.org/2005/Atom}entry/{http://www.w3.org/2005/Atom}id"
            )
        )
    assert len(archived) == 10_000 and set(archived.values()) == {1}
    main = feedparser.parse((settings.public_dir / "feed.atom").read_bytes())
    assert not main.bozo and len(main.entries) == settings.feeds.size
    with capsys.disabled():
        print(
            f"\n10,000-item feed ({path.stat().st_size / 1e6:.1f} MB, "
            f"{'PostgreSQL' if db_url.startswith('postgres') else 'SQLite'}): first poll {poll_s:.1f} s, "
            f"peak RSS {poll_kib / 1024:.0f} MiB; feeds build {build_s:.1f} s, peak RSS {build_kib / 1024:.0f} MiB"
        )


def generic_feed(kind: str, n: int) -> str:
    if kind == "atom":
        entries = "".join(
            f'<entry><id>urn:cut:{i}</id><title>Entry {i}</title><link href="https://example.org/cut/{i}"/>'
            f'<updated>2026-10-0{i + 1}T00:00:00Z</updated><content type="html">Entry {i} has a long text '
            "that goes on and on.</content></entry>"
            for i in range(n)
        )
        return f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:cut</id>{entries}</feed>'
    items_ = "".join(
        f"<item><title>Entry {i}</title><link>https://example.org/cut/{i}</link><guid>urn:cut:{i}</guid>"
        f"<pubDate>Thu, 0{i + 1} Oct 2026 00:00:00 +0000</pubDate><description>Entry {i} has a long text that "
        "goes on and on.</description></item>"
        for i in range(n)
    )
    return f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>{items_}</channel></rss>'


@pytest.mark.parametrize("kind", ["atom", "rss"])
def test_a_feed_cut_off_inside_an_item_publishes_none_of_that_item(kind: str, make_app: Any) -> None:
    whole = generic_feed(kind, 3)
    cut = whole[: whole.rindex("goes on")]  # a download or a file that stops inside the last item
    app, source = make_app(cut.encode())
    report = poll(app, backfill=10)
    assert report.new == 2 and len(report.problems) == 1
    assert "urn:cut:2" in report.problems[0] and "cut off" in report.problems[0]
    assert {d.guid for d in app.store.deliveries()} == {"urn:cut:0", "urn:cut:1"}
    # The next, whole copy brings the item in, complete.
    source.body = whole.encode()
    assert poll(app).new == 1
    stored = app.store.summary_by_guid("urn:cut:2")
    assert stored is not None and stored.summary.text.endswith("goes on and on.")
