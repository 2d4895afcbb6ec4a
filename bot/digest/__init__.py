"""The weekly digest: which period an issue covers, building it, sending it, and the subscriber commands.

One module per concern: ``addresses`` (validating an address), ``issues`` (periods, items,
building an issue, the next one, how one reads), ``sending`` (claims, the connections'
hand-over, leases, one pass, retries; its docstring states the crash window), ``reports``
(the digest lines of `status`) and ``subscribers`` (the subscriber commands, CSV import).
The scheduler's digest jobs live in bot.scheduler with the other jobs. The names other
modules import are re-exported here.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: where each re-exported name lives: loaded on first use, so `digest send` (which imports
#: bot.digest.sending, and thus this package) does not load subscriber import, reports or the scheduler
_HOMES = {
    "split_categories": "bot.digest.addresses",
    "validate_address": "bot.digest.addresses",
    "NextIssue": "bot.digest.issues",
    "build_digest": "bot.digest.issues",
    "describe_issue": "bot.digest.issues",
    "digest_items": "bot.digest.issues",
    "next_issue": "bot.digest.issues",
    "preview_digest": "bot.digest.issues",
    "digest_status": "bot.digest.reports",
    "Progress": "bot.digest.sending",
    "SendTally": "bot.digest.sending",
    "drain_digest_sends": "bot.digest.sending",
    "send_digest": "bot.digest.sending",
    "send_issue": "bot.digest.sending",
    "add_subscriber": "bot.digest.subscribers",
    "import_subscribers": "bot.digest.subscribers",
    "list_subscribers": "bot.digest.subscribers",
    "remove_subscriber": "bot.digest.subscribers",
    "send_confirmation": "bot.digest.subscribers",
    "AddressTooLong": "bot.errors",
    "SubscriberError": "bot.errors",
    "add_digest_job": "bot.scheduler",
    "digest_job": "bot.scheduler",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(home), name)


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
