"""Crash tests with real processes: SIGKILL a dispatcher while a delivery is in flight, restart, count outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from env_util import clean_environ
from feeds_util import items, site_feed

from bot.claims import holder_is_dead
from bot.records import DeliveryState
from bot.settings import load_settings
from bot.store import Store

REPO = Path(__file__).resolve().parent.parent


def bot(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "bot", *args], env=env, capture_output=True, text=True, timeout=120, cwd=REPO
    )
    if check and r.returncode != 0:
        raise AssertionError(f"bot {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> dict[str, str]:
    feed = tmp_path / "feed.xml"
    feed.write_bytes(site_feed(items(4)))
    e = clean_environ()
    e.update(BOT_DATA_DIR=str(tmp_path / "var"), DATABASE_URL=db_url, SHORTSCIENCE_FEED_URL=str(feed), BOT_DRY_RUN="1")
    return e


@pytest.mark.slow
def test_sigkill_while_in_flight_is_reconciled_and_published_at_most_once(env: dict[str, str], tmp_path: Path) -> None:
    bot(env, "poll", "--backfill", "1")
    settings = load_settings(env)
    outbox = settings.outbox_dir
    outbox.mkdir(parents=True, exist_ok=True)
    fifo = outbox / "twitter.jsonl"
    # Opening a FIFO for writing blocks until a reader comes: the dispatcher stops
    # exactly inside the publish call, after its in_flight claim was committed.
    os.mkfifo(fifo)
    log = (tmp_path / "dispatch.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "dispatch"], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
    )
    store = Store.open(settings.database_url)
    try:
        deadline = time.monotonic() + 60
        while True:
            ds = store.deliveries(channel="twitter")
            if ds and ds[0].state is DeliveryState.IN_FLIGHT and store.stored_post(ds[0].id) is not None:
                break
            assert proc.poll() is None, (tmp_path / "dispatch.log").read_text()
            assert time.monotonic() < deadline, "dispatcher never reached the network call"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        fifo.unlink()

        # After the restart the claim of the dead process is recognised as abandoned...
        gone = store.expire_in_flight(now=settings_now(), dead_workers=holder_is_dead)
        assert gone == [ds[0].id]
        assert store.delivery(ds[0].id).state is DeliveryState.UNCERTAIN
        assert "uncertain" in bot(env, "status").stdout

        # ...and reconciled: the outbox proves it was never written, so it is written once.
        out = bot(env, "dispatch").stdout
        assert "1 reconciled" in out
        lines = [json.loads(x) for x in (outbox / "twitter.jsonl").read_text().splitlines()]
        assert [x["summary_id"] for x in lines] == [ds[0].guid]
        assert store.delivery(ds[0].id).state is DeliveryState.SENT
        # Running again changes nothing.
        bot(env, "dispatch")
        assert len((outbox / "twitter.jsonl").read_text().splitlines()) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        store.close()


def settings_now():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime.now(UTC)
