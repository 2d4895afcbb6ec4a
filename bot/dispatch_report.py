"""What a dispatch pass reports (`DispatchReport`), and the outcomes of posts made waiting to be written (`Outcomes`).

Plain data and a small queue on the dispatcher's helper thread; the dispatcher (bot/dispatcher.py) decides what
goes in them.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field


@dataclass
class DispatchReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    reconciled: int = 0
    held: int = 0
    paused: list[str] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)
    #: (channel, summary guid, first line of the text) of each post made in this pass
    published: list[tuple[str, str, str]] = field(default_factory=list)

    def merge(self, other: DispatchReport) -> None:
        """Add another lane's report of the same pass to this one."""
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.reconciled += other.reconciled
        self.held += other.held
        self.paused += [c for c in other.paused if c not in self.paused]
        self.waiting.update(other.waiting)
        self.published += other.published

    def summary(self) -> str:
        parts = [f"{self.sent} sent", f"{self.retried} to retry", f"{self.failed} failed"]
        if self.reconciled:
            parts.append(f"{self.reconciled} reconciled")
        if self.held:
            parts.append(f"{self.held} held for the operator")
        for channel, why in self.waiting.items():
            parts.append(f"{channel} waiting: {why}")
        for channel in self.paused:
            parts.append(f"{channel} paused")
        return ", ".join(parts)


class Outcomes:
    """Outcomes of posts made, written on the helper thread once the next post is marked in flight."""

    def __init__(self, helper: ThreadPoolExecutor) -> None:
        self.helper = helper
        self.waiting: list[Callable[[], None]] = []
        self.writing: list[Future[None]] = []

    def add(self, write: Callable[[], None]) -> None:
        self.waiting.append(write)

    def start(self) -> None:
        # Only writes still running, or failed (flush raises their error), are kept.
        self.writing = [f for f in self.writing if not f.done() or f.exception() is not None]
        self.writing.extend(self.helper.submit(write) for write in self.waiting)
        self.waiting.clear()

    def flush(self) -> None:
        """Write all now; a write's error (a stop while the database is away) comes out here."""
        self.start()
        writing, self.writing = self.writing, []
        for future in writing:
            future.result()
