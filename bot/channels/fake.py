"""The fake publisher beside the Publisher interface: records posts in memory, fails on demand.

Tests pass it into the app instead of patching anything.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import datetime

from bot.errors import PublishError
from bot.records import Post, Published


class FakePublisher:
    live = True

    def __init__(self, channel: str, *, faults: Iterable[PublishError] = ()) -> None:
        self.channel = channel
        self.posts: list[Post] = []
        #: errors raised by the next publish calls, in order
        self.faults: deque[PublishError] = deque(faults)
        self.reconcile_calls: list[Post] = []
        self.check_result: PublishError | str = "ok: fake"

    def publish(self, post: Post) -> Published:
        if self.faults:
            raise self.faults.popleft()
        self.posts.append(post)
        return Published(post_id=f"{self.channel}-{len(self.posts)}")

    def reconcile(self, post: Post, *, since: datetime | None = None) -> Published | None:
        self.reconcile_calls.append(post)
        for i, earlier in enumerate(self.posts, 1):
            if earlier.text == post.text and earlier.summary_guid == post.summary_guid:
                return Published(post_id=f"{self.channel}-{i}")
        return None

    def check(self) -> str:
        if isinstance(self.check_result, PublishError):
            raise self.check_result
        return self.check_result
