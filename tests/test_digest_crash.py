"""Crash tests with real processes: SIGKILL `python -m bot digest send` while it mails an SMTP server in
this process, run it again, and check the guarantee message by message.

The guarantee, exactly: nobody is missing; nobody has two copies unless their
send is recorded as possibly duplicated (the message was being handed over
when the process died: at most one per connection); and every copy to one
recipient is the same message, with the same Message-ID.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from digest_util import FROM, SECRET, Newsroom, by_recipient, sends
from env_util import clean_environ
from feeds_util import Item
from smtp_server import SmtpTestServer

from bot.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
CONNECTIONS = 4

pytestmark = pytest.mark.slow


@pytest.fixture
def server() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as s:
        yield s


def environment(tmp_path: Path, db_url: str, server: SmtpTestServer) -> dict[str, str]:
    config = tmp_path / "bot.toml"
    config.write_text(f"[arxiv]\nenabled = false\n\n[digest]\nconnections = {CONNECTIONS}\nsmtp_timeout_seconds = 60\n")
    env = clean_environ()
    env.update(
        BOT_DATA_DIR=str(tmp_path / "var"),
        BOT_CONFIG=str(config),
        DATABASE_URL=db_url,
        SMTP_URL=server.url(),
        DIGEST_FROM=FROM,
        SECRET_KEY=SECRET,
        PUBLIC_BASE_URL="https://bot.example.org",
    )
    return env


def prepare(env: dict[str, str], subscribers: int) -> list[str]:
    """News first seen an hour ago (the commands run on the real clock) and confirmed subscribers."""
    room = Newsroom.open(load_settings(env), start=datetime.now(UTC) - timedelta(hours=1))
    room.publish([Item(key="k1", title="Paper one", votes=3), Item(key="k2", title="Paper two", votes=5)])
    addresses = [f"reader{i:04d}@example.net" for i in range(subscribers)]
    for i in range(0, len(addresses), 500):
        room.app.store.import_subscribers(
            [(a, ()) for a in addresses[i : i + 500]], now=room.clock(), confirmed=True, source="t"
        )
    room.close()
    return addresses


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:  # the child has its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "digest", "send", "--now"],
            env=env,
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def wait_for(condition: object, proc: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert proc.poll() is None, f"digest send ended before {what}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def run_again(env: dict[str, str]) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "bot", "digest", "send", "--now"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def _message_id(data: bytes) -> str:
    found = re.search(rb"^Message-ID: (<[^>\r\n]+>)\r?$", data.split(b"\r\n\r\n", 1)[0], re.M)
    assert found, "a message without Message-ID"
    return found.group(1).decode()


def check_guarantee(env: dict[str, str], server: SmtpTestServer, addresses: list[str]) -> tuple[int, int]:
    """Assert the guarantee; returns (recipients with two copies, sends recorded as possibly duplicated)."""
    room = Newsroom.open(load_settings(env))
    try:
        rows = {r["address"]: r for r in sends(room.app)}
        got: dict[str, list[bytes]] = {}
        for received in server.messages:
            for rcpt in received.rcpt_tos:
                got.setdefault(rcpt, []).append(received.data)
        assert sorted(got) == sorted(addresses), "somebody is missing, or somebody unknown was mailed"
        assert {r["state"] for r in rows.values()} == {"sent"}
        doubtful = {a for a, r in rows.items() if r["possibly_duplicated"]}
        twice = {a for a, copies in got.items() if len(copies) > 1}
        assert twice <= doubtful, f"mailed twice outside the recorded crash window: {sorted(twice - doubtful)}"
        assert all(len(copies) <= 2 for copies in got.values())
        for address, copies in got.items():
            assert {_message_id(c) for c in copies} == {rows[address]["message_id"]}
            # Byte for byte the same message (a provider deduplicating on Message-ID loses nothing).
            assert len(set(copies)) == 1, f"the copies to {address} differ"
        # The window: what was between "handing over" and "sent" when the process died.
        assert len(doubtful) <= CONNECTIONS
        issue = room.app.store.last_digest()
        assert issue is not None and issue.state == "sent"
        return len(twice), len(doubtful)
    finally:
        room.close()


def test_sigkill_in_the_middle_of_2000_recipients_then_again(
    tmp_path: Path, db_url: str, server: SmtpTestServer
) -> None:
    env = environment(tmp_path, db_url, server)
    addresses = prepare(env, 2000)
    log = tmp_path / "send.log"
    proc = start(env, log)
    try:
        wait_for(lambda: len(server.messages) >= 700, proc, log, "700 messages")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    before = len(server.messages)
    assert 700 <= before < 2000, "the kill did not land in the middle"
    out = run_again(env)
    assert "digest #1" in out and "complete: 2000 of 2000 delivered" in out, out
    twice, doubtful = check_guarantee(env, server, addresses)
    # Sending again after the end mails nobody.
    assert "digest #2" not in run_again(env)
    assert len(server.messages) == 2000 + twice
    print(f"killed after {before} messages; {doubtful} sends in the crash window, {twice} of them arrived twice")


def test_killed_while_the_server_holds_an_accepted_message(tmp_path: Path, db_url: str, server: SmtpTestServer) -> None:
    """The window made visible: the server kept message 50 and never answered; the sender dies waiting."""
    env = environment(tmp_path, db_url, server)
    addresses = prepare(env, 200)
    server.fail_message(50, "hold")
    log = tmp_path / "send.log"
    proc = start(env, log)
    watch = Newsroom.open(load_settings(env))
    try:
        # Everything else goes through the other connections and is recorded; then only the held one is open.
        wait_for(lambda: len(server.messages) == 200 and server.held == 1, proc, log, "all but the held answer")
        wait_for(lambda: sum(r["state"] == "sent" for r in sends(watch.app)) == 199, proc, log, "199 recorded as sent")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        watch.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    room = Newsroom.open(load_settings(env))
    handing = [r for r in sends(room.app) if r["state"] == "handing_over"]
    room.close()
    assert len(handing) == 1, "exactly the held message is on record as possibly out"
    held_to = handing[0]["address"]
    status = subprocess.run(
        [sys.executable, "-m", "bot", "status"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert "handing_over 1" in status.stdout, status.stdout
    out = run_again(env)
    assert "1 possibly duplicated after a crash" in out, out
    twice, doubtful = check_guarantee(env, server, addresses)
    assert (twice, doubtful) == (1, 1)
    assert [a for a, msgs in by_recipient(server).items() if len(msgs) == 2] == [held_to]
