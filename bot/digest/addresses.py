"""Subscriber addresses: whether we can mail one (validated once, where it enters), and category lists."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.errors import AddressTooLong, SubscriberError
from bot.mail import RecipientRefused
from bot.mail.message import check_address

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


def validate_address(raw: str) -> str:
    """The address, normalised (email-validator, no DNS lookup); SubscriberError if it is not one we can mail."""
    from email_validator import EmailNotValidError, validate_email

    text = raw.strip()
    local, _, domain = text.rpartition("@")
    # Checked before email-validator too, whose own messages for these are not for the form.
    if (reason := _too_long(local, domain if domain.isascii() else "")) is not None:
        raise AddressTooLong(text, reason)
    try:
        found = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise SubscriberError(f"not a valid e-mail address: {text!r}: {exc}") from None
    address = found.normalized
    if (reason := _too_long(found.local_part, found.ascii_domain or found.domain)) is not None:
        raise AddressTooLong(text, reason)
    try:
        check_address(address)
    except RecipientRefused:
        # Quoted local parts and the like: valid, but we keep To to one plain addr-spec.
        raise SubscriberError(
            f"not an e-mail address we can send to: {text!r} (quoted or unusual characters)"
        ) from None
    return address


def _too_long(local: str, ascii_domain: str) -> str | None:
    """Why an address is over SMTP's limits (RFC 5321 4.5.3.1, in octets; the domain in the ASCII form
    it is sent in), or None: servers refuse such addresses."""
    if len(local.encode("utf-8")) > 64:
        return "the part before the @ is longer than 64 characters (bytes)"
    if len(ascii_domain) > 253 or any(len(label) > 63 for label in ascii_domain.split(".")):
        return "the part after the @ is too long (at most 253 characters, and 63 between two dots)"
    return None


def split_categories(values: Sequence[str]) -> tuple[str, ...]:
    """Categories as given on the command line or in a CSV cell: split, trimmed, deduplicated."""
    out: dict[str, None] = {}
    for value in values:
        for part in re.split(r"[\s,;]+", value):
            if part:
                out[part] = None
    return tuple(out)
