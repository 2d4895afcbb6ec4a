"""The README's quick-start command, word for word, in a fresh copy of the project and a fresh virtualenv."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from env_util import clean_environ

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)\n```", (REPO / "README.md").read_text(), flags=re.S)
    return [b.strip() for b in blocks]


def test_readme_has_exactly_the_two_quick_start_commands() -> None:
    section = (REPO / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", section, flags=re.S)
    assert len(commands) == 2
    assert "python -m bot run --once" in commands[0]
    assert commands[1].strip() == "bash .ci/run"
    assert (REPO / ".ci" / "run").read_text().count("pytest") >= 1


@pytest.mark.slow
def test_quick_start_runs_on_a_fresh_copy(tmp_path: Path) -> None:
    copy = tmp_path / "shortscience-bot"
    shutil.copytree(
        REPO,
        copy,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "var",
            "__pycache__",
            "*.egg-info",
            ".mypy_cache",
            ".ruff_cache",
            ".pytest_cache",
            ".hypothesis",
            "artifacts",
            "build",
        ),
    )
    env = clean_environ("VIRTUAL_ENV")
    env["PATH"] = ":".join(p for p in env.get("PATH", "").split(":") if ".venv" not in p)
    command = section_command = readme_commands()[0]
    r = subprocess.run(["bash", "-c", command], cwd=copy, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{section_command!r} failed:\n{r.stdout}\n{r.stderr}"
    out = r.stdout
    assert "3 deliveries queued" not in out  # four channels: 12
    assert "12 deliveries queued" in out and "dispatch: 12 sent" in out
    for name in ("twitter", "facebook", "mastodon", "bluesky"):
        assert f"var/outbox/{name}.jsonl" in out
        posts = [json.loads(x) for x in (copy / "var" / "outbox" / f"{name}.jsonl").read_text().splitlines()]
        assert len(posts) == 3 and all(x["url"] in x["text"] for x in posts), name
    lines = [json.loads(x) for x in (copy / "var" / "outbox" / "twitter.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all(x["url"] in x["text"] for x in lines)
    # The sample's paper details came with the package: authors and hashtags without arXiv.
    assert any(x["text"].startswith("Group Normalization (Wu & He)") and "#ComputerVision" in x["text"] for x in lines)
    assert "paper details unavailable" not in r.stderr
    for name in ("feed.rss", "feed.atom", "feed.json"):
        assert (copy / "var" / "public" / name).stat().st_size > 1000
    # Installed without -e: the templates and the sample feed came along in the package.
    site = list((copy / ".venv" / "lib").glob("python3*/site-packages/bot/templates/tweet.txt.j2"))
    assert site, "templates are not installed with the package"
