"""Where a channel keeps its login session between posts: one small interface and its in-memory fake.

The session string holds live tokens: a vault stores it and gives it back,
and nothing else ever sees it (never logged, never in a message). The
store-backed vault, encrypted, is ``bot.store.sessions.StoreSessionVault``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class SessionVault(Protocol):
    """One channel's saved session."""

    def load(self) -> str | None:
        """The saved session string, or None (none saved, or unreadable: the channel logs in again)."""
        ...

    def save(self, session: str) -> None:
        """Replace the saved session (after a login or a refresh)."""
        ...


class MemoryVault:
    """A vault in memory: for tests, and for a process that may log in once per start."""

    def __init__(self, session: str | None = None) -> None:
        self.session = session
        #: how many times save() was called
        self.saves = 0

    def load(self) -> str | None:
        return self.session

    def save(self, session: str) -> None:
        self.session = session
        self.saves += 1
