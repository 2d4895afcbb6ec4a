"""The in-memory fake of the session store (``bot.channels.spec.SessionStore``, the one interface).

The store-backed one, encrypted, is ``bot.store.sessions.StoreSessionVault``.
"""

from __future__ import annotations


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
