"""The bot's one exception root.

Every error the bot raises on purpose derives from :class:`BotError`. Errors
of the libraries we call (httpx, SQLAlchemy, tweepy, facebook-sdk, smtplib,
jinja2) are translated into these where we call them and never leak upward::

    BotError
    ├── ConfigError            a bad setting or environment value (exit code 2)
    ├── SourceError            a feed could not be fetched or parsed
    │   └── SourceItemError    one item of a feed is invalid (the rest go on)
    ├── RenderError            a template or renderer failed
    ├── StoreError             the database failed
    ├── PublishError           a channel refused or failed a post
    │   ├── TransientPublishError   retry later (timeouts, 5xx, rate limits)
    │   ├── PermanentPublishError   never retry this post (400, duplicate, invalid)
    │   └── AuthPublishError        the channel's credentials are bad: pause it
    ├── MailError              an e-mail could not be sent
    │   ├── TransientMailError      4xx, dropped connection: retry later
    │   └── PermanentMailError      5xx for that address
    └── LockError              another scheduler already holds the lock
"""

from __future__ import annotations

from datetime import datetime


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
    """An e-mail could not be sent."""


class TransientMailError(MailError):
    """A 4xx answer or a dropped connection: try this recipient again later."""


class PermanentMailError(MailError):
    """A 5xx answer for this recipient."""


class LockError(BotError):
    """Another process holds the scheduler lock."""
