"""The digest's command line (subscribers add/remove/list/import, digest send/preview, status) and its
scheduler job (weekly cron, one catch-up run after downtime), through click's runner on the test database."""

from __future__ import annotations

import email
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from digest_util import MONDAY, Newsroom, digest_settings
from feeds_util import Item

from bot.cli import main
from bot.digest import add_digest_job, send_digest

Run = Callable[..., Result]


@pytest.fixture
def cli(tmp_path: Path, db_url: str) -> Iterator[Run]:
    """`python -m bot …` in-process, on the test database, mail to the outbox (no SMTP_URL)."""
    config = tmp_path / "bot.toml"
    config.write_text("[arxiv]\nenabled = false\n")
    env = {
        "BOT_DATA_DIR": str(tmp_path / "var"),
        "BOT_CONFIG": str(config),
        "DATABASE_URL": db_url,
        "PUBLIC_BASE_URL": "https://bot.example.org",
        "SMTP_URL": "",
        "BOT_DRY_RUN": "",
        "SECRET_KEY": "cli-test-secret-key-0123456789",
        "DIGEST_FROM": "ShortScience weekly <digest@example.org>",
    }
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Result:
        result = runner.invoke(main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == code, f"exit {result.exit_code}: {result.output}"
        return result

    yield run


def outbox(tmp_path: Path) -> list[email.message.EmailMessage]:
    folder = tmp_path / "var" / "outbox" / "email"
    found = sorted(folder.glob("*.eml")) if folder.exists() else []
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in found]  # type: ignore[misc]


def test_subscribers_add_remove_list(cli: Run, tmp_path: Path) -> None:
    out = cli("subscribers", "add", "Reader@Example.ORG").output
    assert "Reader@example.org: added as pending (all categories); confirmation e-mail sent" in out
    mails = outbox(tmp_path)
    assert len(mails) == 1 and mails[0]["To"] == "Reader@example.org"
    assert "/confirm?token=" in mails[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "already pending" in cli("subscribers", "add", "reader@example.org").output
    assert len(outbox(tmp_path)) == 2  # sent again: the operator asked
    assert (
        "was pending, now confirmed (cs.LG)"
        in cli("subscribers", "add", "reader@example.org", "--confirmed", "--category", "cs.LG").output
    )
    assert "already confirmed (cs.LG); nothing changed" in cli("subscribers", "add", "READER@example.org").output
    assert (
        "other@example.org: added, confirmed (all categories)"
        in cli("subscribers", "add", "other@example.org", "--confirmed").output
    )
    assert len(outbox(tmp_path)) == 2

    listing = cli("subscribers", "list").output.splitlines()
    assert listing[0].split() == ["address", "state", "since", "categories"]
    assert re.match(r"Reader@example\.org\s+confirmed\s+\d{4}-\d\d-\d\d cs\.LG$", listing[1])
    assert re.match(r"other@example\.org\s+confirmed\s+\S+ all$", listing[2])
    assert listing[-1] == "total: pending 0 · confirmed 2 · unsubscribed 0 · bounced 0"

    assert (
        "Reader@example.org: unsubscribed (was confirmed); it will not be mailed again"
        in cli("subscribers", "remove", "reader@example.org").output
    )
    assert "already unsubscribed" in cli("subscribers", "remove", "reader@example.org").output
    assert "not on the list" in cli("subscribers", "remove", "nobody@example.org").output
    refused = cli("subscribers", "add", "reader@example.org", "--confirmed", code=1)
    assert (
        "is unsubscribed since" in refused.output
        and "subscribe again, themselves, at https://bot.example.org/subscribe" in refused.output
    )
    assert "unsubscribed" in cli("subscribers", "list", "--state", "unsubscribed").output
    assert "no subscribers in state pending" in cli("subscribers", "list", "--state", "pending").output
    bad = cli("subscribers", "add", "not-an-address", code=1)
    assert "error: not a valid e-mail address: 'not-an-address'" in bad.output


def test_import_reports_added_and_skipped_with_reasons(cli: Run, tmp_path: Path) -> None:
    cli("subscribers", "add", "known@example.org", "--confirmed")
    cli("subscribers", "add", "left@example.org", "--confirmed")
    cli("subscribers", "remove", "left@example.org")
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(
        "\ufeffName,Email,Categories\n"
        "Ada,ada@example.org,cs.LG;cs.CV\n"
        "Bob,bob@example.org,\n"
        "Ada again,ADA@example.org,\n"
        "Broken,not an address,\n"
        "Known,known@example.org,\n"
        "Left,left@example.org,\n"
        ",,\n"
        "Eve,eve@@example.org,\n",
        encoding="utf-8",
    )
    out = cli("subscribers", "import", str(csv_file), "--confirmed").output
    assert out.startswith(
        "import list.csv: 2 added as confirmed; 5 skipped: 2 invalid (line 5, 9), 1 duplicate in the file, "
        "1 already on the list, 1 unsubscribed"
    ), out
    assert "never added back" in out
    listing = cli("subscribers", "list").output
    assert re.search(r"ada@example\.org\s+confirmed\s+\S+ cs\.LG, cs\.CV", listing)
    assert re.search(r"left@example\.org\s+unsubscribed", listing)
    # Without --confirmed the new ones are pending and get the confirmation e-mail.
    plain = tmp_path / "plain.csv"
    plain.write_text("new1@example.org\nnew2@example.org\nada@example.org\n")
    out = cli("subscribers", "import", str(plain)).output
    assert "2 added as pending, confirmation e-mails: 2 sent; 1 skipped: 1 already on the list" in out
    assert sorted(m["To"] for m in outbox(tmp_path)) == ["new1@example.org", "new2@example.org"]
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("name,phone\nAda,123\n")
    assert "no 'email' column (columns: name, phone)" in cli("subscribers", "import", str(nocol), code=2).output


def test_digest_send_preview_and_status(cli: Run, tmp_path: Path, db_url: str) -> None:
    room = Newsroom.open(digest_settings(tmp_path, db_url, env={"BOT_DATA_DIR": str(tmp_path / "var")}))
    # The command line runs on the real clock.
    room.publish(
        [Item(key="k1", title="Attention Is All You Need", votes=9)], at=datetime.now(UTC) - timedelta(hours=1)
    )
    room.close()
    cli("subscribers", "add", "a@example.org", "--confirmed")
    cli("subscribers", "add", "pending@example.org")
    preview = cli("digest", "preview", "--out", str(tmp_path / "preview")).output
    assert "digest #1 so far: 1 summary first seen since" in preview
    html_path = re.search(r"^html: (\S+)$", preview, re.M)
    text_path = re.search(r"^text: (\S+)$", preview, re.M)
    assert html_path and text_path
    assert "Attention Is All You Need" in Path(text_path.group(1)).read_text()
    assert "<html" in Path(html_path.group(1)).read_text()
    sent = cli("digest", "send", "--now").output
    assert re.search(r"digest #1 \(.*, 1 summary, 1 recipient\): 1 sent, 0 failed, 0 retrying, 0 skipped", sent), sent
    assert "nothing new to send" in cli("digest", "send").output or "no new summaries" in cli("digest", "send").output
    status = cli("status").output
    section = status[status.index("digest:") :]
    assert "subscribers: pending 1 · confirmed 1 · unsubscribed 0 · bounced 0" in section
    assert "last issue: digest #1" in section and "complete: 1 of 1 delivered" in section
    assert re.search(r"next issue: \d{4}-\d\d-\d\d 08:00 UTC \(every mon at 08:00 UTC\)", section)


# ---------------------------------------------------------------- the scheduler job


class _Scheduler:
    """A real APScheduler BackgroundScheduler, started paused: jobs get their times, none runs by itself."""

    def __init__(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.scheduler = BackgroundScheduler(timezone="UTC")

    def __enter__(self) -> Any:
        return self.scheduler

    def __exit__(self, *exc: object) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)


def _guarded(name: str, fn: Callable[[], Any]) -> Callable[[], Any]:
    return fn


def test_scheduler_runs_a_missed_digest_once_at_start_up(tmp_path: Path, db_url: str) -> None:
    room = Newsroom.open(digest_settings(tmp_path, db_url))
    room.subscribe("a@example.org")
    room.publish([Item(key="k1")], at=MONDAY - timedelta(days=1))
    room.clock.now = MONDAY
    send_digest(room.app)
    # Up again a week later, 3 weeks after the last issue: one catch-up now, then the weekly time.
    room.publish([Item(key="k1"), Item(key="k2")], at=MONDAY + timedelta(days=10))
    room.clock.now = MONDAY + timedelta(days=21, hours=2)
    with _Scheduler() as scheduler:
        add_digest_job(room.app, scheduler, _guarded, {"coalesce": True, "max_instances": 1})
        scheduler.start(paused=True)
        job = scheduler.get_job("digest")
        assert job.next_run_time == room.clock.now
        assert job.coalesce and job.max_instances == 1 and job.misfire_grace_time >= 24 * 3600
        assert str(job.trigger) == "cron[day_of_week='mon', hour='8', minute='0']"
        assert scheduler.get_job("digest-sends") is not None
        result = job.func()
        assert "digest #2" in result and "1 sent" in result
    # Started again right after: nothing was missed, so the next run is the weekly time.
    with _Scheduler() as scheduler:
        add_digest_job(room.app, scheduler, _guarded, {"coalesce": True, "max_instances": 1})
        scheduler.start(paused=True)
        upcoming = scheduler.get_job("digest").next_run_time
        # (APScheduler reckons the next weekly time on the real clock.)
        assert (upcoming.weekday(), upcoming.hour, upcoming.minute) == (0, 8, 0) and upcoming > datetime.now(UTC)
    last = room.app.store.last_digest()
    assert last is not None and last.issue == 2
    assert room.app.store.jobs()["digest"]["last_ok_at"] == room.clock.now
    room.close()
