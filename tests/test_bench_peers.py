"""benchmarks/peers.py is a fair side-by-side (issue 17): the SMTP sink answers a message as late as the
other stand-ins answer a post, feed2toot and feed2fedi are driven against the Mastodon stand-in, the
bot's digest holds every item on the state the worker leaves, the fastest peer is named, and
dispatch.py and peers.py set up the X stand-in from one helper module (benchmarks/stand_ins.py)."""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import dispatch  # noqa: E402
import peers  # noqa: E402
import stand_ins  # noqa: E402
from digest import Sink  # noqa: E402
from poll import FeedServer, generated_feed  # noqa: E402

from bot.settings import load_settings, sample_feed_path  # noqa: E402

#: a virtual environment with the peers installed (benchmarks/peers.py --venv); tests that run them skip without
PEERS_VENV = Path(os.environ.get("BOT_PEERS_VENV", "/nonexistent"))


def test_the_sink_holds_the_end_of_data_reply_when_asked_and_only_it() -> None:
    sink = Sink(data_delay=600)
    conn = smtplib.SMTP("127.0.0.1", sink.port, local_hostname="example.org", timeout=30)
    try:
        assert conn.ehlo()[0] == 250
        assert conn.mail("bot@example.com")[0] == 250
        assert conn.rcpt("reader@example.com")[0] == 250
        assert conn.docmd("DATA")[0] == 354
        assert conn.sock is not None
        conn.sock.settimeout(3)
        conn.send(b"Subject: one\r\n\r\nan item\r\n.\r\n")
        # the message's acceptance is held back (600 s); every reply before it came at once
        with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
            conn.getreply()
    finally:
        conn.close()
        sink.proc.kill()  # its handler is still holding the reply
        sink.close()


def test_the_sink_answers_at_once_by_default_as_digest_py_uses_it() -> None:
    sink = Sink()
    try:
        with smtplib.SMTP("127.0.0.1", sink.port, local_hostname="example.org", timeout=30) as conn:
            conn.sock.settimeout(30)  # type: ignore[union-attr]
            assert conn.sendmail("bot@example.com", ["reader@example.com"], b"Subject: one\r\n\r\nan item\r\n") == {}
        assert sink.count() == 1
    finally:
        sink.close()


def test_dispatch_and_peers_take_the_x_keys_and_config_from_one_module() -> None:
    assert dispatch.KEYS is stand_ins.X_KEYS is peers.X_KEYS
    for config in (dispatch.CONFIG, peers.BOT_CONFIG):
        assert config.startswith(stand_ins.X_ONLY_CONFIG)
        parsed = tomllib.loads(config)  # each adds its own tables, none twice
        assert parsed["channels"]["twitter"] == {"daily_cap": 0, "monthly_cap": 0}
        assert all(not parsed["channels"][c]["enabled"] for c in ("facebook", "mastodon", "bluesky"))
    assert "--consumer-key" in stand_ins.fake_x_command(0.02)
    assert stand_ins.fake_x_command(0.02)[stand_ins.fake_x_command(0.02).index("--delay") + 1] == "0.02"


def test_the_report_names_the_fastest_peer_of_each_work(capsys: pytest.CaptureFixture[str]) -> None:
    Row = peers.Row
    peers.report(
        [
            Row("sample", "publish", "the bot", 2.0, 1.0, 90.0),
            Row("sample", "publish", "rss2email", 0.8, 0.2, 28.0),
            Row("sample", "publish", "feediverse", 0.5, 0.3, 43.0),
            Row("sample", "publish", "feed2exec", note="not run: publishes nowhere"),
            Row("sample", "digest", "the bot", 0.7, 0.6, 60.0),
            Row("sample", "digest", "feediverse", note="cannot: sends no e-mail"),
        ]
    )
    out = capsys.readouterr().out.splitlines()
    assert "sample     publish  fastest: feediverse (0.500 s wall)" in out
    assert "sample     digest   fastest: none (no peer did the work)" in out
    bot_publish = next(line for line in out if line.startswith("sample     publish  the bot"))
    assert bot_publish.split()[7] == "4.00"  # the ratio: wall / the fastest peer's wall, as before


def test_the_bot_digest_holds_every_item_on_the_state_a_dry_run_worker_leaves(tmp_path: Path) -> None:
    """More items than digest.max_items' default (30); prepared by `run --once` in dry run, sent for real."""
    items = 40
    server, sink = FeedServer(generated_feed(items)), Sink()
    try:
        env = peers.bot_env(tmp_path, server.url, "http://127.0.0.1:9", sink.port)
        assert load_settings(env, load_dotenv=False).digest.max_items >= items
        bot = [sys.executable, "-m", "bot"]
        setup = peers.bot_digest_setup(bot, items, env)
        assert [cmd[3:5] for cmd, _ in setup] == [["run", "--once"], ["subscribers", "add"]]
        for cmd, setup_env in setup:
            subprocess.run(cmd, env=setup_env, check=True, capture_output=True)
        assert (tmp_path / "var" / "outbox" / "twitter.jsonl").exists()  # posted to the outbox, not X
        assert (tmp_path / "var" / "public" / "feed.atom").exists()  # the feeds built, as the worker does
        assert "BOT_DRY_RUN" not in env
        sent = subprocess.run([*bot, "digest", "send", "--now"], env=env, capture_output=True, text=True, check=True)
        assert f"{items} summaries" in sent.stdout
        assert sink.count() == 1  # really sent, not to the outbox
    finally:
        server.close()
        sink.close()


@pytest.mark.slow
@pytest.mark.skipif(not (PEERS_VENV / "bin" / "feed2toot").exists(), reason="no peers venv (BOT_PEERS_VENV)")
@pytest.mark.parametrize("tool", ["feed2toot", "feed2fedi"])
def test_a_mastodon_peer_posts_every_item_then_nothing(tool: str, tmp_path: Path) -> None:
    body = sample_feed_path().read_bytes()
    items = body.count(b"<item>")
    masto = peers.Process([sys.executable, "-c", peers.MASTODON_V1.format(tests=str(REPO / "tests")), "--port", "0"])
    server = FeedServer(body)
    try:
        url = f"http://127.0.0.1:{masto.port}"
        cmd = peers.mastodon_tool_command(tool, PEERS_VENV / "bin", tmp_path, server.url, url, items)
        posted = peers.posts_of(url)
        for want in (items, items):  # the first run posts every item, the second none
            run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
            assert run.returncode == 0, run.stdout + run.stderr
            assert posted() == want
        texts = [p["_text"] for p in all_posts(url)]
        assert len(set(texts)) == items
    finally:
        server.close()
        masto.close()
    assert tool not in peers.NOT_RUN


def all_posts(url: str) -> list[dict[str, str]]:
    with urllib.request.urlopen(f"{url}/_fake/posts", timeout=30) as answer:
        return list(json.load(answer))
