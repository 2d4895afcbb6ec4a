"""The store's job records: when each scheduled job last ran, and how it went (for `status`).

A mixin of ``Store`` (every method one transaction, errors as ``StoreError``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bot.store import schema as t


class JobStore:
    """Job records (mixed into ``bot.store.Store``)."""

    if TYPE_CHECKING:

        def tx(self) -> AbstractContextManager[Connection]: ...

    # -------------------------------------------------------------------- jobs

    def record_job(
        self, name: str, *, now: datetime, ok: bool, error: str | None = None, info: Mapping[str, Any] | None = None
    ) -> None:
        values: dict[str, Any] = {"last_run_at": now, "last_error": None if ok else error}
        if ok:
            values["last_ok_at"] = now
        if info is not None:
            values["info"] = json.loads(json.dumps(info, default=str))
        with self.tx() as conn:
            if not conn.execute(t.jobs.update().where(t.jobs.c.name == name).values(**values)).rowcount:
                try:
                    with conn.begin_nested():
                        conn.execute(t.jobs.insert().values(name=name, **values))
                except IntegrityError:
                    conn.execute(t.jobs.update().where(t.jobs.c.name == name).values(**values))

    def feeds_built_since_last_change(self) -> bool:
        """Whether the last good feeds build came after every change to a summary and to paper details."""
        with self.tx() as conn:
            built = conn.execute(sa.select(t.jobs.c.last_ok_at).where(t.jobs.c.name == "feeds")).scalar()
            summaries = conn.execute(sa.select(sa.func.max(t.summaries.c.changed_at))).scalar()
            papers = conn.execute(sa.select(sa.func.max(t.papers.c.fetched_at))).scalar()
        return built is not None and all(at is None or at <= built for at in (summaries, papers))

    def jobs(self) -> dict[str, dict[str, Any]]:
        with self.tx() as conn:
            rows = conn.execute(sa.select(t.jobs)).all()
        return {r.name: dict(r._mapping) for r in rows}
