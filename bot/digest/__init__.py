"""The weekly digest: which period an issue covers, building it, sending it, and the subscriber commands.

One module per concern: ``addresses`` (validating an address), ``issues`` (periods, items,
building an issue, the next one, how one reads), ``sending`` (claims, the connections'
hand-over, leases, one pass, retries; its docstring states the crash window), ``reports``
(the digest lines of `status`) and ``subscribers`` (the subscriber commands, CSV import).
The scheduler's digest jobs live in bot.scheduler with the other jobs. The names other
modules import are re-exported here.
"""

from __future__ import annotations

from bot.digest.addresses import split_categories, validate_address
from bot.digest.issues import NextIssue, build_digest, describe_issue, digest_items, next_issue, preview_digest
from bot.digest.reports import digest_status
from bot.digest.sending import Progress, SendTally, drain_digest_sends, send_digest, send_issue
from bot.digest.subscribers import (
    add_subscriber,
    import_subscribers,
    list_subscribers,
    remove_subscriber,
    send_confirmation,
)
from bot.errors import AddressTooLong, SubscriberError
from bot.scheduler import add_digest_job, digest_job

__all__ = [
    "AddressTooLong",
    "NextIssue",
    "Progress",
    "SendTally",
    "SubscriberError",
    "add_digest_job",
    "add_subscriber",
    "build_digest",
    "describe_issue",
    "digest_items",
    "digest_job",
    "digest_status",
    "drain_digest_sends",
    "import_subscribers",
    "list_subscribers",
    "next_issue",
    "preview_digest",
    "remove_subscriber",
    "send_confirmation",
    "send_digest",
    "send_issue",
    "split_categories",
    "validate_address",
]
