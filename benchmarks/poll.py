"""Poll benchmark (issue: core pipeline).

(a) An unchanged feed costs one conditional GET, no parse and no summary/delivery write.
(b) A first poll of a 100-item feed in ShortScience.org's format (fetch from a local
    server, parse, diff, store, queue on every channel) against feedparser.parse() with
    its default options on the same bytes, measured in the same run.

Prints the counts, the medians and a last line `ratio=<poll time / feedparser time>`
(target: <= 1.0). Usage: python benchmarks/poll.py [--feed PATH] [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import feedparser
import sqlalchemy as sa

import bot.sources.parse as parse_module
from bot.app import build_app
from bot.pipeline import poll
from bot.settings import load_settings, sample_feed_path
from bot.store import Store

BASE = "https://www.shortscience.org"


def generated_feed(n: int = 100) -> bytes:
    """n items in the site's rss format, with the sample's real texts (HTML-escaped, like the site)."""
    real = parse_module.parse_feed(sample_feed_path().read_bytes(), "sample").summaries
    start = datetime(2026, 10, 1, tzinfo=UTC)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<rss version="2.0" xmlns:shortscience="{BASE}">',
        "<channel><title>ShortScience.org Latest Summaries</title>",
        f"<link>{BASE}</link><description>ShortScience.org Latest Summaries</description><ttl>60</ttl>",
    ]
    for i in reversed(range(n)):
        s = real[i % len(real)]
        guid = f"{BASE}/paper?bibtexKey=journals/corr/2610.{i:05d}#{s.author.replace(' ', '')}"
        out.append(
            "<item>"
            + (f"<shortscience:arxivid>2610.{i:05d}</shortscience:arxivid>" if i % 2 else "")
            + f"<shortscience:bibtexkey>journals/corr/2610.{i:05d}</shortscience:bibtexkey>"
            + f"<shortscience:votes>{2 + i % 20}</shortscience:votes>"
            + f"<title>{escape(s.title)}</title><author>{escape(s.author)}</author>"
            + f"<description>{escape(s.text)}</description>"
            + f"<link>{escape(guid)}</link><guid>{escape(guid)}</guid>"
            + f"<pubDate>{format_datetime(start + timedelta(hours=i))}</pubDate></item>"
        )
    out.append("</channel></rss>")
    return "\n".join(out).encode()


class FeedServer:
    """Serves one body with an ETag; answers If-None-Match with 304. Counts GETs."""

    def __init__(self, body: bytes) -> None:
        self.gets = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.gets += 1
                if self.headers.get("If-None-Match") == '"v1"':
                    self.send_response(304)
                    self.send_header("ETag", '"v1"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                self.send_header("ETag", '"v1"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/rss-full.xml"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def count_writes(store: Store) -> dict[str, int]:
    counts = {"summary/delivery writes": 0, "source-state writes": 0, "poll-log writes": 0}

    @sa.event.listens_for(store.engine, "before_cursor_execute")
    def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        head = statement.lstrip().split(None, 3)
        if head and head[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            table = head[2 if head[0].upper() != "UPDATE" else 1].strip('"').lower()
            if table == "poll_log":  # the charts' one row per poll, and its pruning
                key = "poll-log writes"
            else:
                key = "source-state writes" if table in ("sources", "jobs") else "summary/delivery writes"
            counts[key] += 1

    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feed", help="a feed file to use instead of the generated 100-item feed")
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args()
    body = Path(args.feed).read_bytes() if args.feed else generated_feed()
    server = FeedServer(body)
    parses = {"n": 0}
    real_parse = parse_module.parse_feed

    def counting_parse(*a: Any, **kw: Any) -> Any:
        parses["n"] += 1
        return real_parse(*a, **kw)

    parse_module.parse_feed = counting_parse  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # ---- (a) unchanged feed
            settings = load_settings(
                {"BOT_DATA_DIR": tmp, "SHORTSCIENCE_FEED_URL": server.url, "BOT_DRY_RUN": "1"}, config_path=None
            )
            app = build_app(settings, arxiv=False)
            poll(app)
            server.gets, parses["n"] = 0, 0
            writes = count_writes(app.store)
            report = poll(app)
            print(
                f"(a) unchanged feed: HTTP status {report.status}; GET requests={server.gets} parses={parses['n']} "
                f"summary/delivery writes={writes['summary/delivery writes']} "
                f"source-state writes={writes['source-state writes']} (last poll time, for status and /healthz) "
                f"poll-log writes={writes['poll-log writes']} (the charts' row for this poll)"
            )
            app.close()

            # ---- (b) first poll, timed, against feedparser on the same bytes
            ours: list[float] = []
            theirs: list[float] = []
            for run in range(args.runs):
                db = Path(tmp) / f"run{run}"
                settings = load_settings(
                    {"BOT_DATA_DIR": str(db), "SHORTSCIENCE_FEED_URL": server.url, "BOT_DRY_RUN": "1"}, config_path=None
                )
                app = build_app(settings, arxiv=False)
                # The database (created and migrated) and the HTTP client are built once per process
                # in the real bot, so they are built outside the timing here too.
                app.store  # noqa: B018
                app.source  # noqa: B018
                t0 = time.perf_counter()
                report = poll(app, backfill=len(body))
                ours.append(time.perf_counter() - t0)
                app.close()
                t0 = time.perf_counter()
                parsed = feedparser.parse(body)
                theirs.append(time.perf_counter() - t0)
            assert report.new == len(parsed.entries), (report.new, len(parsed.entries))
    finally:
        parse_module.parse_feed = real_parse  # type: ignore[assignment]
        server.close()
    a, b = statistics.median(ours), statistics.median(theirs)
    print(
        f"(b) first poll of {report.new} items ({len(body) // 1024} KB), {report.queued} deliveries queued: "
        f"median {a * 1000:.1f} ms (fetch+parse+diff+store+queue) vs feedparser.parse() {b * 1000:.1f} ms, "
        f"{args.runs} runs"
    )
    print(f"ratio={a / b:.3f}")


if __name__ == "__main__":
    main()
