"""The type of the ``make_app`` fixture (tests/conftest.py), for tests that annotate it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bot.app import App
    from bot.settings import Settings
    from bot.sources.memory import MemorySource


class MakeApp(Protocol):
    """Builds an app on the test database whose source serves `body`; the fixture closes it afterwards.

    `settings` defaults to the test's ``settings`` fixture; other keywords go to ``build_app``
    (``arxiv`` is False unless given).
    """

    def __call__(
        self, body: bytes = b"", *, settings: Settings = ..., **overrides: Any
    ) -> tuple[App, MemorySource]: ...
