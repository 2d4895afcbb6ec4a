"""A pool of mailers on threads: sends a stream of e-mails, one connection per mailer.

The calling thread reads the e-mails and reports each outcome; the workers
only send, and note each message through the caller's ``Handover`` before it
may be out. Nothing here knows SMTP: any ``Mailer`` will do.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.errors import MailError, NotSent, SenderRefused, TransientMailError
from bot.mail.base import Email, Mailer


@dataclass(frozen=True, slots=True)
class SendReport:
    """What one MailerPool.send_all did."""

    #: messages the server (or outbox) accepted
    sent: int = 0
    #: messages that failed with a TransientMailError (retry later)
    transient: int = 0
    #: messages refused for good (RecipientRefused, other PermanentMailError, SenderRefused)
    permanent: int = 0
    #: messages never handed over because the run stopped (reported as TransientMailError)
    not_sent: int = 0
    #: why the run stopped early, if it did
    stopped: str | None = None


#: (email, None) when it was accepted, else (email, the MailError it failed with)
Result = tuple[Email, Exception | None]
OnResult = Callable[[Email, Exception | None], None]


class Handover(Protocol):
    """What a caller of ``MailerPool.send_all`` notes around each message, in the worker's thread.

    Before a worker starts a message's SMTP transaction it calls ``note`` with
    that message (`going`) and the outcome of its previous one (`done`), in one
    call, so a caller keeping records needs one write per message: "this one
    is done, that one may be out from now on". A message noted as going and
    not yet noted as done is the only kind whose fate a crash can leave open,
    and a worker has at most one. The calling thread is not involved; several
    workers call at once, so implementations must be thread-safe.
    """

    def note(self, done: Result | None, going: Email | None) -> bool:
        """Record `done` (email, None when accepted, else its MailError) and that `going` goes out now.

        Returns False to withdraw `going`: it is then not sent (reported NotSent).
        """
        ...


class MailerPool:
    """Sends a stream of e-mails through N mailers on N threads, each mailer keeping its connection.

    ``send_all`` reads `emails` lazily (a bounded window: never all in memory)
    and calls ``on_result`` in **the calling thread**. An optional ``Handover``
    is called in the worker threads before each message, so a caller can
    durably note each message before it may be out, together with the outcome
    of the one before: after a crash, the messages noted as going and not noted
    as done (at most one per worker) are the only ones that may or may not have
    gone out. A SenderRefused (bad login, refused sender) stops the run:
    nothing else could go out.
    """

    def __init__(self, mailers: Sequence[Mailer], *, queue_size: int | None = None) -> None:
        if not mailers:
            raise ValueError("MailerPool needs at least one mailer")
        self.mailers = list(mailers)
        self.queue_size = queue_size or 2 * len(self.mailers)

    def send_all(
        self,
        emails: Iterable[Email],
        on_result: OnResult | None = None,
        *,
        handover: Handover | None = None,
        stop: threading.Event | None = None,
    ) -> SendReport:
        """Send every e-mail; report each through on_result(email, None | MailError).

        Stops taking e-mails early when `stop` is set (SIGTERM) or a mailer
        raises SenderRefused: the messages in hand finish, the ones still queued
        are reported as NotSent, and the rest of `emails` is left unread. If
        `emails` raises, what was taken is still sent and reported, then the
        exception propagates. If `on_result` or the handover raises, the workers
        finish the message in hand, no callback is called again, and the
        exception propagates. A message is reported once its outcome is noted.
        """
        return _SendRun(self, on_result, handover, stop).run(emails)

    def close(self) -> None:
        for mailer in self.mailers:
            mailer.close()


class _SendRun:
    """One ``send_all`` call: the calling thread's side (take, report) and what the workers share."""

    def __init__(
        self, pool: MailerPool, on_result: OnResult | None, handover: Handover | None, stop: threading.Event | None
    ) -> None:
        self.mailers = pool.mailers
        self.capacity = pool.queue_size + len(pool.mailers)
        self.on_result = on_result
        self.handover = handover
        self.stop = stop
        # SimpleQueue: C-implemented, a good part cheaper per message than Queue.
        self.work: queue.SimpleQueue[Email | None] = queue.SimpleQueue()
        self.events: queue.SimpleQueue[tuple[Email, BaseException | None]] = queue.SimpleQueue()
        self.halt = threading.Event()
        self.counts = {"sent": 0, "transient": 0, "permanent": 0, "not_sent": 0}
        self.stopped: list[str] = []
        self.outstanding = 0  # e-mails handed to the workers and not yet reported
        self.exhausted = False
        self.callback_failed = False
        self.bug: list[BaseException] = []
        self.source_error: list[BaseException] = []

    def halted(self) -> bool:
        return self.halt.is_set() or (self.stop is not None and self.stop.is_set())

    def run(self, emails: Iterable[Email]) -> SendReport:
        threads = [
            threading.Thread(target=_Worker(self, m).run, name=f"mailer-{i}", daemon=True)
            for i, m in enumerate(self.mailers)
        ]
        for t in threads:
            t.start()
        try:
            self._feed(iter(emails))
        except BaseException:
            self.halt.set()
            raise
        finally:
            self._end(threads)
        return self._report()

    def _feed(self, source: Iterator[Email]) -> None:
        """Keep the workers supplied and report their outcomes until all taken are reported."""
        while not self.bug:
            self._take(source)
            if self.outstanding == 0 and (self.exhausted or self.halted()):
                break
            self._drain(block=True)

    def _take(self, source: Iterator[Email]) -> None:
        # Checked before taking the next e-mail: one taken is one reported.
        while not self.exhausted and not self.halted() and self.outstanding < self.capacity:
            try:
                email = next(source)
            except StopIteration:
                self.exhausted = True
                return
            except Exception as exc:
                # Finish (and report) what is in hand first, then raise it.
                self.source_error.append(exc)
                self.exhausted = True
                self.halt.set()
                return
            self.outstanding += 1
            self.work.put(email)

    def _end(self, threads: list[threading.Thread]) -> None:
        for _ in threads:
            self.work.put(None)  # once halted the workers skip what is queued, so this never waits long
        for t in threads:
            t.join()
        # Raising from here would hide the first exception; report what is left instead.
        with contextlib.suppress(Exception):
            while self.outstanding > 0 and not self.events.empty():
                self._drain(block=False)

    def _report(self) -> SendReport:
        if self.bug:
            raise self.bug[0]
        if self.source_error:
            raise self.source_error[0]
        if self.stop is not None and self.stop.is_set() and not self.stopped:
            self.stopped.append("stopped on request")
        return SendReport(**self.counts, stopped=self.stopped[0] if self.stopped else None)

    def _drain(self, *, block: bool) -> None:
        try:
            item = self.events.get(timeout=0.2) if block else self.events.get_nowait()
            while True:
                self._reported(*item)
                item = self.events.get_nowait()
        except queue.Empty:
            pass

    def _reported(self, email: Email, exc: BaseException | None) -> None:
        """Count one outcome and pass it to on_result, in the calling thread."""
        self.outstanding -= 1
        if isinstance(exc, _HandoverFailed) or (exc is not None and not isinstance(exc, MailError)):
            # A bug, or the caller's note failing (its database is gone): not a mail
            # failure. Stop, report the rest, then surface it.
            self.halt.set()
            self.bug.append(exc.error if isinstance(exc, _HandoverFailed) else exc)
            return
        self._count(exc)
        if self.on_result is None or self.callback_failed:
            return
        try:
            self.on_result(email, exc if isinstance(exc, Exception) else None)
        except BaseException:
            self.callback_failed = True
            self.halt.set()
            raise

    def _count(self, exc: BaseException | None) -> None:
        if exc is None:
            self.counts["sent"] += 1
        elif isinstance(exc, NotSent):
            self.counts["not_sent"] += 1
        elif isinstance(exc, TransientMailError):
            self.counts["transient"] += 1
        else:
            self.counts["permanent"] += 1
            if isinstance(exc, SenderRefused) and not self.halt.is_set():
                self.halt.set()
                self.stopped.append(str(exc))


class _Worker:
    """One mailer's thread: takes e-mails, notes each through the handover, sends it."""

    def __init__(self, run: _SendRun, mailer: Mailer) -> None:
        self.shared = run
        self.mailer = mailer
        #: this worker's last outcome, noted with its next message
        self.done: Result | None = None

    def run(self) -> None:
        shared = self.shared
        while True:
            email = self._next()
            if email is None:
                self._note(None)
                return
            if shared.halted():
                self._note(None)
                shared.events.put((email, NotSent(f"{email.to}: not sent: the run stopped before this message")))
                continue
            if not self._note(email):
                if not shared.halt.is_set():
                    shared.events.put((email, NotSent(f"{email.to}: not sent: the caller withdrew it")))
                continue
            self._send(email)

    def _next(self) -> Email | None:
        work = self.shared.work
        try:
            # With an outcome waiting to be noted, don't sit on it: note it alone if idle.
            return work.get() if self.done is None else work.get_nowait()
        except queue.Empty:
            self._note(None)
            return work.get()

    def _send(self, email: Email) -> None:
        error: BaseException | None = None
        try:
            self.mailer.send(email)
        except BaseException as exc:  # handed to the calling thread, which decides
            error = exc
        if self.shared.handover is None or (error is not None and not isinstance(error, MailError)):
            self.shared.events.put((email, error))
        else:
            self.done = (email, error if isinstance(error, Exception) else None)

    def _note(self, going: Email | None) -> bool:
        """One note: `done`'s outcome and `going`; reports `done` once it is noted."""
        handover, events = self.shared.handover, self.shared.events
        if handover is None or (self.done is None and going is None):
            return True
        finished, self.done = self.done, None
        try:
            granted = handover.note(finished, going)
        except BaseException as exc:
            # The caller's records failed (its database is gone): not a mail failure.
            # Reported as the failure it is (with `finished`, else `going`), so it surfaces.
            if finished is not None:
                events.put((finished[0], _HandoverFailed(exc)))
            if going is not None:
                failure = NotSent(f"{going.to}: not sent: its note could not be made")
                events.put((going, failure if finished is not None else _HandoverFailed(exc)))
            self.shared.halt.set()
            return False
        if finished is not None:
            events.put(finished)
        return granted


class _HandoverFailed(Exception):
    """The caller's handover note raised (internal: re-raised in the calling thread)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error
