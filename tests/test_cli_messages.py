"""What a newcomer reads from the command line: one `error:` line with the right exit code, plurals, job names."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from env_util import clean_environ

from bot.records import PollReport
from bot.wording import category_label, plural

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = clean_environ()
    e.update(BOT_DATA_DIR=str(tmp_path / "var"), BOT_DRY_RUN="1")
    return e


def bot(env: dict[str, str], *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "bot", *args], env=env, capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert r.returncode == code, f"bot {' '.join(args)} exited {r.returncode}, expected {code}:\n{r.stdout}\n{r.stderr}"
    return r


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert r.stdout == ""
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("nope",), "error: No such command 'nope' (see `python -m bot --help`)"),
        (("digest", "nope"), "error: No such command 'nope' (see `python -m bot digest --help`)"),
        (("retry", "abc"), "error: Invalid value for 'DELIVERY_ID': 'abc' is not a valid integer"),
        (("--bogus", "status"), "error: No such option '--bogus'"),
    ],
)
def test_usage_errors_are_one_error_line_exit_2(env: dict[str, str], args: tuple[str, ...], expected: str) -> None:
    assert one_error_line(bot(env, *args, code=2)).startswith(expected)


def test_no_command_still_shows_the_help(env: dict[str, str]) -> None:
    r = subprocess.run([sys.executable, "-m", "bot"], env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert "Commands:" in r.stdout + r.stderr


def test_missing_config_names_the_option_typed(env: dict[str, str]) -> None:
    line = one_error_line(bot(env, "--config", "nope.toml", "status", code=2))
    assert "--config" in line and "'nope.toml'" in line and "BOT_CONFIG" not in line
    line = one_error_line(bot({**env, "BOT_CONFIG": "nope.toml"}, "status", code=2))
    assert "BOT_CONFIG" in line


def test_bad_feed_url_scheme_is_a_bad_setting(env: dict[str, str]) -> None:
    line = one_error_line(bot({**env, "SHORTSCIENCE_FEED_URL": "ftp://example.org/feed.xml"}, "poll", code=2))
    assert "SHORTSCIENCE_FEED_URL" in line and "ftp://example.org/feed.xml" in line


def test_sqlite_url_into_a_missing_folder_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "no" / "such"
    line = one_error_line(bot({**env, "DATABASE_URL": f"sqlite:///{folder / 'bot.sqlite3'}"}, "status", code=2))
    assert "DATABASE_URL" in line and str(folder) in line
    assert not (tmp_path / "no").exists()


def test_counts_have_the_right_plural() -> None:
    assert plural(1, "recipient") == "1 recipient" and plural(2, "recipient") == "2 recipients"
    assert plural(1, "summary") == "1 summary" and plural(0, "summary") == "0 summaries"
    line = PollReport(source="feed", status=200, new=1, queued=1, problems=("x",)).describe()
    assert "1 delivery queued, 1 item skipped" in line


def test_category_names() -> None:
    assert category_label("q-bio.NC") == "Neurons and Cognition (q-bio.NC)"
    assert category_label("cs.LG") == "Machine Learning (cs.LG)"
    assert category_label("xx.YY") == "xx.YY"


def test_run_once_prints_the_poll_line_once(env: dict[str, str]) -> None:
    r = bot(env, "run", "--once", "--backfill", "1")
    poll_lines = [x for x in (r.stdout + r.stderr).splitlines() if "14 new (13 older ones marked as seen" in x]
    assert len(poll_lines) == 1, r.stdout + r.stderr


@pytest.mark.slow
def test_scheduler_jobs_have_names(env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    env = {**env, "SECRET_KEY": "jobs-test-key-" + "k" * 32}  # without a key the digest jobs are off
    with log.open("w") as out:
        p = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 60
            while "scheduler running" not in log.read_text():
                assert p.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
    text = log.read_text()
    for name in ("poll", "dispatch", "digest", "digest-sends"):
        assert f'Added job "{name}"' in text, text
    assert "<locals>" not in text
