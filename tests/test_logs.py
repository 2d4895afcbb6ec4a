"""The text log format keeps one record on one line, whatever the logged values hold (issue 13, point 10)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from bot.logs import setup_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


FORGED = "x\n2026-01-01 00:00:00 ERROR   bot.pipeline: forged\r\x1b[2J\x85\u2028\u2029\x00\tend"


@pytest.mark.usefixtures("restore_root")
def test_a_guid_with_a_newline_cannot_forge_a_text_log_line(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", "text", ["s3cret"])
    logging.getLogger("bot.pipeline").warning("skipped item %s: %s", FORGED, "s3cret\nmore")
    logging.getLogger("bot.pipeline").warning(FORGED)  # the message itself, not only its args
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].endswith(
        "skipped item x\\n2026-01-01 00:00:00 ERROR   bot.pipeline: "
        "forged\\r\\x1b[2J\\x85\\u2028\\u2029\\x00\\tend: ***\\nmore"
    )
    assert "s3cret" not in err
    assert lines[1].endswith(
        ": x\\n2026-01-01 00:00:00 ERROR   bot.pipeline: forged\\r\\x1b[2J\\x85\\u2028\\u2029\\x00\\tend"
    )


@pytest.mark.usefixtures("restore_root")
def test_the_json_format_keeps_the_value_as_it_was(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", "json", [])
    logging.getLogger("bot.pipeline").warning("skipped item %s", FORGED)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["message"] == f"skipped item {FORGED}"
