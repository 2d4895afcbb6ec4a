"""The bot against the tools its users would otherwise pick (issue 17), whole process, same work, same machine.

Not part of the test suite: it installs the peers from PyPI (feed2toot, feed2fedi, feediverse,
feed2tweet, feed2exec, rss2email) into a throwaway virtual environment in a temp dir (or takes
--venv), then for each feed (the bundled sample, a generated 100-item feed; served by a local
server with an ETag, answering If-None-Match with 304) runs each work with each tool, alternating,
`--runs` times (median printed), each run on a fresh state where the work needs one:

- publish: a first run posting every item of the feed. The bot: `run --once --backfill N` to its X
  stand-in (tests/fake_x.py). feed2toot (`--limit N`: its default is 10 items a run), feed2fedi
  (media off: it would fetch each item's link with yt-dlp) and feediverse: to the Mastodon stand-in
  (tests/fake_mastodon.py, with /api/v1/instance added here for Mastodon.py and
  minimal_activitypub), each with its own config and credential files written here. rss2email:
  one e-mail per item to an aiosmtpd sink (benchmarks/digest.py's).
- noop: a second run on the unchanged feed (one 304 where the tool sends a conditional GET).
- digest: one e-mail of every item to 1 subscriber. rss2email: `digest = True`. The bot:
  `digest send --now` on the state the worker leaves in production (`run --once --backfill N`,
  BOT_DRY_RUN=1 in that setup command only: polled, feeds built, render cache filled, nothing
  posted), with `digest.max_items` raised over any feed's size, so its digest holds every item too
  (its default, 30, would cap the 100-item feed).

The same latency everywhere (--latency-ms, 20): the X and Mastodon stand-ins answer every request
that much later, and the SMTP sink answers the end of DATA (the message accepted: an e-mail's
"post") that much later, its other replies at once. Every run's posts or e-mails are counted at the
stand-in; a run that made a number other than the work's says so in its row.

One row per (feed, work, tool): wall, CPU (user + system) and peak RSS of the whole process and the
ratio of its wall time to the fastest peer's wall time for that work in this run; then a `fastest:`
line naming that peer. A tool that cannot do the work says why in its row.

Usage: python benchmarks/peers.py [--runs 5] [--latency-ms 20] [--venv DIR (reuse an existing one)]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))

from digest import Sink  # noqa: E402
from noop import timed  # noqa: E402
from poll import FeedServer, generated_feed  # noqa: E402
from stand_ins import X_KEYS, X_ONLY_CONFIG, fake_x_command  # noqa: E402

from bot.settings import sample_feed_path  # noqa: E402

PEERS = ["feed2toot", "feed2fedi", "feediverse", "feed2tweet", "feed2exec", "rss2email"]
#: more summaries than any feed here holds: the bot's digest then holds every item, as rss2email's does
DIGEST_MAX_ITEMS = 10_000
BOT_CONFIG = (
    X_ONLY_CONFIG
    + f"""[source]
max_new_per_poll = 0
[digest]
max_items = {DIGEST_MAX_ITEMS}
"""
)
#: the Mastodon stand-in's access token (tests/fake_mastodon.py's default)
MASTODON_TOKEN = "token"
#: why a peer is not run for any work (what it cannot do)
NOT_RUN = {
    "feed2tweet": (
        "not run: posts with X API v1.1 statuses/update (tweepy API v1); X closed it and the stand-in serves v2"
    ),
    "feed2exec": (
        "not run: publishes nowhere itself (runs a command or a plugin per item); no like-for-like network post"
    ),
}
MASTODON_TOOLS = ("feed2toot", "feed2fedi", "feediverse")
NO_CONDITIONAL_GET = "no conditional GET: fetches and parses the whole feed every run"


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
        if self.proc.stdout is not None:
            self.proc.stdout.close()


MASTODON_V1 = """
import sys
sys.path.insert(0, {tests!r})
import fake_mastodon
from fake_x import json_answer

class WithV1(fake_mastodon.FakeMastodon):
    # Mastodon.py (feed2toot's, feediverse's client) and minimal_activitypub (feed2fedi's) ask
    # /api/v1/instance for the version and limits first.
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


def bot_digest_setup(bot: list[str], items: int, env: dict[str, str]) -> list[tuple[list[str], dict[str, str]]]:
    """The commands (and their env) that leave the bot's state as the worker does before a digest:
    polled and feeds built (render cache filled) by `run --once`, dry run so nothing is posted; a subscriber."""
    return [
        ([*bot, "run", "--once", "--backfill", str(items)], {**env, "BOT_DRY_RUN": "1"}),
        ([*bot, "subscribers", "add", "reader@example.com", "--confirmed"], env),
    ]


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
        f"url: {mastodon_url}\nclient_id: bench\nclient_secret: bench\naccess_token: {MASTODON_TOKEN}\n"
        f"feeds:\n- url: {feed_url}\n  template: '{{title}} {{url}}'\n"
    )
    return path


def feed2toot_config(root: Path, feed_url: str, mastodon_url: str) -> Path:
    """feed2toot's ini (docs: feed2toot.readthedocs.io, configure.html) and the two credential files
    register_feed2toot_app would write (Mastodon.py's format: client id and secret; the user's token)."""
    (root / "feed2toot_clientcred.secret").write_text("bench\nbench\n")
    (root / "feed2toot_usercred.secret").write_text(f"{MASTODON_TOKEN}\n")
    path = root / "feed2toot.ini"
    path.write_text(
        f"[mastodon]\ninstance_url = {mastodon_url}\n"
        f"user_credentials = {root / 'feed2toot_usercred.secret'}\n"
        f"client_credentials = {root / 'feed2toot_clientcred.secret'}\ntoot_visibility = public\n\n"
        f"[cache]\ncachefile = {root / 'feed2toot.db'}\ncache_limit = 10000\n\n"
        f"[lock]\nlock_file = {root / 'feed2toot.lock'}\nlock_timeout = 3600\n\n"
        f"[rss]\nuri = {feed_url}\ntoot = {{title}} {{link}}\n"
    )
    return path


def feed2fedi_config(root: Path, feed_url: str, mastodon_url: str) -> Path:
    """feed2fedi's JSON config (control.Configuration): the token it would get by its OAuth set-up; media
    off, since with it on it runs yt-dlp on every item's link (the network) before posting."""
    path = root / "feed2fedi.json"
    config = {
        "feeds": [{"url": feed_url}],
        "fedi_instance": mastodon_url,
        "fedi_access_token": MASTODON_TOKEN,
        "cache_max_age": 30,
        "cache_db_path": str(root / "feed2fedi.sqlite"),
        "bot_post_media": False,
        "bot_post_visibility": "public",
        "bot_post_template": "{title}\\n\\n{link}",
    }
    path.write_text(json.dumps(config))
    return path


def posts_of(url: str) -> Callable[[], int]:
    """How many posts a stand-in (tests/fake_x.py's control API) holds."""

    def count() -> int:
        with urllib.request.urlopen(f"{url}/_fake/posts", timeout=30) as answer:
            return len(json.load(answer))

    return count


def reset(url: str) -> None:
    request = urllib.request.Request(f"{url}/_fake/reset", data=b"{}", method="POST")
    urllib.request.urlopen(request, timeout=30).read()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--venv", help="an existing virtual environment with the peers installed")
    args = ap.parse_args()
    latency = args.latency_ms / 1000
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        peers_bin = install_peers(Path(args.venv) if args.venv else tmp / "peers-venv")
        x = Process(fake_x_command(latency))
        masto = Process(
            [
                sys.executable,
                "-c",
                MASTODON_V1.format(tests=str(REPO / "tests")),
                "--port",
                "0",
                "--delay",
                str(latency),
            ]
        )
        sink = Sink(data_delay=latency)
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
                        sink=sink,
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
    sink: Sink,
) -> list[Row]:
    """Every work with every tool on one feed, alternating tools run by run."""
    items = body.count(b"<item>")
    assert items <= DIGEST_MAX_ITEMS
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    bot = [sys.executable, "-m", "bot"]
    x_posts, masto_posts = posts_of(x_url), posts_of(masto_url)
    results: dict[tuple[str, str], list[tuple[float, float, float, str]]] = {}
    failed: dict[tuple[str, str], str] = {}
    miscounted: dict[tuple[str, str], str] = {}

    def add(
        work: str, tool: str, cmd: list[str], env: dict[str, str], made: Callable[[], int], want: int, says: str = ""
    ) -> None:
        """One timed run; `made` counts the posts or e-mails at the stand-in, `want` of them are the work;
        `says`: what the tool's output must hold (the bot's digest: how many summaries it holds)."""
        if (work, tool) in failed:
            return
        before = made()
        try:
            outcome = timed(cmd, env)
        except SystemExit as exc:  # the tool failed: its row says how
            failed[(work, tool)] = "failed: " + " ".join(str(exc).split())[-300:]
            return
        results.setdefault((work, tool), []).append(outcome)
        if (got := made() - before) != want:
            miscounted[(work, tool)] = f"made {got} posts/e-mails, not {want}"
        elif says not in outcome[3]:
            miscounted[(work, tool)] = f"its output does not say {says!r}"

    for i in range(runs):
        # ---- publish (a first run), then noop (a second run on the same state)
        root = tmp / f"bot-{i}"
        root.mkdir(parents=True)
        env = bot_env(root, url, x_url, sink.port)
        reset(x_url)  # the stand-in refuses a text it has seen, as X does
        add("publish", "the bot", [*bot, "run", "--once", "--backfill", str(items)], env, x_posts, items)
        add("noop", "the bot", [*bot, "run", "--once"], env, x_posts, 0)
        root = tmp / f"r2e-{i}"
        root.mkdir(parents=True)
        r2e = [str(peers_bin / "r2e"), *r2e_config(root, url, sink.port, digest=False)]
        add("publish", "rss2email", [*r2e, "run"], base_env, sink.count, items)
        add("noop", "rss2email", [*r2e, "run"], base_env, sink.count, 0)
        for tool in MASTODON_TOOLS:
            root = tmp / f"{tool}-{i}"
            root.mkdir(parents=True)
            reset(masto_url)
            cmd = mastodon_tool_command(tool, peers_bin, root, url, masto_url, items)
            add("publish", tool, cmd, base_env, masto_posts, items)
            add("noop", tool, cmd, base_env, masto_posts, 0)
        # ---- digest: every item to one subscriber
        root = tmp / f"bot-digest-{i}"
        root.mkdir(parents=True)
        env = bot_env(root, url, x_url, sink.port)
        for cmd, setup_env in bot_digest_setup(bot, items, env):
            subprocess.run(cmd, env=setup_env, check=True, capture_output=True)
        add("digest", "the bot", [*bot, "digest", "send", "--now"], env, sink.count, 1, f"{items} summaries")
        root = tmp / f"r2e-digest-{i}"
        root.mkdir(parents=True)
        r2e = [str(peers_bin / "r2e"), *r2e_config(root, url, sink.port, digest=True), "run"]
        add("digest", "rss2email", r2e, base_env, sink.count, 1)
    return rows_of(feed, results, failed, miscounted)


def mastodon_tool_command(
    tool: str, peers_bin: Path, root: Path, feed_url: str, masto_url: str, items: int
) -> list[str]:
    """The command that runs `tool` once (its config written in `root`), posting every new item."""
    if tool == "feed2toot":
        return [str(peers_bin / tool), "-c", str(feed2toot_config(root, feed_url, masto_url)), "--limit", str(items)]
    if tool == "feed2fedi":
        return [str(peers_bin / tool), "-c", str(feed2fedi_config(root, feed_url, masto_url))]
    return [str(peers_bin / tool), "-c", str(feediverse_config(root, feed_url, masto_url))]


def rows_of(
    feed: str,
    results: dict[tuple[str, str], list[tuple[float, float, float, str]]],
    failed: dict[tuple[str, str], str],
    miscounted: dict[tuple[str, str], str],
) -> list[Row]:
    notes = {("noop", tool): NO_CONDITIONAL_GET for tool in MASTODON_TOOLS}
    rows = [median_row(feed, work, tool, r) for (work, tool), r in results.items() if (work, tool) not in failed and r]
    for row in rows:
        row.note = "; ".join(n for n in (miscounted.get((row.work, row.tool)), notes.get((row.work, row.tool))) if n)
    rows += [Row(feed, work, tool, note=why) for (work, tool), why in failed.items()]
    rows += [Row(feed, "digest", tool, note="cannot: posts to Mastodon, sends no e-mail") for tool in MASTODON_TOOLS]
    for work in ("publish", "noop", "digest"):
        rows += [Row(feed, work, tool, note=why) for tool, why in NOT_RUN.items()]
    return rows


def fastest_peer(group: list[Row]) -> Row | None:
    """The peer (not the bot) with the lowest wall time among those that did the work."""
    peers = [r for r in group if r.tool != "the bot" and r.wall]
    return min(peers, key=lambda r: r.wall) if peers else None


def report(rows: list[Row]) -> None:
    print(f"{'feed':<10} {'work':<8} {'tool':<11} {'wall_s':>7} {'cpu_s':>6} {'rss_mb':>6} {'ratio':>6}  note")
    for feed in dict.fromkeys(r.feed for r in rows):
        for work in ("publish", "noop", "digest"):
            group = [r for r in rows if r.feed == feed and r.work == work]
            fastest = fastest_peer(group)
            for r in sorted(group, key=lambda r: (r.tool != "the bot", not r.wall, r.wall)):
                if not r.wall:
                    print(f"{feed:<10} {work:<8} {r.tool:<11} {'':>7} {'':>6} {'':>6} {'':>6}  {r.note}")
                    continue
                ratio = f"{r.wall / fastest.wall:.2f}" if fastest else "-"
                print(
                    f"{feed:<10} {work:<8} {r.tool:<11} {r.wall:>7.3f} {r.cpu:>6.3f} {r.rss:>6.1f} {ratio:>6}  {r.note}"
                )
            if group:
                named = f"{fastest.tool} ({fastest.wall:.3f} s wall)" if fastest else "none (no peer did the work)"
                print(f"{feed:<10} {work:<8} fastest: {named}")
    print("ratio: wall time / the fastest peer's wall time for the same work in this run")


if __name__ == "__main__":
    main()
