"""`digest send --now` against rss2email's digest, whole process, the same 100 items to 1 subscriber (issue 17).

Not part of the test suite. A first run (`run --once --backfill 100`, dry-run, arXiv and every channel
off, `digest.max_items = 100`) stores a generated 100-item feed and builds the feeds, which fills
the render cache, as the worker leaves it; one subscriber is added. Then, alternating, `--runs`
times (medians printed): the bot's `digest send --now` on a fresh copy of that database, and
rss2email with `digest = True` fetching the same feed from a local server; both mail the aiosmtpd
sink of benchmarks/digest.py, which must get exactly one message from each. With `--cold` the
render cache is emptied first (the digest then renders the teasers' text itself). With `--before
DIR` a checkout of older code (its `bot/` package) is timed in the same runs, with this virtual
environment's libraries.

Also timed in the same runs, as a floor: `python -c "import bot.store.schema"`, i.e. the interpreter,
SQLAlchemy and the declared tables, which every command that opens the database loads before
anything else: what is left between it and rss2email's time is all the digest itself can spend.

Wall, CPU (user + system) and peak RSS of each whole process; bytecode cached as an installed
system does (PYTHONPYCACHEPREFIX). rss2email comes from --venv (default: benchmarks/peers.py's
installation into a throwaway virtual environment).

Usage: python benchmarks/digest_send.py [--runs 5] [--cold] [--before DIR] [--venv DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))

from digest import Sink  # noqa: E402
from noop import timed  # noqa: E402
from peers import install_peers, r2e_config  # noqa: E402
from poll import FeedServer, generated_feed  # noqa: E402

#: the floor's row: not a checkout, the import of SQLAlchemy and the tables alone
FLOOR = Path("/dev/null")
ITEMS = 100
CONFIG = (
    "[arxiv]\nenabled = false\n"
    + "".join(f"[channels.{c}]\nenabled = false\n" for c in ("twitter", "facebook", "mastodon", "bluesky"))
    + f"[digest]\nmax_items = {ITEMS}\n"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cold", action="store_true", help="empty the render cache before the runs")
    ap.add_argument("--before", type=Path, help="a checkout of older code to time in the same runs")
    ap.add_argument("--venv", help="an existing virtual environment with rss2email installed")
    args = ap.parse_args()
    sink = Sink()
    feed = generated_feed(ITEMS)
    server = FeedServer(feed)
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            r2e = install_peers(Path(args.venv) if args.venv else tmp / "peers-venv") / "r2e"
            results = race(tmp, sink, server.url, feed, str(r2e), args)
    finally:
        sink.close()
        server.close()
    theirs = statistics.median(r[0] for r in results["rss2email"])
    for tool, runs in results.items():
        wall, cpu, rss = (statistics.median(r[i] for r in runs) for i in range(3))
        print(f"{tool:12s} wall_s={wall:.3f} cpu_s={cpu:.3f} peak_rss_mb={rss:.1f} ratio={wall / theirs:.2f}")
    print(
        f"render cache {'emptied' if args.cold else 'filled'}; ratio: wall time / rss2email's (median of {args.runs}); "
        "floor: python importing SQLAlchemy and the bot's tables, which every database command loads first"
    )


def race(
    tmp: Path, sink: Sink, url: str, feed: bytes, r2e: str, args: argparse.Namespace
) -> dict[str, list[tuple[float, float, float]]]:
    (tmp / "feed.xml").write_bytes(feed)
    (tmp / "bot.toml").write_text(CONFIG)
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    base["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")

    def env_for(data: Path) -> dict[str, str]:
        return {
            **base,
            "BOT_DATA_DIR": str(data),
            "SHORTSCIENCE_FEED_URL": str(tmp / "feed.xml"),
            "BOT_CONFIG": str(tmp / "bot.toml"),
            "SMTP_URL": f"smtp://127.0.0.1:{sink.port}",
            "DIGEST_FROM": "bot@example.com",
            "SECRET_KEY": "digest-send-benchmark-key-0123456789abcdef",
        }

    ready = tmp / "ready"
    bot = [sys.executable, "-m", "bot"]
    first = {**env_for(ready), "BOT_DRY_RUN": "1"}
    subprocess.run(
        [*bot, "run", "--once", "--backfill", str(ITEMS)], env=first, cwd=REPO, check=True, capture_output=True
    )
    add = [*bot, "subscribers", "add", "reader@example.com", "--confirmed"]
    subprocess.run(add, env=env_for(ready), cwd=REPO, check=True, capture_output=True)
    if args.cold:
        with sqlite3.connect(ready / "bot.sqlite3") as db:
            db.execute("DELETE FROM renders")
    tools = {
        "the bot": REPO,
        "rss2email": None,
        **({"before": args.before.resolve()} if args.before else {}),
        "floor": FLOOR,
    }
    results: dict[str, list[tuple[float, float, float]]] = {tool: [] for tool in tools}
    for i in range(args.runs + 1):  # the first round only warms the bytecode caches
        for tool, code in tools.items():
            if code is FLOOR:
                os.chdir(REPO)
                wall, cpu, rss, _ = timed([sys.executable, "-c", "import bot.store.schema"], env_for(tmp / "none"))
                if i:
                    results[tool].append((wall, cpu, rss))
                continue
            if code is None:
                root = tmp / f"r2e-{i}"
                root.mkdir()
                cmd, env = [r2e, *r2e_config(root, url, sink.port, digest=True), "run"], base
            else:
                data = shutil.copytree(ready, tmp / f"{tool.replace(' ', '-')}-{i}")
                cmd, env = [*bot, "digest", "send", "--now"], env_for(data)
            before = sink.count()
            os.chdir(code or tmp)  # `python -m bot` imports the package of its working folder first
            wall, cpu, rss, out = timed(cmd, env)
            if sink.count() - before != 1 or (code is not None and f"{ITEMS} summaries" not in out):
                raise SystemExit(f"{tool}: expected one message of {ITEMS} summaries:\n{out}")
            if i:
                results[tool].append((wall, cpu, rss))
    return results


if __name__ == "__main__":
    main()
