"""The digest send path's driver SQL: the hot statements of sending an issue, and one thread's recorder.

Plain SQL per dialect (SQLAlchemy's per-statement work cost more CPU than the
messages' own making), with NAMED parameters (``:name`` on SQLite,
``%(name)s`` on psycopg) and the states taken from ``SendState``,
``SubscriberState`` and ``DigestState``. Used by ``bot.store.digests``
(building an issue, claiming sends) and, through ``SendRecorder``, by the
digest's sending threads.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Dialect, Engine

from bot.decide import bounce_due
from bot.errors import StoreError
from bot.records import SendState, SubscriberState
from bot.store import schema as t

#: rows read or written per statement when streaming subscribers
CHUNK = 1000

_PENDING = SendState.PENDING.value
_CLAIMED = SendState.CLAIMED.value
_HANDING_OVER = SendState.HANDING_OVER.value
_SENT = SendState.SENT.value


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What one try of one send came to, as the digest job decided it."""

    subscriber_id: int
    #: the send's new state: sent, pending (retry at due_at) or failed
    state: SendState
    due_at: datetime | None = None
    #: why it failed or waits (None when sent)
    error: str | None = None
    #: the answer to the final dot was lost: the recipient may already have it
    possibly_duplicated: bool = False
    #: the try does not count (the run stopped before it, or the server refused us)
    released: bool = False
    #: a 5xx for this address: counts toward bouncing it
    refused: bool = False


@dataclass(frozen=True, slots=True)
class _SendSql:
    """The hot statements of sending an issue, as driver SQL for one dialect, with what their
    values need: built with SQLAlchemy per call, they cost more CPU than the messages' own
    making. ({limit} and {ids} are filled per batch.) Parameters are named: each statement's
    comment lists them."""

    #: the driver's mark for the parameter of this name
    mark: Callable[[str], str]
    #: how a datetime is passed to the driver, as the store's own columns pass it
    time: Callable[[datetime | None], Any]
    #: WHERE: the send is held by this worker (digest_id, worker), claimed or handing over
    held: str
    #: making the issue: the confirmed subscribers after an id (after), a chunk at a time; one send row each
    #: (digest_id, subscriber_id, variant, due_at, possibly_duplicated, message_id)
    confirmed: str
    insert: str
    #: claim_sends: the due rows (digest_id, now, after), then skip the subscribers gone (digest_id, {ids}),
    #: claim the rest (worker, lease_until, digest_id, {ids})
    due: str
    skip: str
    claim: str
    #: SendRecorder: the next send handing over (lease_until, digest_id, worker, going); that and the last
    #: one sent (going, lease_until, now, digest_id, worker, done); is it handing over (digest_id, worker,
    #: going); sent (now, digest_id, worker, done)
    handover: str
    both: str
    handing_over: str
    sent: str

    def ids(self, values: list[int]) -> tuple[str, dict[str, int]]:
        """The marks for an IN list of ids, and their parameters (id0, id1, …)."""
        names = [f"id{i}" for i in range(len(values))]
        return ", ".join(self.mark(n) for n in names), dict(zip(names, values, strict=True))


def _marks(dialect: Dialect) -> Callable[[str], str]:
    """sqlite3 takes `:name` and psycopg `%(name)s`, each with a mapping of values (whatever
    paramstyle SQLAlchemy itself uses with the driver)."""
    if dialect.name == "sqlite":
        return lambda name: f":{name}"
    return lambda name: f"%({name})s"


@functools.lru_cache(maxsize=4)
# long: one record literal, a statement per field; reads best whole
def _send_sql(dialect: Dialect) -> _SendSql:
    m = _marks(dialect)
    # SQLite holds the whole database from BEGIN IMMEDIATE; PostgreSQL locks the rows taken.
    lock = "" if dialect.name == "sqlite" else " FOR UPDATE OF ds SKIP LOCKED"
    held = f"digest_id = {m('digest_id')} AND claimed_by = {m('worker')} AND state IN ('{_CLAIMED}', '{_HANDING_OVER}')"
    processor = t.digest_sends.c.sent_at.type.dialect_impl(dialect).bind_processor(dialect)
    return _SendSql(
        mark=m,
        time=processor or (lambda value: value),
        held=held,
        confirmed=(
            f"SELECT id, categories FROM subscribers WHERE state = '{SubscriberState.CONFIRMED.value}' "
            f"AND id > {m('after')} ORDER BY id LIMIT {CHUNK}"
        ),
        insert=(
            "INSERT INTO digest_sends (digest_id, subscriber_id, variant, state, attempts, due_at, "
            f"possibly_duplicated, message_id) VALUES ({m('digest_id')}, {m('subscriber_id')}, {m('variant')}, "
            f"'{_PENDING}', 0, {m('due_at')}, {m('possibly_duplicated')}, {m('message_id')})"
        ),
        due=(
            "SELECT ds.subscriber_id, ds.variant, ds.attempts, ds.possibly_duplicated, s.address, s.state, "
            "s.permanent_failures FROM digest_sends AS ds JOIN subscribers AS s ON s.id = ds.subscriber_id "
            f"WHERE ds.digest_id = {m('digest_id')} AND ds.state = '{_PENDING}' AND ds.due_at <= {m('now')} "
            f"AND ds.subscriber_id > {m('after')} "
            "ORDER BY ds.subscriber_id LIMIT {limit}" + lock
        ),
        skip=(
            f"UPDATE digest_sends SET state = '{SendState.SKIPPED.value}', "
            "last_error = 'not sent: the subscriber left the list before it went out' "
            f"WHERE digest_id = {m('digest_id')} AND subscriber_id IN ({{ids}})"
        ),
        claim=(
            f"UPDATE digest_sends SET state = '{_CLAIMED}', claimed_by = {m('worker')}, "
            f"lease_until = {m('lease_until')}, attempts = attempts + 1 "
            f"WHERE digest_id = {m('digest_id')} AND subscriber_id IN ({{ids}})"
        ),
        handover=(
            f"UPDATE digest_sends SET state = '{_HANDING_OVER}', lease_until = {m('lease_until')} "
            f"WHERE digest_id = {m('digest_id')} AND claimed_by = {m('worker')} AND state = '{_CLAIMED}' "
            f"AND subscriber_id = {m('going')}"
        ),
        # One statement for "sent" and "handing over": each row takes its branch of the CASEs.
        both=(
            f"UPDATE digest_sends SET "
            f"state = CASE WHEN subscriber_id = {m('going')} THEN '{_HANDING_OVER}' ELSE '{_SENT}' END, "
            f"lease_until = CASE WHEN subscriber_id = {m('going')} THEN {m('lease_until')} ELSE NULL END, "
            f"sent_at = CASE WHEN subscriber_id = {m('going')} THEN sent_at ELSE {m('now')} END, "
            f"claimed_by = CASE WHEN subscriber_id = {m('going')} THEN claimed_by ELSE NULL END, "
            f"last_error = CASE WHEN subscriber_id = {m('going')} THEN last_error ELSE NULL END "
            f"WHERE digest_id = {m('digest_id')} AND claimed_by = {m('worker')} AND ("
            f"(subscriber_id = {m('going')} AND state = '{_CLAIMED}') OR "
            f"(subscriber_id = {m('done')} AND state IN ('{_CLAIMED}', '{_HANDING_OVER}')))"
        ),
        handing_over=(
            f"SELECT 1 FROM digest_sends WHERE digest_id = {m('digest_id')} AND claimed_by = {m('worker')} "
            f"AND subscriber_id = {m('going')} AND state = '{_HANDING_OVER}'"
        ),
        sent=(
            f"UPDATE digest_sends SET state = '{_SENT}', sent_at = {m('now')}, claimed_by = NULL, lease_until = NULL, "
            f"last_error = NULL WHERE {held} AND subscriber_id = {m('done')}"
        ),
    )


class SendRecorder:
    """One sending thread's writes for one issue: the handing-over mark and each outcome.

    The hot path of a digest (two writes per message), so it runs plain SQL on
    one DBAPI connection of its own, held while the thread sends: SQLAlchemy's
    per-statement work cost more than the SMTP transaction it records. Each
    common write is one statement in autocommit (atomic on its own); the rare
    ones that touch two rows run in a transaction. Values go through the
    columns' own bind processors, so rows read back through the store are as
    if the store wrote them. Driver errors become StoreError, as everywhere in
    the store. Not thread-safe: one thread at a time.
    """

    def __init__(self, engine: Engine, digest_id: int, *, worker: str, bounce_after: int) -> None:
        dialect = engine.dialect
        self.digest_id = digest_id
        self.worker = worker
        self.bounce_after = bounce_after
        self._sqlite = dialect.name == "sqlite"
        self._sql = _send_sql(dialect)
        self._time = self._sql.time
        self._errors: type[Exception] = dialect.loaded_dbapi.Error
        self._raw = engine.raw_connection()
        # pysqlite runs with isolation_level None (bot.store.make_engine): autocommit
        # unless we BEGIN. psycopg gets the same behaviour here, undone in close().
        if not self._sqlite:
            self._raw.driver_connection.autocommit = True  # type: ignore[union-attr]
        # One driver cursor for the recorder's life: making one per write costs CPU on every message.
        self._cursor = self._raw.driver_connection.cursor()  # type: ignore[union-attr]

    def close(self) -> None:
        try:
            with contextlib.suppress(Exception):
                self._cursor.close()
            if not self._sqlite:
                self._raw.driver_connection.autocommit = False  # type: ignore[union-attr]
        finally:
            self._raw.close()

    def _run(self, write: Callable[[Any], Any]) -> Any:
        cur = self._cursor
        try:
            return write(cur)
        except self._errors as exc:
            with contextlib.suppress(Exception):
                cur.execute("ROLLBACK")
            raise StoreError(f"database error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc

    # long: the four writes share the held lease's parameters; as closures they stand beside the choice among them
    def record(
        self,
        done: SendOutcome | None,
        going: int | None,
        *,
        now: datetime,
        lease_until: datetime,
        reset_failures: bool = False,
    ) -> bool:
        """One write: the outcome of this thread's last send, and the next one (`going`: a subscriber id)
        marked handing_over before its transaction starts. False when `going` is not this worker's any
        more (its lease ran out and another worker may hold it): it must not be sent.

        The common case (a message accepted, the next one going) is one UPDATE in
        autocommit; anything else is a short transaction.
        """
        sql = self._sql
        held = {"digest_id": self.digest_id, "worker": self.worker}
        simple = done is None or (done.state == SendState.SENT.value and not reset_failures)

        def handover(cur: Any) -> bool:
            cur.execute(sql.handover, {**held, "lease_until": self._time(lease_until), "going": going})
            return bool(cur.rowcount == 1)

        def both(cur: Any) -> bool:
            assert done is not None and going is not None
            cur.execute(
                sql.both,
                {
                    **held,
                    "going": going,
                    "lease_until": self._time(lease_until),
                    "now": self._time(now),
                    "done": done.subscriber_id,
                },
            )
            if cur.rowcount == 2:
                return True
            cur.execute(sql.handing_over, {**held, "going": going})
            return cur.fetchone() is not None

        def sent(cur: Any) -> bool:
            assert done is not None
            cur.execute(sql.sent, {**held, "now": self._time(now), "done": done.subscriber_id})
            return True

        def transaction(cur: Any) -> bool:
            cur.execute("BEGIN IMMEDIATE" if self._sqlite else "BEGIN")
            if done is not None:
                self._outcome(cur, done, now=now, reset_failures=reset_failures)
            granted = handover(cur) if going is not None else True
            cur.execute("COMMIT")
            return granted

        if simple and done is not None and going is not None:
            return bool(self._run(both))
        if simple and going is not None:
            return bool(self._run(handover))
        if simple and done is not None:
            return bool(self._run(sent))
        return bool(self._run(transaction))

    def _outcome(self, cur: Any, outcome: SendOutcome, *, now: datetime, reset_failures: bool) -> None:
        m = self._sql.mark
        attempts = "CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END" if outcome.released else "attempts"
        doubt = (", possibly_duplicated = " + ("1" if self._sqlite else "TRUE")) if outcome.possibly_duplicated else ""
        is_sent = outcome.state == SendState.SENT.value
        cur.execute(
            f"UPDATE digest_sends SET state = {m('state')}, claimed_by = NULL, lease_until = NULL, "
            f"last_error = {m('error')}, "
            f"due_at = COALESCE({m('due_at')}, due_at), attempts = {attempts}"
            + (f", sent_at = {m('now')}" if is_sent else "")
            + doubt
            + f" WHERE {self._sql.held} AND subscriber_id = {m('subscriber_id')}",
            {
                "state": outcome.state,
                "error": outcome.error,
                "due_at": self._time(outcome.due_at),
                **({"now": self._time(now)} if is_sent else {}),
                "digest_id": self.digest_id,
                "worker": self.worker,
                "subscriber_id": outcome.subscriber_id,
            },
        )
        if reset_failures:
            # A message accepted: the address works, its run of refusals is over.
            cur.execute(
                f"UPDATE subscribers SET permanent_failures = 0 WHERE id = {m('id')}", {"id": outcome.subscriber_id}
            )
        if outcome.refused:
            self._count_refusal(cur, outcome.subscriber_id, outcome.error or "refused", now=now)

    def _count_refusal(self, cur: Any, subscriber_id: int, error: str, *, now: datetime) -> None:
        m = self._sql.mark
        cur.execute(f"SELECT permanent_failures, state FROM subscribers WHERE id = {m('id')}", {"id": subscriber_id})
        row = cur.fetchone()
        if row is None:
            return
        failures = int(row[0] or 0) + 1
        # An address that left meanwhile stays as it is: bounced is only for confirmed ones.
        bounced = bounce_due(failures, self.bounce_after) and row[1] == SubscriberState.CONFIRMED.value
        cur.execute(
            f"UPDATE subscribers SET permanent_failures = {m('failures')}, last_error = {m('error')}, "
            f"updated_at = {m('now')}"
            + (f", state = '{SubscriberState.BOUNCED.value}', bounced_at = {m('now')}" if bounced else "")
            + f" WHERE id = {m('id')}",
            {"failures": failures, "error": error[:1000], "now": self._time(now), "id": subscriber_id},
        )
