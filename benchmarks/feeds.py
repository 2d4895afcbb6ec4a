"""Benchmark of the feed builder: a full build of 2,000 summaries, then a rebuild after one new summary.

The rebuild is compared, in the same run, with feedgen alone serialising the same entries with
pre-rendered content: every file the rebuild rewrote (main feeds, the new summary's category
feeds, the open archive page), RSS and Atom with feedgen and JSON Feed with the json module (which
is all feedgen lacks). The last line is ``ratio=<rebuild / feedgen alone>`` (target <= 1.5).
A stricter comparison against feedgen writing only the 50 main-feed entries as RSS and Atom is
printed too.

Run: python benchmarks/feeds.py [DIR]   (DIR: where the temporary output goes; default: the system temp dir)
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from feedgen.feed import FeedGenerator

from bot.feeds import FeedEntry, FeedFile, FragmentCache, build_feeds, plan_feeds, write_atomic
from bot.settings import Settings, with_overrides

CATEGORIES = [
    "cs.LG",
    "stat.ML",
    "cs.CV",
    "cs.CL",
    "cs.AI",
    "cs.NE",
    "cs.RO",
    "q-bio.NC",
    "cs.IR",
    "math.OC",
    "cs.SD",
    "eess.IV",
]
WEIGHTS = [40, 20, 25, 15, 12, 5, 3, 2, 3, 2, 1, 2]
WORDS = (
    "the model learns a representation of data with gradient descent and attention over tokens while the loss decreases"
).split()
BASE = datetime(2016, 1, 1, tzinfo=UTC)


def synthetic_entry(i: int, rng: random.Random) -> FeedEntry:
    """One summary of realistic size: 2-3 KB of HTML with paragraphs, a list, MathML and links."""
    paragraphs = []
    while sum(len(p) for p in paragraphs) < rng.randint(1900, 2700):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(25, 60)))
        paragraphs.append(
            f"<p>{words.capitalize()} <em>{rng.choice(WORDS)}</em> "
            f"<math><mi>x</mi><mo>=</mo><mn>{i}</mn></math> "
            f'<a href="https://arxiv.org/abs/{1600 + i % 900}.{i:05d}">paper</a>.</p>'
        )
    html = "\n".join(paragraphs)
    link = f"https://www.shortscience.org/paper?bibtexKey=key{i}#user{i % 97}"
    published = BASE + timedelta(hours=7 * i)
    categories = tuple(dict.fromkeys(rng.choices(CATEGORIES, WEIGHTS, k=rng.randint(1, 3))))
    return FeedEntry(
        guid=link,
        title=f"Paper number {i}: " + " ".join(rng.choice(WORDS) for _ in range(8)).title(),
        author=f"Reader {i % 97}",
        link=link,
        content_html=html,
        summary_text=html[:300].replace("<p>", "").replace("</p>", ""),
        published=published,
        updated=published + timedelta(minutes=rng.randint(0, 3000)),
        categories=categories,
        paper_url=f"https://arxiv.org/abs/{1600 + i % 900}.{i:05d}",
    )


def feedgen_alone(entries: Sequence[FeedEntry], settings: Settings, kinds: Sequence[str] = ("rss", "atom")) -> None:
    """What plain feedgen costs for one feed's entries, content pre-rendered, in the given formats."""
    if "json" in kinds:
        json_alone(entries, settings)
        kinds = [k for k in kinds if k != "json"]
        if not kinds:
            return
    fg = FeedGenerator()
    fg.load_extension("dc", atom=False, rss=True)
    base = settings.env.public_base_url
    fg.id(base + "/feed.atom")
    fg.title(settings.feeds.title)
    fg.description(settings.feeds.description)
    fg.language(settings.feeds.language)
    fg.updated(max(e.updated for e in entries))
    fg.link(href=base + "/feed.rss", rel="self")
    fg.link(href=base + "/", rel="alternate")
    for e in entries:
        fe = fg.add_entry(order="append")
        fe.guid(e.guid, permalink=True)
        fe.title(e.title)
        fe.author(name=e.author)
        fe.dc.dc_creator(e.author)
        fe.link(href=e.link, rel="alternate")
        fe.summary(e.summary_text)
        fe.content(e.content_html, type="html")
        fe.published(e.published)
        fe.updated(e.updated)
        fe.category([{"term": c} for c in e.categories])
    if "rss" in kinds:
        fg.rss_str(pretty=True)
    if "atom" in kinds:
        fg.atom_str(pretty=True)


def json_alone(entries: Sequence[FeedEntry], settings: Settings) -> None:
    """JSON Feed 1.1 with the json module alone: the floor for the .json files feedgen cannot write."""
    base = settings.env.public_base_url
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": settings.feeds.title,
        "home_page_url": base + "/",
        "feed_url": base + "/feed.json",
        "items": [
            {
                "id": e.guid,
                "url": e.link,
                "title": e.title,
                "content_html": e.content_html,
                "summary": e.summary_text,
                "date_published": e.published.isoformat(),
                "date_modified": e.updated.isoformat(),
                "authors": [{"name": e.author}],
                "tags": list(e.categories),
            }
            for e in entries
        ],
    }
    json.dumps(doc, ensure_ascii=False, indent=1).encode()


def floor_for(files: Sequence[FeedFile], settings: Settings) -> Callable[[], None]:
    """feedgen (and json) alone producing exactly these files' entries."""
    by_stem: dict[str, tuple[list[str], Sequence[FeedEntry]]] = {}
    for f in files:
        stem = f.path.rsplit(".", 1)[0]
        kinds, _ = by_stem.setdefault(stem, ([], f.entries))
        kinds.append(f.kind)

    def run() -> None:
        for kinds, entries in by_stem.values():
            feedgen_alone(entries, settings, kinds)

    return run


def best_of(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def rebuilds(
    entries: list[FeedEntry], extra: list[FeedEntry], settings: Settings, out: Path, *, warm: bool
) -> tuple[float, float, list[FeedFile]]:
    """Median time of a rebuild after one new summary, of its file writes alone (seconds), and the files the last one
    rewrote."""
    cache = FragmentCache()
    build_feeds(entries, settings, out_dir=out, cache=cache, force=True)
    current = list(entries)
    times, changed = [], []
    report = None
    for new in extra:
        current.append(new)
        t0 = time.perf_counter()
        report = build_feeds(current, settings, out_dir=out, cache=cache if warm else FragmentCache())
        times.append(time.perf_counter() - t0)
        changed.append(len(report.changed) + 1)  # + the manifest
    # What writing that many files atomically costs on this disk, without any serialising.
    data = (out / "feed.rss").read_bytes()
    files = round(statistics.median(changed))
    t_write = best_of(15, lambda: [write_atomic(out / f"bench-{i}.tmp.rss", data) for i in range(files)])
    assert report is not None
    rewritten = [f for f in plan_feeds(current, settings) if f.path in report.changed]
    return statistics.median(times), t_write, rewritten


def main() -> None:
    out_root = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    rng = random.Random(20240601)
    entries = [synthetic_entry(i, rng) for i in range(2000)]
    extra = [synthetic_entry(2000 + k, rng) for k in range(30)]
    settings = with_overrides(Settings(), "feeds", websub_hub="https://hub.example/")
    newest50 = sorted(entries + extra[:1], key=lambda e: e.published, reverse=True)[:50]

    with tempfile.TemporaryDirectory(dir=out_root) as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        full = build_feeds(entries, settings, out_dir=out)
        t_full = time.perf_counter() - t0
        print(f"(a) full build: {len(entries)} summaries, {len(full.changed)} files in {t_full * 1000:.1f} ms")
        t0 = time.perf_counter()
        same = build_feeds(entries, settings, out_dir=out)
        print(
            f"    rebuild with nothing new: {(time.perf_counter() - t0) * 1000:.2f} ms, {len(same.changed)} "
            "files changed"
        )

        t_warm, t_write, rewritten = rebuilds(entries, extra[:20], settings, out / "warm", warm=True)
        t_cold, _, _ = rebuilds(entries, extra[20:], settings, out / "cold", warm=False)
        print(
            f"(b) rebuild after one new summary: {t_warm * 1000:.2f} ms with the process's fragment cache "
            f"(of which ~{t_write * 1000:.2f} ms is writing the changed files atomically on this disk), "
            f"{t_cold * 1000:.2f} ms from a cold cache (a fresh `feeds build` process)"
        )

    t_main = best_of(21, lambda: feedgen_alone(newest50, settings))
    t_feedgen = best_of(21, floor_for(rewritten, settings))
    entries_serialised = sum(len(f.entries) for f in rewritten)
    print(
        f"feedgen alone (json module for .json), the same {len(rewritten)} files ({entries_serialised} entries), "
        f"no file written: {t_feedgen * 1000:.2f} ms"
    )
    print(
        f"stricter: feedgen alone, only the 50 main-feed entries as RSS+Atom: {t_main * 1000:.2f} ms "
        f"(rebuild / that = {t_warm / t_main:.2f})"
    )
    print(
        f"ratio without the file writes: {(t_warm - t_write) / t_feedgen:.2f}; cold-cache ratio: "
        f"{t_cold / t_feedgen:.2f}"
    )
    print(f"ratio={t_warm / t_feedgen:.2f}")


if __name__ == "__main__":
    sys.exit(main())
