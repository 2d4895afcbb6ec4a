"""Running the bot as real processes against the X and Graph stand-ins (crash and reliability tests).

Builds the environment a deployment would have (live credentials, the two
``*_URL`` variables pointed at local stand-ins, a settings file), starts
``python -m bot …`` processes with their output in a log file, and counts what
the stand-ins received per summary.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from conftest import NEWER_CHANNELS_OFF
from env_util import clean_environ
from fake_graph import FakeGraph
from fake_x import FakeX, Fault

from bot.records import DeliveryState
from bot.store import Store

REPO = Path(__file__).resolve().parent.parent

X_KEY, X_SECRET, X_TOKEN, X_TOKEN_SECRET = "ck-crash", "cs-crash-secret", "at-crash", "ats-crash-secret"
PAGE_ID, PAGE_TOKEN = "424242", "page-token-crash"


def write_config(path: Path, sections: Mapping[str, Mapping[str, Any]]) -> Path:
    """A settings file from {section: {name: value}} (values: bool, int, float or str)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return str(v)

    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def bot_env(
    tmp_path: Path,
    db_url: str,
    *,
    x: FakeX | None = None,
    graph: FakeGraph | None = None,
    feed: Path | None = None,
    config: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, str]:
    """The environment of a deployment whose X and Facebook are the given stand-ins."""
    env = clean_environ()
    # X's default caps (50 a day) would hold back the hundreds of posts these tests make; the newer
    # channels are off unless a test turns them on: these runs count X and Facebook posts. One post at
    # a time: the crash tests script which post is on the network when they kill (tests/test_lanes.py
    # kills with two lanes).
    sections: dict[str, dict[str, Any]] = {
        "arxiv": {"enabled": False},
        "digest": {"enabled": False},
        "dispatch": {"lanes": 1},
        **{k: dict(v) for k, v in NEWER_CHANNELS_OFF.items()},
        "channels.twitter": {"daily_cap": 0, "monthly_cap": 0},
    }
    for section, values in (config or {}).items():
        sections.setdefault(section, {}).update(values)
    env.update(
        BOT_DATA_DIR=str(tmp_path / "var"),
        DATABASE_URL=db_url,
        BOT_CONFIG=str(write_config(tmp_path / "bot.toml", sections)),
        PYTHONUNBUFFERED="1",
    )
    if feed is not None:
        env["SHORTSCIENCE_FEED_URL"] = str(feed)
    if x is not None:
        env.update(
            TWITTER_API_KEY=X_KEY,
            TWITTER_API_SECRET=X_SECRET,
            TWITTER_ACCESS_TOKEN=X_TOKEN,
            TWITTER_ACCESS_TOKEN_SECRET=X_TOKEN_SECRET,
            TWITTER_API_BASE_URL=x.url,
        )
    if graph is not None:
        env.update(FACEBOOK_PAGE_ID=PAGE_ID, FACEBOOK_PAGE_ACCESS_TOKEN=PAGE_TOKEN, FACEBOOK_GRAPH_URL=graph.url + "/")
    return env


def stand_ins(*, delay: float = 0.0) -> tuple[FakeX, FakeGraph]:
    """Started X and Graph stand-ins that accept exactly the credentials bot_env hands out."""
    x = FakeX(delay=delay, consumer_key=X_KEY, access_token=X_TOKEN)
    graph = FakeGraph(delay=delay, page_id=PAGE_ID, access_token=PAGE_TOKEN)
    x.start()
    graph.start()
    return x, graph


def run_bot(
    env: Mapping[str, str], *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "bot", *args], env=dict(env), capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    if check and r.returncode != 0:
        raise AssertionError(f"bot {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


class BotProcess:
    """A long-running ``python -m bot …`` whose output goes to a log file we can wait on."""

    def __init__(self, env: Mapping[str, str], log: Path, *args: str) -> None:
        self.log_path = log
        self._log = log.open("a")
        self.p = subprocess.Popen(
            [sys.executable, "-m", "bot", *args], env=dict(env), cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, needle: str, *, timeout: float = 60, start: int = 0) -> None:
        """Wait until `needle` appears in the log after character `start`."""
        wait_until(
            lambda: needle in self.text()[start:],
            timeout=timeout,
            why=lambda: f"no {needle!r} in the log of pid {self.pid} (exit {self.p.poll()}):\n{self.text()[-3000:]}",
        )

    def kill(self) -> None:
        if self.alive():
            self.p.kill()
        self.p.wait(timeout=30)

    def close(self) -> None:
        self.kill()
        self._log.close()


def wait_until(
    condition: Callable[[], bool], *, timeout: float, why: Callable[[], str] | str = "", every: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(why() if callable(why) else why or f"condition not met within {timeout} s")
        time.sleep(every)


_LINK = re.compile(r"https?://\S+")


def kill_between_accept_and_commit(
    env: dict[str, str], log: Path, fake: Any, store: Store, channel: str, path: str
) -> BotProcess:
    """A `dispatch` SIGKILLed while `fake` holds its answer to the second post it accepted (at `path`).

    The first post's outcome is written while the second is on the network: once it is, the
    second is the only post between the network's accept and the bot's commit. The killed
    process is returned (for its log); the held answer is released.
    """
    fake.fail(Fault(hold=True, skip=1, path=path))
    proc = BotProcess(env, log, "dispatch")
    try:
        wait_until(lambda: fake.held == 1, timeout=60, why=lambda: f"no post was held:\n{proc.text()}")
        wait_until(
            lambda: any(d.state is DeliveryState.SENT for d in store.deliveries(channel=channel)),
            timeout=30,
            why=lambda: f"the first post was not recorded as sent:\n{proc.text()}",
        )
        proc.p.send_signal(signal.SIGKILL)
        proc.p.wait(timeout=30)
    except BaseException:
        proc.close()
        raise
    fake.release()
    return proc


def x_posts_per_link(x: FakeX) -> Counter[str]:
    """How many posts X holds for each summary link (the link is in the text)."""
    with x.lock:
        return Counter(m.group(0) for p in x.posts for m in [_LINK.search(p["text"])] if m)


def graph_posts_per_link(graph: FakeGraph) -> Counter[str]:
    with graph.lock:
        return Counter(str(p["link"]) for p in graph.posts)


def sent_count(store: Store) -> int:
    """Deliveries sent, on all channels."""
    return sum(c.get(DeliveryState.SENT.value, 0) for c in store.delivery_counts().values())


def exactly_once(counts: Counter[str], links: Iterable[str]) -> list[str]:
    """Problems with `counts` against the summary links that must each be posted once (empty: none)."""
    wanted = set(links)
    problems = [f"{n} posts for {link}" for link, n in counts.items() if n != 1]
    problems += [f"never posted: {link}" for link in sorted(wanted - set(counts))]
    problems += [f"posted but no such summary: {link}" for link in sorted(set(counts) - wanted)]
    return problems
