"""The bot against the tools its users would otherwise pick (issue 17), whole process, same work, same machine.

Not part of the test suite: it installs the peers from PyPI (feed2toot, feed2fedi, feediverse,
feed2tweet, feed2exec, rss2email) into a throwaway virtual environment in a temp dir, then for
each feed (the bundled sample, a generated 100-item feed; served by a local server with an ETag,
answering If-None-Match with 304) runs each work with each tool, alternating, `--runs` times
(median printed), each run on a fresh state where the work needs one:

- publish: a first run posting every item (the bot: `run --once --backfill N` to its X stand-in,
  tests/fake_x.py; the Mastodon tools to tests/fake_mastodon.py; rss2email mails each item to an
  aiosmtpd sink, benchmarks/digest.py's); every stand-in answers after --latency-ms (20);
- noop: a second run on the unchanged feed (one 304 where the tool sends a conditional GET);
- digest: one e-mail of every item to 1 subscriber (the bot: `digest send --now` after a poll;
  rss2email: `digest = True`).

One row per (feed, work, tool): wall, CPU (user + system) and peak RSS of the whole process and the
ratio of its wall time to the fastest peer's; a tool that cannot do the work, or that this script
does not drive yet, says why in its row.

Usage: python benchmarks/peers.py [--runs 5] [--latency-ms 20] [--venv DIR (reuse an existing one)]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))

from digest import Sink  # noqa: E402
from noop import timed  # noqa: E402
from poll import FeedServer, generated_feed  # noqa: E402

from bot.settings import sample_feed_path  # noqa: E402

PEERS = ["feed2toot", "feed2fedi", "feediverse", "feed2tweet", "feed2exec", "rss2email"]
X_KEYS = {
    "TWITTER_API_KEY": "bench-ck",
    "TWITTER_API_SECRET": "bench-cs",
    "TWITTER_ACCESS_TOKEN": "bench-at",
    "TWITTER_ACCESS_TOKEN_SECRET": "bench-ats",
}
BOT_CONFIG = """[arxiv]
enabled = false
[channels.facebook]
enabled = false
[channels.mastodon]
enabled = false
[channels.bluesky]
enabled = false
[channels.twitter]
daily_cap = 0
monthly_cap = 0
[source]
max_new_per_poll = 0
"""
#: why a peer is not run for a work (what it cannot do, or what this script does not drive yet)
NOT_RUN = {
    "feed2tweet": (
        "not run: posts with X API v1.1 statuses/update (tweepy API v1); X closed it and the stand-in serves v2"
    ),
    "feed2exec": (
        "not run: publishes nowhere itself (runs a command or a plugin per item); no like-for-like network post"
    ),
    "feed2toot": "not run: not driven by this script yet (needs its ini config and credential files)",
    "feed2fedi": "not run: not driven by this script yet (needs its YAML config and a registered app)",
}


@dataclass
class Row:
    feed: str
    work: str
    tool: str
    wall: float = 0.0
    cpu: float = 0.0
    rss: float = 0.0
    note: str = ""


class Process:
    """A stand-in or sink started as its own process that prints its port first."""

    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


MASTODON_V1 = """
import sys
sys.path.insert(0, {tests!r})
import fake_mastodon
from fake_x import json_answer

class WithV1(fake_mastodon.FakeMastodon):
    # Mastodon.py (the Mastodon tools' client) asks /api/v1/instance for the version first.
    def answer(self, request):
        if request.method == "GET" and request.path.rstrip("/") == "/api/v1/instance":
            return json_answer(200, {{"uri": "127.0.0.1", "title": "stand-in", "version": "4.3.0"}})
        return super().answer(request)

fake_mastodon.FakeMastodon = WithV1
fake_mastodon.main(sys.argv[1:])
"""


def install_peers(venv: Path) -> Path:
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *PEERS], check=True)
    return venv / "bin"


def median_row(feed: str, work: str, tool: str, runs: list[tuple[float, float, float, str]]) -> Row:
    return Row(
        feed,
        work,
        tool,
        statistics.median(r[0] for r in runs),
        statistics.median(r[1] for r in runs),
        statistics.median(r[2] for r in runs),
    )


def bot_env(root: Path, feed_url: str, x_url: str, smtp_port: int) -> dict[str, str]:
    (root / "bot.toml").write_text(BOT_CONFIG)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(
        {
            "BOT_DATA_DIR": str(root / "var"),
            "SHORTSCIENCE_FEED_URL": feed_url,
            "BOT_CONFIG": str(root / "bot.toml"),
            "TWITTER_API_BASE_URL": x_url,
            "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "DIGEST_FROM": "bot@example.com",
            "SECRET_KEY": "peers-benchmark-key-0123456789abcdef",
            "PYTHONPYCACHEPREFIX": str(root.parent / "pycache"),
            **X_KEYS,
        }
    )
    return env


def r2e_config(root: Path, feed_url: str, smtp_port: int, *, digest: bool) -> list[str]:
    (root / "r2e.cfg").write_text(
        "[DEFAULT]\nfrom = bot@example.com\nto = reader@example.com\nemail-protocol = smtp\nsmtp-server = 127.0.0.1\n"
        f"smtp-port = {smtp_port}\nsmtp-ssl = False\nsmtp-auth = False\ndigest = "
        f"{digest}\n\n[feed.shortscience]\nurl = {feed_url}\n"
    )
    return ["-c", str(root / "r2e.cfg"), "-d", str(root / "r2e.json")]


def feediverse_config(root: Path, feed_url: str, mastodon_url: str) -> Path:
    path = root / "feediverse.yml"
    path.write_text(
        f"url: {mastodon_url}\nclient_id: bench\nclient_secret: bench\naccess_token: token\n"
        f"feeds:\n- url: {feed_url}\n  template: '{{title}} {{url}}'\n"
    )
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--venv", help="an existing virtual environment with the peers installed")
    args = ap.parse_args()
    latency = str(args.latency_ms / 1000)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        peers_bin = install_peers(Path(args.venv) if args.venv else tmp / "peers-venv")
        x = Process(
            [
                sys.executable,
                str(REPO / "tests" / "fake_x.py"),
                "--port",
                "0",
                "--delay",
                latency,
                "--keep-alive",
                "--consumer-key",
                X_KEYS["TWITTER_API_KEY"],
                "--access-token",
                X_KEYS["TWITTER_ACCESS_TOKEN"],
            ]
        )
        masto = Process(
            [sys.executable, "-c", MASTODON_V1.format(tests=str(REPO / "tests")), "--port", "0", "--delay", latency]
        )
        sink = Sink()
        try:
            for feed_name, body in (("sample", sample_feed_path().read_bytes()), ("100 items", generated_feed(100))):
                server = FeedServer(body)
                try:
                    rows += compare(
                        args.runs,
                        feed_name,
                        body,
                        server.url,
                        peers_bin,
                        tmp / feed_name.replace(" ", ""),
                        x_url=f"http://127.0.0.1:{x.port}",
                        masto_url=f"http://127.0.0.1:{masto.port}",
                        smtp_port=sink.port,
                    )
                finally:
                    server.close()
        finally:
            x.close()
            masto.close()
            sink.close()
    report(rows)


def compare(
    runs: int,
    feed: str,
    body: bytes,
    url: str,
    peers_bin: Path,
    tmp: Path,
    *,
    x_url: str,
    masto_url: str,
    smtp_port: int,
) -> list[Row]:
    """Every work with every tool on one feed, alternating tools run by run."""
    items = body.count(b"<item>")
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    bot = [sys.executable, "-m", "bot"]
    results: dict[tuple[str, str], list[tuple[float, float, float, str]]] = {}

    failed: dict[tuple[str, str], str] = {}

    def add(work: str, tool: str, cmd: list[str], env: dict[str, str]) -> None:
        if (work, tool) in failed:
            return
        try:
            results.setdefault((work, tool), []).append(timed(cmd, env))
        except SystemExit as exc:  # the tool failed: its row says how
            failed[(work, tool)] = "failed: " + " ".join(str(exc).split())[-300:]

    for i in range(runs):
        # ---- publish (a first run), then noop (a second run on the same state)
        root = tmp / f"bot-{i}"
        root.mkdir(parents=True)
        env = bot_env(root, url, x_url, smtp_port)
        reset = urllib.request.Request(f"{x_url}/_fake/reset", data=b"{}", method="POST")
        urllib.request.urlopen(reset, timeout=30).read()  # the stand-in refuses a text it has seen, as X does
        add("publish", "the bot", [*bot, "run", "--once", "--backfill", str(items)], env)
        add("noop", "the bot", [*bot, "run", "--once"], env)
        root = tmp / f"r2e-{i}"
        root.mkdir(parents=True)
        r2e = [str(peers_bin / "r2e"), *r2e_config(root, url, smtp_port, digest=False)]
        add("publish", "rss2email", [*r2e, "run"], base_env)
        add("noop", "rss2email", [*r2e, "run"], base_env)
        root = tmp / f"feediverse-{i}"
        root.mkdir(parents=True)
        cfg = feediverse_config(root, url, masto_url)
        add("publish", "feediverse", [str(peers_bin / "feediverse"), "-c", str(cfg)], base_env)
        add("noop", "feediverse", [str(peers_bin / "feediverse"), "-c", str(cfg)], base_env)
        # ---- digest: every item to one subscriber
        root = tmp / f"bot-digest-{i}"
        root.mkdir(parents=True)
        env = bot_env(root, url, x_url, smtp_port)
        subprocess.run([*bot, "poll", "--backfill", str(items)], env=env, check=True, capture_output=True)
        subprocess.run(
            [*bot, "subscribers", "add", "reader@example.com", "--confirmed"], env=env, check=True, capture_output=True
        )
        add("digest", "the bot", [*bot, "digest", "send", "--now"], env)
        root = tmp / f"r2e-digest-{i}"
        root.mkdir(parents=True)
        add(
            "digest",
            "rss2email",
            [str(peers_bin / "r2e"), *r2e_config(root, url, smtp_port, digest=True), "run"],
            base_env,
        )
    notes = {("noop", "feediverse"): "no conditional GET: fetches and parses the whole feed every run"}
    rows = [median_row(feed, work, tool, r) for (work, tool), r in results.items() if (work, tool) not in failed and r]
    for row in rows:
        row.note = notes.get((row.work, row.tool), "")
    rows += [Row(feed, work, tool, note=why) for (work, tool), why in failed.items()]
    rows.append(Row(feed, "digest", "feediverse", note="cannot: posts to Mastodon, sends no e-mail"))
    for work in ("publish", "noop", "digest"):
        rows += [Row(feed, work, tool, note=why) for tool, why in NOT_RUN.items()]
    return rows


def report(rows: list[Row]) -> None:
    print(f"{'feed':<10} {'work':<8} {'tool':<11} {'wall_s':>7} {'cpu_s':>6} {'rss_mb':>6} {'ratio':>6}  note")
    for feed in dict.fromkeys(r.feed for r in rows):
        for work in ("publish", "noop", "digest"):
            group = [r for r in rows if r.feed == feed and r.work == work]
            peers = [r.wall for r in group if r.tool != "the bot" and r.wall]
            fastest = min(peers) if peers else 0.0
            for r in sorted(group, key=lambda r: (r.tool != "the bot", not r.wall, r.wall)):
                if not r.wall:
                    print(f"{feed:<10} {work:<8} {r.tool:<11} {'':>7} {'':>6} {'':>6} {'':>6}  {r.note}")
                    continue
                ratio = f"{r.wall / fastest:.2f}" if fastest else "-"
                print(
                    f"{feed:<10} {work:<8} {r.tool:<11} {r.wall:>7.3f} {r.cpu:>6.3f} {r.rss:>6.1f} {ratio:>6}  {r.note}"
                )
    print("ratio: wall time / the fastest peer's wall time for the same work in this run")


if __name__ == "__main__":
    main()
