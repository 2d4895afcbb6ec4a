"""The publisher boundary: one small interface every channel implements.

A publisher turns a ``Post`` into a post on its network and nothing else: it
never touches the store, never renders, never decides retries. It translates
its library's errors into ``PublishError`` subclasses (bot.errors).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from bot.records import Post, Published


@runtime_checkable
class Publisher(Protocol):
    """One channel's network (or its dry-run outbox)."""

    #: the channel's name ("twitter", "facebook")
    channel: str
    #: False for a dry-run publisher that writes to the outbox
    live: bool

    def publish(self, post: Post) -> Published:
        """Send the post; raise TransientPublishError, PermanentPublishError or AuthPublishError."""
        ...

    def reconcile(self, post: Post, *, since: datetime | None = None) -> Published | None:
        """After a crash mid-publish: proof that `post` is out, or None if that cannot be told.

        `since` is the earliest time the post can have gone out (when its
        delivery was queued): a publisher that reads back recent posts reads
        back to there.

        Must never create a second post when the first one did go out. A
        publisher that can tell the post never went out may send it now and
        return that proof (X does when its read-back of the account's posts
        covers the whole time since `since` and the post is not there).
        """
        ...

    def check(self) -> str:
        """Call a cheap authenticated endpoint; return a one-line 'ok' description or raise PublishError."""
        ...
