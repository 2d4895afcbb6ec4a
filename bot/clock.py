"""The one wall clock: code takes `now` or a clock, and the default clock is this one."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time, aware UTC (the default of every `now`/`clock` argument)."""
    return datetime.now(UTC)
