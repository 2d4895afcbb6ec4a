"""The bot's one exception root.

Every error the bot raises on purpose derives from :class:`BotError`. Errors
of the libraries we call (httpx, SQLAlchemy, tweepy, facebook-sdk, smtplib,
jinja2) are translated into these where we call them and never leak upward::

    BotError
    ├── ConfigError            a bad setting or environment value (exit code 2)
    ├── SourceError            a feed could not be fetched or parsed
    │   ├── SourceItemError    one item of a feed is invalid (the rest go on)
    │   └── ArxivError         arXiv could not be asked or answered (keeps the batches that came back)
    ├── RenderError            a template or renderer failed
    ├── StoreError             the database failed
    ├── PublishError           a channel refused or failed a post
    │   ├── TransientPublishError   retry later (timeouts, 5xx, rate limits)
    │   ├── PermanentPublishError   never retry this post (400, duplicate, invalid)
    │   └── AuthPublishError        the channel's credentials are bad: pause it
    ├── MailError              an e-mail could not be sent
    │   ├── TransientMailError      4xx, dropped connection: retry later
    │   │   ├── MaybeDelivered      the answer to the final dot was lost: the server may have it
    │   │   └── NotSent             the run stopped before this message went to any server
    │   ├── PermanentMailError      5xx for that address
    │   │   ├── RecipientRefused    5xx at RCPT or DATA: counts toward bouncing the address
    │   │   └── AddressNotSupported the server cannot take this address (not a bounce)
    │   └── SenderRefused           the server refuses *us* (login, sender, TLS): stop sending
    ├── SubscriberError        a subscriber command cannot do what was asked
    │   └── AddressTooLong     an address over SMTP's length limits
    ├── InvalidToken           a subscription link's token is forged, damaged or expired
    └── LockError              another scheduler already holds the lock

Internal signals that never leave their module stay there, private
(``bot.mail.smtp._Dropped``, ``bot.mail.pool._HandoverFailed``,
``bot.subscribe._BadForm``), and so does ``bot.render.mathtext.MathTextError``,
which ``bot.render.text`` always catches.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.records import PaperDetails


class BotError(Exception):
    """Root of every error the bot raises on purpose."""

    exit_code = 1


class ConfigError(BotError):
    """A setting or environment variable has a bad value.

    The message names the setting, the value and what was expected.
    """

    exit_code = 2


class SourceError(BotError):
    """A source feed could not be fetched or parsed as a whole."""

    def __init__(self, message: str, *, retry_after: datetime | None = None) -> None:
        super().__init__(message)
        #: when the server asked us to come back (Retry-After), if it did
        self.retry_after = retry_after


class ArxivError(SourceError):
    """arXiv could not be asked or its answer could not be read.

    ``found`` holds the details of the batches that did come back before the
    failure, so a caller may keep them; the other ids are unknown, not absent.
    """

    def __init__(self, message: str, *, found: dict[str, PaperDetails] | None = None) -> None:
        super().__init__(message)
        self.found: dict[str, PaperDetails] = found or {}


class SourceItemError(SourceError):
    """One item of a feed is invalid; the other items still go through."""

    def __init__(self, source: str, guid: str | None, problem: str) -> None:
        super().__init__(f"{source}: item {guid or '(no guid)'}: {problem}")
        self.source = source
        self.guid = guid
        self.problem = problem


class RenderError(BotError):
    """A template or renderer failed; the message names template, line and name."""


class StoreError(BotError):
    """The database failed (connection lost, migration missing, ...)."""


class PublishError(BotError):
    """A channel failed to publish a post.

    ``status`` is the HTTP status and ``code`` the platform's error code, when
    known; both are recorded with the attempt. Messages never carry secrets.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class TransientPublishError(PublishError):
    """Worth retrying later; ``retry_at`` is the time the platform gave, if any.

    ``maybe_sent`` is true when the request may have reached the platform
    (a timeout or a dropped connection after sending): the next attempt must
    reconcile instead of posting again.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        retry_at: datetime | None = None,
        maybe_sent: bool = False,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_at = retry_at
        self.maybe_sent = maybe_sent


class PermanentPublishError(PublishError):
    """This post will never go through as it is.

    ``duplicate`` is true when the platform said it already has this post
    (X 403 duplicate content, Graph 506): during reconciliation that is the
    proof of an earlier success.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        duplicate: bool = False,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.duplicate = duplicate


class AuthPublishError(PublishError):
    """The channel's credentials or permissions are bad: pause the channel."""


class MailError(BotError):
    """An e-mail could not be sent; ``code`` is the SMTP reply code, when there was one."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        #: the SMTP reply code, when there was one
        self.code = code


class TransientMailError(MailError):
    """A 4xx answer or a dropped connection: try this recipient again later."""


class PermanentMailError(MailError):
    """A 5xx answer for this recipient."""


class MaybeDelivered(TransientMailError):
    """The connection died after the final dot, before the server's answer: it may have the message.

    Sending again is the only way to make sure the recipient gets it, and may
    give them a second copy (with the same Message-ID, which mailbox providers
    deduplicate); callers record such a send as possibly duplicated.
    """


class NotSent(TransientMailError):
    """The run stopped before this message was handed to any server; send it next time."""


class RecipientRefused(PermanentMailError):
    """A 5xx answer for this recipient (RCPT or DATA)."""


class AddressNotSupported(PermanentMailError):
    """The server cannot take this address at all (no SMTPUTF8 for a non-ASCII local part).

    Nothing was said about the mailbox, so it does not count toward bouncing it.
    """


class SenderRefused(MailError):
    """The server refuses our account, sender address or connection setup.

    Not the recipient's fault, and not worth retrying per recipient: a
    ``MailerPool`` stops the run when it sees one.
    """


class SubscriberError(BotError):
    """A subscriber command cannot do what was asked (invalid address, an address that left the list)."""


class AddressTooLong(SubscriberError):
    """An address over SMTP's limits (RFC 5321 4.5.3.1); `reason` says which part, for the form's message."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"not a valid e-mail address: {text!r}: {reason}")
        #: one sentence a person filling in the form understands
        self.reason = reason


class InvalidToken(BotError):
    """A subscription link's token is forged, damaged, for another purpose, or expired."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        #: True when the signature is good but the token is too old (offer a new link)
        self.expired = expired


class LockError(BotError):
    """Another process holds the scheduler lock."""
