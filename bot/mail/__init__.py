"""The e-mail layer: digest and confirmation messages, subscription tokens, and mail transports.

Nothing here touches the database: the store decides who gets what and records
each send; this package builds the messages (``DigestComposer``) and hands them
to a ``Mailer`` (SMTP, outbox files, or the in-memory fake for tests), one at a
time or through a ``MailerPool`` whose ``Handover`` lets the caller keep records.
"""

from __future__ import annotations

from bot.mail.base import (
    AddressNotSupported,
    Email,
    Mailer,
    MaybeDelivered,
    RecipientRefused,
    RecordingMailer,
    SenderRefused,
)
from bot.mail.message import ComposedDigest, Digest, DigestComposer, DigestItem, confirmation_email
from bot.mail.outbox import OutboxMailer
from bot.mail.pool import Handover, MailerPool, NotSent, SendReport
from bot.mail.smtp import SmtpMailer
from bot.mail.tokens import InvalidToken, make_token, read_token, signed_link
from bot.settings import Settings

__all__ = [
    "AddressNotSupported",
    "ComposedDigest",
    "Digest",
    "DigestComposer",
    "DigestItem",
    "Email",
    "Handover",
    "InvalidToken",
    "Mailer",
    "MailerPool",
    "MaybeDelivered",
    "NotSent",
    "OutboxMailer",
    "RecipientRefused",
    "RecordingMailer",
    "SendReport",
    "SenderRefused",
    "SmtpMailer",
    "confirmation_email",
    "make_mailer",
    "make_pool",
    "make_token",
    "read_token",
    "signed_link",
]


def make_mailer(settings: Settings) -> Mailer:
    """SMTP when SMTP_URL is set (and not dry-run), else .eml files in the outbox."""
    if settings.env.smtp_url and not settings.env.bot_dry_run:
        return SmtpMailer(settings)
    return OutboxMailer(settings)


def make_pool(settings: Settings) -> MailerPool:
    """digest.connections mailers of the kind make_mailer picks, for sending a digest."""
    return MailerPool([make_mailer(settings) for _ in range(settings.digest.connections)])
