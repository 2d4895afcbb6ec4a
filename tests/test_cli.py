"""The command line as operators use it: `--help`, `preview`, `db upgrade`, `retry`/`skip`, JSON logs, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from env_util import clean_environ
from feeds_util import Item, site_feed

from bot.settings import load_settings, sample_feed_path
from bot.store import Store

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = clean_environ()
    cfg = tmp_path / "bot.toml"
    cfg.write_text("[arxiv]\nenabled = false\n")
    e.update(BOT_DATA_DIR=str(tmp_path / "var"), BOT_CONFIG=str(cfg), BOT_DRY_RUN="1")
    return e


def bot(env: dict[str, str], *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "bot", *args], env=env, capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert r.returncode == code, f"bot {' '.join(args)} exited {r.returncode}, expected {code}:\n{r.stdout}\n{r.stderr}"
    return r


def store_of(env: dict[str, str]) -> Store:
    return Store.open(load_settings(env).database_url)


def test_help_lists_every_command_with_one_line(env: dict[str, str]) -> None:
    out = bot(env, "--help").stdout
    commands = out.split("Commands:", 1)[1].splitlines()
    listed = {line.split()[0] for line in commands if line.strip()}
    assert listed == {
        "check",
        "db",
        "digest",
        "dispatch",
        "feeds",
        "operator",
        "poll",
        "preview",
        "release",
        "retry",
        "run",
        "skip",
        "status",
        "subscribers",
        "web",
        "worker",
    }
    for line in commands:
        if line.strip():
            assert len(line.split(None, 1)) == 2, f"no help line: {line!r}"


def test_preview_of_a_feed_stores_and_publishes_nothing(env: dict[str, str], tmp_path: Path) -> None:
    out = bot(env, "preview", "--feed", str(sample_feed_path()), "--limit", "2").stdout
    # Each channel's rendering with its weighted length (X) or size and link field (Facebook).
    assert out.count("--- twitter (") == 2 and out.count("/280 weighted") == 2
    assert out.count("--- facebook (") == 2 and "link field: https://www.shortscience.org/paper?bibtexKey=" in out
    assert "=== Group Normalization — by decodyng" in out  # the newest summary of the sample comes first
    store = store_of(env)
    try:
        assert store.count_summaries() == 0
        assert store.delivery_counts() == {}
    finally:
        store.close()
    assert not (tmp_path / "var" / "outbox").exists()


def test_preview_latest_and_by_guid_read_the_store(env: dict[str, str], tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    # A long title leaves less room than the teaser wants: fitting into 280 weighted characters shortens it.
    title = "Newest paper " + "with a very long title " * 5
    feed.write_bytes(
        site_feed(
            [
                Item("a/1", title="Older paper", text="Short."),
                Item("a/2", title=title, text="Word " * 400, edited=Item("x").edited.replace(day=2)),
            ]
        )
    )
    env["SHORTSCIENCE_FEED_URL"] = str(feed)
    bot(env, "poll")
    latest = bot(env, "preview").stdout
    assert "=== Newest paper" in latest and "Older paper" not in latest
    assert "warning: teaser shortened" in latest  # what had to give is said
    one = bot(env, "preview", "--summary", Item("a/1").guid).stdout
    assert "=== Older paper" in one and "Newest paper" not in one
    missing = bot(env, "preview", "--summary", "https://nowhere.example/x", code=1)
    assert (
        missing.stderr.strip().startswith("error: no stored summary with guid")
        and len(missing.stderr.strip().splitlines()) == 1
    )
    store = store_of(env)
    try:
        assert (
            store.delivery_counts() == {}
        )  # a first poll with backfill 0 queues nothing; preview queues nothing either
    finally:
        store.close()


def test_db_upgrade_creates_then_reports_up_to_date(env: dict[str, str]) -> None:
    assert bot(env, "db", "upgrade").stdout.strip() == "database upgraded"
    assert bot(env, "db", "upgrade").stdout.strip() == "database already up to date"


def test_retry_and_skip_resolve_only_what_they_may(env: dict[str, str], tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_bytes(site_feed([Item("b/1")]))
    env["SHORTSCIENCE_FEED_URL"] = str(feed)
    bot(env, "poll", "--backfill", "1")
    store = store_of(env)
    try:
        twitter = store.deliveries(channel="twitter")[0]
    finally:
        store.close()
    # A pending delivery is neither retried nor refused silently: one line, exit 1.
    r = bot(env, "retry", str(twitter.id), code=1)
    assert (
        r.stderr.strip()
        == f"error: delivery {twitter.id} is pending; only uncertain, failed, dead or skipped ones can be retried"
    )
    assert "skipped" in bot(env, "skip", str(twitter.id)).stdout
    assert "pending again" in bot(env, "retry", str(twitter.id)).stdout
    assert bot(env, "retry", "999999", code=1).stderr.strip() == "error: no delivery with id 999999"
    bot(env, "dispatch")
    lines = (tmp_path / "var" / "outbox" / "twitter.jsonl").read_text().splitlines()
    assert [json.loads(x)["summary_id"] for x in lines] == [Item("b/1").guid]


def test_json_log_lines(env: dict[str, str], tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_bytes(site_feed([Item("c/1")]))
    env["SHORTSCIENCE_FEED_URL"] = str(feed)
    r = bot(env, "--log-format", "json", "run", "--once", "--backfill", "1")
    records = [json.loads(line) for line in r.stderr.splitlines() if line.strip()]
    assert records, r.stderr
    assert all({"time", "level", "logger", "message"} <= rec.keys() for rec in records)
    assert any(rec["logger"] == "bot.dispatcher" and "sent on twitter" in rec["message"] for rec in records)
    # The poll's line is the command's output (stdout), not a log record as well.
    assert "1 new" in r.stdout and not any("1 new" in rec["message"] for rec in records)


def test_bad_argument_exits_2(env: dict[str, str]) -> None:
    r = bot(env, "poll", "--backfill", "-3", code=2)
    assert "--backfill" in r.stderr


def test_check_tries_the_smtp_login(env: dict[str, str]) -> None:
    from smtp_server import SmtpTestServer

    del env["BOT_DRY_RUN"]  # mail is live only outside dry-run; the channels have no credentials and stay dry-run
    env.update(DIGEST_FROM="Digest <digest@example.org>", SECRET_KEY="k" * 32)
    with SmtpTestServer(user="bot", password="right-password") as server:
        env["SMTP_URL"] = server.url(user="bot", password="right-password")
        ok = bot(env, "check").stdout
        assert (
            f"e-mail: ok: SMTP 127.0.0.1:{server.port} (plain, logged in as bot), sending as digest@example.org" in ok
        )
        assert "twitter: dry-run" in ok
        env["SMTP_URL"] = server.url(user="bot", password="wrong-password")
        bad = bot(env, "check", code=1)
        assert f"e-mail: FAILED: SMTP 127.0.0.1:{server.port}: login refused: 535" in bad.stdout
        assert "wrong-password" not in bad.stdout + bad.stderr


def test_held_summaries_are_shown_by_status_and_queued_by_release(env: dict[str, str], tmp_path: Path) -> None:
    from feeds_util import items

    feed = tmp_path / "feed.xml"
    summaries = items(8)
    feed.write_bytes(site_feed(summaries[6:]))
    env["SHORTSCIENCE_FEED_URL"] = str(feed)
    (tmp_path / "bot.toml").write_text(
        "[arxiv]\nenabled = false\n[source]\nmax_new_per_poll = 4\n"
        "[channels.mastodon]\nenabled = false\n[channels.bluesky]\nenabled = false\n"
    )
    bot(env, "poll")
    feed.write_bytes(site_feed(summaries))
    polled = bot(env, "poll")
    assert (
        "6 new" in polled.stdout and "8 deliveries queued" in polled.stdout and "2 older new ones held" in polled.stdout
    )
    status = bot(env, "status").stdout
    assert "HELD by the flood guard: 2 new summaries" in status and f"python -m bot release --source {feed}" in status
    released = bot(env, "release", "--source", str(feed))
    assert (
        released.stdout.strip() == "2 held summaries released: 4 deliveries queued on twitter, facebook; 0 still held"
    )
    assert "HELD" not in bot(env, "status").stdout
    store = store_of(env)
    try:
        assert {d.guid for d in store.deliveries(limit=100)} == {s.guid for s in summaries[:6]}
    finally:
        store.close()
