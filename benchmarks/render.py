"""Render benchmark: every sample-feed summary through html, text and each channel's post.

"first" = html + text + posts from scratch; "cached" = posts built from the
precomputed text (text=) with the stored HTML reused for the feed entry, as the
store's render cache does. Run: python benchmarks/render.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.records import PaperDetails  # noqa: E402
from bot.render import CHANNEL_TEMPLATES, Renderer  # noqa: E402
from bot.settings import Settings, sample_feed_path  # noqa: E402
from bot.sources.parse import parse_feed  # noqa: E402


def load_details() -> dict[str, PaperDetails]:
    path = ROOT / "tests" / "golden" / "details.json"
    if not path.exists():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {
        k: PaperDetails(k, v["title"], tuple(v["authors"]), datetime.fromisoformat(v["published"]), tuple(v["categories"]))
        for k, v in raw.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="renders of each summary per measurement")
    args = parser.parse_args()

    path = sample_feed_path()
    if not path.exists():
        print(f"no sample feed at {path}", file=sys.stderr)
        return 1
    summaries = parse_feed(path.read_bytes(), str(path)).summaries
    details = load_details()

    t0 = time.perf_counter()
    renderer = Renderer(Settings())
    setup = time.perf_counter() - t0
    print(f"Renderer() setup: {setup * 1000:.1f} ms")
    # Warm Jinja's template cache and the libraries' lazy tables, as a running bot has them.
    renderer.post("twitter", summaries[0], None)
    renderer.post("facebook", summaries[0], None)

    print(f"{'summary':<44} {'chars':>6} {'first ms':>9} {'cached ms':>10} {'ratio':>6}")
    firsts: list[float] = []
    cacheds: list[float] = []
    for s in summaries:
        paper = details.get(s.arxiv_id or "")
        first_times, cached_times = [], []
        html, text = renderer.html(s), renderer.text(s)
        for _ in range(args.rounds):
            t = time.perf_counter()
            h = renderer.html(s)
            x = renderer.text(s)
            for channel in CHANNEL_TEMPLATES:
                renderer.post(channel, s, paper, text=x)
            renderer.feed_entry_html(s, paper, html=h)
            first_times.append(time.perf_counter() - t)

            t = time.perf_counter()
            for channel in CHANNEL_TEMPLATES:
                renderer.post(channel, s, paper, text=text)
            renderer.feed_entry_html(s, paper, html=html)
            cached_times.append(time.perf_counter() - t)
        first, cached = statistics.median(first_times), statistics.median(cached_times)
        firsts.append(first)
        cacheds.append(cached)
        print(f"{s.title[:44]:<44} {len(s.text):>6} {first * 1000:>9.2f} {cached * 1000:>10.2f} {first / cached:>6.1f}")
    total_first, total_cached = sum(firsts), sum(cacheds)
    n = len(summaries)
    print(
        f"{n} summaries: first {total_first / n * 1000:.2f} ms/summary, cached {total_cached / n * 1000:.2f} ms/summary, "
        f"ratio={total_first / total_cached:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
