"""Fifty random SIGKILLs of `python -m bot worker` processes while they send a digest issue, each followed by a restart.

The digest half of the reliability test (its dispatch half is in test_reliability_workers.py).
SMTP gives no proof of delivery, so the guarantee checked is the digest's own (bot.digest):
nobody is missing; nobody gets two copies unless their send was recorded as possibly
duplicated (it was being handed over when its process died); every copy to one recipient
is byte for byte the same message with the same Message-ID (what mailbox providers
deduplicate on), so each reader sees one issue.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from digest_util import FROM, SECRET, Newsroom, sends
from env_util import clean_environ
from feeds_util import Item
from smtp_server import SmtpTestServer
from test_digest_crash import _message_id

from bot.decide import DigestPeriod
from bot.digest import build_digest
from bot.settings import load_settings
from bot.store import schema

REPO = Path(__file__).resolve().parent.parent
SUBSCRIBERS = 1500
KILLS = 50
WORKERS = 4
CONNECTIONS = 1

pytestmark = pytest.mark.slow


class Worker:
    """One `python -m bot worker`, restarted after each kill; knows which SMTP connections are its own."""

    def __init__(self, env: dict[str, str], log: Path, watch: Newsroom) -> None:
        self.env, self.log, self.watch = env, log, watch
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as handle:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "worker"], env=self.env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT
            )

    def sending(self) -> bool:
        """This process holds a send it is working on (claimed, or being handed over to the server)."""
        assert self.proc is not None
        ds = schema.digest_sends
        with self.watch.app.store.tx() as conn:
            held = conn.execute(
                sa.select(sa.func.count())
                .select_from(ds)
                .where(ds.c.state.in_(["claimed", "handing_over"]), ds.c.claimed_by.like(f"%:{self.proc.pid}:digest:%"))
            ).scalar()
        return bool(held)

    def kill(self) -> None:
        assert self.proc is not None
        assert self.proc.poll() is None, f"the worker exited by itself:\n{self.log.read_text()[-3000:]}"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def environment(tmp_path: Path, db_url: str, server: SmtpTestServer) -> dict[str, str]:
    config = tmp_path / "bot.toml"
    # Short leases: a killed worker's claims come back quickly; a short pass interval keeps workers busy.
    config.write_text(
        f"[arxiv]\nenabled = false\n\n[dispatch]\ninterval_seconds = 1\nlease_seconds = 10\n\n"
        f"[digest]\nconnections = {CONNECTIONS}\nsmtp_timeout_seconds = 60\nretry_base_seconds = 1\n"
    )
    env = clean_environ()
    env.update(
        BOT_DATA_DIR=str(tmp_path / "var"),
        BOT_CONFIG=str(config),
        DATABASE_URL=db_url,
        SMTP_URL=server.url(),
        DIGEST_FROM=FROM,
        SECRET_KEY=SECRET,
        PUBLIC_BASE_URL="https://bot.example.org",
        BOT_DRY_RUN="",
    )
    return env


def prepare(env: dict[str, str]) -> list[str]:
    """Two new summaries, SUBSCRIBERS confirmed readers and the issue built, nothing sent yet."""
    now = datetime.now(UTC)
    room = Newsroom.open(load_settings(env), start=now - timedelta(hours=2))
    try:
        room.publish([Item(key="k1", title="Paper one", votes=3), Item(key="k2", title="Paper two", votes=5)])
        addresses = [f"reader{i:04d}@example.net" for i in range(SUBSCRIBERS)]
        for i in range(0, len(addresses), 500):
            room.app.store.import_subscribers(
                [(a, ()) for a in addresses[i : i + 500]], now=room.clock(), confirmed=True, source="t"
            )
        built = build_digest(room.app, DigestPeriod(now - timedelta(days=1), now - timedelta(minutes=1)), now=now)
        assert not isinstance(built, str), built
    finally:
        room.close()
    return addresses


def wait(condition: object, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_fifty_sigkills_of_workers_sending_a_digest(tmp_path: Path, db_url: str) -> None:
    rng = random.Random(20261122)
    with SmtpTestServer() as server:
        env = environment(tmp_path, db_url, server)
        addresses = prepare(env)
        # Each answer waits a little, so the issue is not done before the fifty kills and a kill
        # lands in any part of a message's round trip, the accepted-but-unanswered part included.
        server.answer_delay = 0.04
        watch = Newsroom.open(load_settings(env))
        workers = [Worker(env, tmp_path / f"worker{i}.log", watch) for i in range(WORKERS)]
        for w in workers:
            w.start()
        try:
            for n in range(KILLS):
                # Taking turns: the other worker has had time to start again and is sending.
                victim = workers[n % WORKERS]
                # Only a worker that is sending: the kill lands during a digest send, not at start-up.
                wait(victim.sending, "the worker to send", timeout=60)
                time.sleep(rng.uniform(0, 0.06))
                victim.kill()
                victim.start()
                assert len(server.messages) < SUBSCRIBERS + WORKERS * CONNECTIONS * KILLS
            sent_during_kills = len({r for m in server.messages for r in m.rcpt_tos})
            assert sent_during_kills < SUBSCRIBERS, "the issue was done before the fifty kills: nothing was tested"
            server.answer_delay = 0.0
            wait(lambda: all(r["state"] == "sent" for r in sends(watch.app)), "every send to be recorded", timeout=180)
            rows = {r["address"]: r for r in sends(watch.app)}
        finally:
            for w in workers:
                w.stop()
            watch.close()

        got: dict[str, list[bytes]] = {}
        for received in server.messages:
            for rcpt in received.rcpt_tos:
                got.setdefault(rcpt, []).append(received.data)
        # Nobody lost, nobody unknown mailed.
        assert sorted(got) == sorted(addresses)
        doubtful = {a for a, r in rows.items() if r["possibly_duplicated"]}
        twice = {a for a, copies in got.items() if len(copies) > 1}
        # Nobody mailed twice outside the recorded crash window; each such send is shown to the operator.
        assert twice <= doubtful, f"mailed twice outside the recorded crash window: {sorted(twice - doubtful)}"
        # The window holds at most one message per connection of a killed process.
        assert len(doubtful) <= KILLS * CONNECTIONS
        for address, copies in got.items():
            assert {_message_id(c) for c in copies} == {rows[address]["message_id"]}
            assert len(set(copies)) == 1, f"the copies to {address} differ"
        print(
            f"{KILLS} kills during {sent_during_kills} of {SUBSCRIBERS} sends; "
            f"{len(doubtful)} sends recorded in the crash window, {len(twice)} of them arrived twice "
            f"(same bytes, same Message-ID)"
        )
