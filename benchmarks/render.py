"""Render benchmark (issue: rendering): every sample-feed summary through every renderer, first and cached.

"first"  = what a summary costs the first time: Markdown + LaTeX → sanitised HTML, → plain text,
           the feed entry, and each channel's post, all from scratch.
"cached" = what every later use costs (a feeds rebuild, a digest): the HTML and text come from the
           store's render cache (a real SQLite store, through bot.content.renders, in one batch for
           all summaries exactly as `feeds build` and `digest send` call it) and only the feed
           entry's template is filled in. Measured per round over all summaries, divided by their number.

Posts are rendered once per delivery and then frozen in the delivery row (a retry sends the stored
text), so they are not cached; their cost is printed on its own line.

Prints a table, then `ratio=<first / cached>` for the cacheable renders (target: >= 20) and
`ratio_with_posts=<(first + posts) / cached>`.
Usage: python benchmarks/render.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot import content  # noqa: E402
from bot.app import build_app  # noqa: E402
from bot.channels import CHANNELS  # noqa: E402
from bot.pipeline import poll  # noqa: E402
from bot.records import PaperDetails  # noqa: E402
from bot.settings import load_settings  # noqa: E402


def load_details() -> dict[str, PaperDetails]:
    path = ROOT / "tests" / "golden" / "details.json"
    if not path.exists():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {
        k: PaperDetails(
            k, v["title"], tuple(v["authors"]), datetime.fromisoformat(v["published"]), tuple(v["categories"])
        )
        for k, v in raw.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7, help="measurements of each summary (the median is shown)")
    args = parser.parse_args()

    details = load_details()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({"BOT_DATA_DIR": tmp, "BOT_CONFIG": str(ROOT / "config" / "bot.toml")})
        app = build_app(settings, arxiv=False)
        try:
            poll(app, backfill=0)  # the sample feed into a real SQLite store
            stored = app.store.latest_summaries()
            renderer = app.renderer
            # Warm Jinja's template cache and the libraries' lazy tables, as a running bot has them.
            content.renders(app, stored)
            for channel in CHANNELS:
                renderer.post(channel, stored[0].summary, None)

            print(f"{'summary':<44} {'chars':>6} {'first ms':>9} {'posts ms':>9}")
            firsts: list[float] = []
            posts: list[float] = []
            for s in stored:
                summary = s.summary
                paper = details.get(summary.arxiv_id or "")
                first_t, post_t = [], []
                for _ in range(args.rounds):
                    t = time.perf_counter()
                    h = renderer.html(summary)
                    x = renderer.text(summary)
                    renderer.feed_entry_html(summary, paper, html=h)
                    first_t.append(time.perf_counter() - t)

                    t = time.perf_counter()
                    for channel in CHANNELS:
                        renderer.post(channel, summary, paper, text=x)
                    post_t.append(time.perf_counter() - t)
                first, post = statistics.median(first_t), statistics.median(post_t)
                firsts.append(first)
                posts.append(post)
                print(f"{summary.title[:44]:<44} {len(summary.text):>6} {first * 1000:>9.2f} {post * 1000:>9.2f}")
            rounds = []
            for _ in range(args.rounds):
                t = time.perf_counter()
                cached_renders = content.renders(app, stored)
                for s in stored:
                    renderer.feed_entry_html(
                        s.summary, details.get(s.summary.arxiv_id or ""), html=cached_renders[s.id][0]
                    )
                rounds.append((time.perf_counter() - t) / len(stored))
            cached_per_summary = statistics.median(rounds)
        finally:
            app.close()
    n = len(firsts)
    first, post, cached = sum(firsts) / n, sum(posts) / n, cached_per_summary
    print(
        f"{n} summaries: first render (html + text + feed entry) {first * 1000:.2f} ms/summary, "
        f"posts (X + Facebook, once per delivery, not cached) {post * 1000:.2f} ms/summary, "
        f"cached (render cache lookup + feed entry) {cached * 1000:.3f} ms/summary"
    )
    print(f"ratio_with_posts={(first + post) / cached:.1f}")
    print(f"ratio={first / cached:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
