"""First feeds build after a very large first poll (issue 17): `feeds build` right after a first poll of N summaries.

A feed of N items in the site's format (the sample's real texts, benchmarks/poll.py) is
polled once (`python -m bot poll`: a first poll, nothing queued), then `python -m bot feeds
build` runs in a fresh process with an empty render cache: every entry of every file is
rendered (Markdown + MathML) and serialised. Prints its wall time, CPU time and peak RSS for
each N given, and, as the floor measured in the same run, `python -c` importing the
renderer's libraries. Targets for N = 10,000: <= 10 s and <= 200 MB, and memory flat in N.

Also measured in the same run, the render floor: one process rendering the sample's summaries
(`Renderer.html_and_text`, what each summary of a first build needs at least: Markdown, MathML,
plain text, sanitising) with nothing else (no store, no feed writing, no process pool), its CPU
per summary, and what that alone makes of N summaries spread perfectly over this machine's cores.
A build cannot be faster than that line however the rest is arranged.

Usage: python benchmarks/first_build.py [--sizes 2000,10000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from noop import timed  # noqa: E402
from poll import generated_feed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2000,10000")
    args = ap.parse_args()
    floor = [sys.executable, "-c", "import bot.render, lxml.etree, feedgen.feed, sqlalchemy"]
    per_summary = render_floor()
    cores = os.cpu_count() or 1
    for n in [int(x) for x in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "feed.xml").write_bytes(generated_feed(n))
            (root / "bot.toml").write_text("[arxiv]\nenabled = false\n[source]\nmax_bytes = 500000000\n")
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            env.update(
                {
                    "BOT_DATA_DIR": str(root / "var"),
                    "SHORTSCIENCE_FEED_URL": str(root / "feed.xml"),
                    "BOT_DRY_RUN": "1",
                    "BOT_CONFIG": str(root / "bot.toml"),
                    "PYTHONPYCACHEPREFIX": str(root / "pycache"),
                }
            )
            poll = timed([sys.executable, "-m", "bot", "poll"], env)
            timed(floor, env)
            wall_f, cpu_f, rss_f, _ = timed(floor, env)
            wall, cpu, rss, out = timed([sys.executable, "-m", "bot", "feeds", "build"], env)
            files = sum(1 for p in (root / "var" / "public").rglob("*") if p.is_file())
            print(
                f"n={n} first poll: {poll[0]:.1f} s; feeds build: wall_s={wall:.2f} cpu_s={cpu:.2f} "
                f"peak_rss_mb={rss:.0f} "
                f"({files} files; {out.strip().splitlines()[-1]})"
            )
            print(
                f"n={n} floor (python importing the renderer, lxml, feedgen, SQLAlchemy): wall_s={wall_f:.2f} "
                f"cpu_s={cpu_f:.2f} peak_rss_mb={rss_f:.0f}"
            )
            print(
                f"n={n} render floor: {per_summary * 1000:.2f} ms of CPU a summary in one process; "
                f"{n} summaries on {cores} cores: at least {n * per_summary / cores:.1f} s"
            )


def render_floor(rounds: int = 5) -> float:
    """CPU seconds `Renderer.html_and_text` takes per sample summary, the best of `rounds` (in a fresh process)."""
    code = (
        "import time\n"
        "from bot.render import Renderer\n"
        "from bot.settings import load_settings, sample_feed_path\n"
        "from bot.sources import parse\n"
        "summaries = parse.parse_feed(sample_feed_path().read_bytes(), 'sample').summaries\n"
        "renderer = Renderer(load_settings())\n"
        "renderer.html_and_text(summaries[0])\n"
        "best = float('inf')\n"
        f"for _ in range({rounds}):\n"
        "    start = time.process_time()\n"
        "    for s in summaries:\n"
        "        renderer.html_and_text(s)\n"
        "    best = min(best, (time.process_time() - start) / len(summaries))\n"
        "print(best)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "BOT_CONFIG")}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


if __name__ == "__main__":
    main()
