"""No-op run benchmark (issue 17): `python -m bot run --once` when the feed answers 304 and nothing is due.

A local server serves the generated 100-item feed (benchmarks/poll.py) with an ETag and
answers If-None-Match with 304. A first `run --once` polls it (SQLite, dry run, no arXiv)
and builds the feeds; then, alternating, each timed in its own process:

- the bot: `python -m bot run --once` (the second and later runs: one 304, nothing due);
- the floor: `python -c` importing httpx and making the same conditional GET.

Bytecode is cached (PYTHONPYCACHEPREFIX, a temp dir) as on an installed system. Prints the
medians of wall time, CPU time (user + system) and peak RSS of each, checks that the feed
files were not rewritten, and a last line `ratio=<bot wall / floor wall>`. Targets: the bot
<= 0.3 s wall and <= 40 MB. The machine's load is printed: on a shared machine wall time
grows with it, CPU time much less.

Usage: python benchmarks/noop.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from poll import FeedServer, generated_feed  # noqa: E402

FLOOR = (
    "import httpx, sys; r = httpx.get(sys.argv[1], headers={'If-None-Match': '\"v1\"'}); assert r.status_code == 304"
)


#: forks and runs a command, prints its wall time and rusage: a child forked from this small
#: process starts its peak RSS afresh (one spawned by the benchmark would carry the benchmark's)
LAUNCHER = """
import os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execve(sys.argv[1], sys.argv[1:], os.environ)
_, status, ru = os.wait4(pid, 0)
cpu = ru.ru_utime + ru.ru_stime
print("\\nLAUNCHER", time.perf_counter() - t0, cpu, ru.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one process, and its output."""
    proc = subprocess.run(
        [sys.executable, "-S", "-c", LAUNCHER, *cmd], env=env, capture_output=True, text=True, check=False
    )
    text, _, last = proc.stdout.rpartition("\nLAUNCHER ")  # the launcher's line comes after the child's output
    text += proc.stderr
    wall, cpu, rss, code = last.split()
    if int(code) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{text}")
    return float(wall), float(cpu), int(rss) / 1024, text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args()
    server = FeedServer(generated_feed())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "bot.toml").write_text("[arxiv]\nenabled = false\n")
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            env.update(
                {
                    "BOT_DATA_DIR": str(root / "var"),
                    "SHORTSCIENCE_FEED_URL": server.url,
                    "BOT_DRY_RUN": "1",
                    "BOT_CONFIG": str(root / "bot.toml"),
                    "PYTHONPYCACHEPREFIX": str(root / "pycache"),
                }
            )
            bot = [sys.executable, "-m", "bot", "run", "--once"]
            floor = [sys.executable, "-c", FLOOR, server.url]
            first = timed(bot, env)
            print(f"first run (poll of 100 items, feeds built): {first[0]:.2f} s wall")
            timed(floor, env)  # bytecode of httpx cached too
            feed = root / "var" / "public" / "feed.atom"
            before = feed.stat().st_mtime_ns
            server.gets = 0
            ours, theirs = [], []
            for _ in range(args.runs):
                ours.append(timed(bot, env))
                theirs.append(timed(floor, env))
            assert "not modified" in ours[-1][3], ours[-1][3]
            assert feed.stat().st_mtime_ns == before, "the feeds were rewritten by a no-op run"
            gets = server.gets
    finally:
        server.close()

    def med(rows: list[tuple[float, float, float, str]], i: int) -> float:
        return statistics.median(r[i] for r in rows)

    print(
        f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {gets} GET requests for "
        f"{2 * args.runs} processes"
    )
    print("feed files rewritten by the no-op runs: 0")
    print(
        f"bot run --once (304): wall_s={med(ours, 0):.3f} cpu_s={med(ours, 1):.3f} peak_rss_mb={med(ours, 2):.1f} "
        f"(median of {args.runs})"
    )
    print(
        f"floor python + httpx conditional GET: wall_s={med(theirs, 0):.3f} cpu_s={med(theirs, 1):.3f} "
        f"peak_rss_mb={med(theirs, 2):.1f}"
    )
    print(f"cpu_ratio={med(ours, 1) / med(theirs, 1):.2f}")
    print(f"ratio={med(ours, 0) / med(theirs, 0):.2f}")


if __name__ == "__main__":
    main()
