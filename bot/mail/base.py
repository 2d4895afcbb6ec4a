"""The mail boundary: the ``Email`` record, the ``Mailer`` interface and its in-memory fake.

Mailers send one ready message each and translate their library's errors into
``MailError`` subclasses; they never render, never touch the store, never retry
on their own beyond what the transport itself makes safe.

Errors a mailer raises (all in bot.errors)::

    MailError
    ├── TransientMailError      4xx, dropped connection, timeout: retry this recipient later
    │   └── MaybeDelivered      the message was handed over (final dot sent) and the answer
    │                           was lost: the server may have it; a retry may duplicate it
    ├── PermanentMailError
    │   ├── RecipientRefused    5xx at RCPT or DATA: counts toward bouncing the address
    │   └── AddressNotSupported this server cannot take the address (a non-ASCII local part
    │                           without SMTPUTF8): fails the send, not counted as a bounce
    └── SenderRefused           the server refuses *us* (login, sender, TLS): no message can
                                go out until the operator fixes it; the recipient is not at fault

A message may become the server's at the final dot of DATA and not before: an
SmtpMailer writes the message and its final dot in one go, so an error while
writing means the server cannot have accepted it (TransientMailError), and only
a lost answer after it leaves the outcome open (MaybeDelivered).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.generator import BytesGenerator
from email.message import EmailMessage
from io import BytesIO
from typing import Protocol, runtime_checkable

# The mail errors live in bot.errors with the others; imported here, where they were defined first.
from bot.errors import (  # noqa: F401
    AddressNotSupported,
    MailError,
    MaybeDelivered,
    PermanentMailError,
    RecipientRefused,
    SenderRefused,
    TransientMailError,
)


@dataclass(frozen=True, slots=True, eq=False)
class Email:
    """One message ready to send to one recipient (compared and hashed by identity)."""

    #: the recipient's address (the SMTP envelope recipient; also the To header)
    to: str
    #: the Message-ID header's value, angle brackets included
    message_id: str
    #: the whole message as RFC 5322 bytes with CRLF line ends, headers included
    data: bytes
    #: the same message as SMTP DATA (see smtp_data), when whoever built it made that
    #: form on the way (a digest's is joined from pieces stuffed once); None: the mailer makes it
    wire: bytes | None = field(default=None, repr=False)

    def as_bytes(self) -> bytes:
        """The message as RFC 5322 bytes with CRLF line ends (UTF-8 headers only if an address needs them)."""
        return self.data

    @property
    def message(self) -> EmailMessage:
        """The message parsed back (for reading it; sending uses the bytes)."""
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


def dot_stuffed(data: bytes, *, line_start: bool) -> bytes:
    """`data` as it goes in SMTP DATA: each dot that starts a line doubled (RFC 5321 4.5.2).
    `line_start`: whether `data` itself starts a line."""
    data = data.replace(b"\n.", b"\n..")
    return b"." + data if line_start and data.startswith(b".") else data


def crlf_only(data: bytes) -> bool:
    """True when every line end in `data` is CRLF (no bare CR or LF)."""
    crlf = data.count(b"\r\n")
    return data.count(b"\n") == crlf and data.count(b"\r") == crlf


def smtp_data(message: bytes) -> bytes:
    """The bytes of DATA: CRLF line ends, leading dots doubled, and the final dot line."""
    # Our messages already have CRLF: check before rewriting.
    if not crlf_only(message):
        message = _LINE_ENDS.sub(b"\r\n", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return dot_stuffed(message, line_start=True) + b".\r\n"


_LINE_ENDS = re.compile(rb"\r\n|\r|\n")

#: the policy messages are written with: CRLF, and headers folded only past
#: RFC 5322's 998-character limit. At 78 the email package turns a long
#: unbreakable value (the List-Unsubscribe URL) into RFC 2047 encoded words,
#: which mailbox providers do not decode there. Bodies are encoded before this
#: applies (quoted-printable, 76-character lines).
HEADERS_POLICY = policy.SMTP.clone(max_line_length=998)
_HEADERS_POLICY_UTF8 = HEADERS_POLICY.clone(utf8=True)


def flatten(message: EmailMessage) -> bytes:
    """RFC 5322 bytes with CRLF; UTF-8 headers (SMTPUTF8) only when an address is not ASCII.

    Non-ASCII display names and subjects become RFC 2047 encoded words either way.
    """
    needs_utf8 = any(
        not address.addr_spec.isascii()
        for name in ("From", "To")
        for address in getattr(message.get(name), "addresses", ())
    )
    out = BytesIO()
    BytesGenerator(out, policy=_HEADERS_POLICY_UTF8 if needs_utf8 else HEADERS_POLICY).flatten(message)
    return out.getvalue()


@runtime_checkable
class Mailer(Protocol):
    """Where e-mails go: an SMTP server, the outbox folder, or a list in a test."""

    #: False for mailers that deliver to nobody (outbox files, the test fake)
    live: bool

    def send(self, email: Email) -> None:
        """Hand one message over; raise TransientMailError, PermanentMailError or SenderRefused."""
        ...

    def check(self) -> str:
        """Try the transport (connect, log in); return a one-line description or raise MailError."""
        ...

    def close(self) -> None:
        """Release connections; the mailer may be used again afterwards (it reconnects)."""
        ...


class RecordingMailer:
    """The fake mailer: keeps every message in memory, fails the addresses it is told to."""

    live = False

    def __init__(self, fail: Mapping[str, MailError] | None = None) -> None:
        #: every message accepted, in order
        self.sent: list[Email] = []
        #: address → the error every send to it raises
        self.fail: dict[str, MailError] = dict(fail or {})
        #: how many times close() was called
        self.closes = 0
        # The pool calls send from several threads at once.
        self._lock = threading.Lock()

    def send(self, email: Email) -> None:
        error = self.fail.get(email.to)
        if error is not None:
            raise error
        with self._lock:
            self.sent.append(email)

    def check(self) -> str:
        return "ok: e-mails are kept in memory (test mailer)"

    def close(self) -> None:
        self.closes += 1

    @property
    def recipients(self) -> list[str]:
        with self._lock:
            return [e.to for e in self.sent]
