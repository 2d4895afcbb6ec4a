"""A dispatch pass's report and its pending outcomes live in bot/dispatch_report.py (the dispatcher stays under
500 lines); `DispatchReport` is still importable from bot.dispatcher; lanes' reports merge."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bot.dispatcher
from bot.dispatch_report import DispatchReport, Outcomes

BOT = Path(__file__).resolve().parent.parent / "bot"


def test_the_report_has_a_module_of_its_own_and_the_dispatcher_re_exports_it() -> None:
    assert bot.dispatcher.DispatchReport is DispatchReport
    assert DispatchReport.__module__ == "bot.dispatch_report"
    assert len((BOT / "dispatcher.py").read_text(encoding="utf-8").splitlines()) <= 500


def test_lanes_reports_merge_into_one() -> None:
    mine = DispatchReport(sent=2, paused=["x"], waiting={"mastodon": "cap"}, published=[("x", "g1", "a")])
    other = DispatchReport(sent=1, retried=1, failed=1, reconciled=1, held=1, paused=["x", "facebook"])
    other.published.append(("facebook", "g2", "b"))
    mine.merge(other)
    assert (mine.sent, mine.retried, mine.failed, mine.reconciled, mine.held) == (3, 1, 1, 1, 1)
    assert mine.paused == ["x", "facebook"]
    assert mine.published == [("x", "g1", "a"), ("facebook", "g2", "b")]
    assert "3 sent" in mine.summary() and "facebook paused" in mine.summary()


def test_outcomes_are_written_on_start_and_all_by_flush() -> None:
    written: list[int] = []
    with ThreadPoolExecutor(max_workers=1) as helper:
        outcomes = Outcomes(helper)
        outcomes.add(lambda: written.append(1))
        assert written == []  # nothing is written before the next post is marked in flight
        outcomes.add(lambda: written.append(2))
        outcomes.flush()
    assert written == [1, 2]
