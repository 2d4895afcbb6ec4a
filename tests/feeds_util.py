"""Build feeds in ShortScience.org's exact rss format for tests (the site's template, item by item)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape

BASE = "https://www.shortscience.org"


@dataclass
class Item:
    key: str
    title: str = "A Paper"
    author: str = "alice"
    text: str = "A summary with $x^2$ math."
    votes: int = 5
    arxiv: str | None = None
    edited: datetime = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)

    @property
    def guid(self) -> str:
        frag = self.author if self.author != "Anonymous" else "anon"
        return f"{BASE}/paper?bibtexKey={self.key}#{frag}"


def site_feed(items: list[Item]) -> bytes:
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<rss version="2.0" xmlns:shortscience="{BASE}">',
        "<channel>",
        "<title>ShortScience.org Latest Summaries</title>",
        f"<link>{BASE}</link>",
        "<description>ShortScience.org Latest Summaries</description>",
        "<ttl>60</ttl>",
    ]
    for it in items:
        out.append("<item>")
        if it.arxiv:
            out.append(f"<shortscience:arxivid>{it.arxiv}</shortscience:arxivid>")
        out.append(f"<shortscience:bibtexkey>{escape(it.key)}</shortscience:bibtexkey>")
        out.append(f"<shortscience:votes>{it.votes}</shortscience:votes>")
        out.append(f"<title>{escape(it.title)}</title>")
        out.append(f"<author>{escape(it.author)}</author>")
        out.append(f"<description>{escape(it.text)}</description>")
        out.append(f"<link>{escape(it.guid)}</link>")
        out.append(f"<guid>{escape(it.guid)}</guid>")
        out.append(f"<pubDate>{format_datetime(it.edited)}</pubDate>")
        out.append("</item>")
    out += ["</channel>", "</rss>"]
    return "\n".join(out).encode("utf-8")


def items(n: int, *, start: datetime = datetime(2026, 10, 1, tzinfo=UTC)) -> list[Item]:
    """n items, newest first, like the site's feed."""
    return [
        Item(
            key=f"journals/corr/2610.{i:05d}",
            title=f"Paper {i}",
            author=f"user{i % 7}",
            edited=start + timedelta(hours=i),
            arxiv=f"2610.{i:05d}" if i % 2 else None,
        )
        for i in reversed(range(n))
    ]
