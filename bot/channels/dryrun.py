"""The dry-run publisher: appends each post to <outbox>/<channel>.jsonl instead of a network.

One JSON object per line (the dry-run contract, docs/architecture.md): summary_id, channel, text (exactly
what would be sent), url, created_at, plus replies and image_url. It can
reconcile: a post is proven sent when its line is in the file, and
proven unsent when it is not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from bot.errors import PermanentPublishError
from bot.records import Post, Published


class DryRunPublisher:
    live = False

    def __init__(self, channel: str, outbox_dir: Path, *, now: Callable[[], datetime]) -> None:
        self.channel = channel
        self.path = Path(outbox_dir) / f"{channel}.jsonl"
        self._now = now

    def _line_id(self, post: Post) -> str:
        return f"dry-run:{self.channel}:{post.summary_guid}"

    def publish(self, post: Post) -> Published:
        if post.channel != self.channel:
            raise PermanentPublishError(f"post for {post.channel!r} given to the {self.channel!r} channel")
        record = {
            "summary_id": post.summary_guid,
            "channel": self.channel,
            "text": post.text,
            "url": post.link,
            "replies": list(post.replies),
            "image_url": post.image_url,
            "created_at": self._now().isoformat(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        # One write on an O_APPEND descriptor: lines from several workers never interleave.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return Published(post_id=self._line_id(post))

    def reconcile(self, post: Post, *, since: datetime | None = None) -> Published | None:
        """Proof from the outbox file; when the line is absent the post never went out, so send it now."""
        try:
            with self.path.open(encoding="utf-8") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a crash is no proof
                    if record.get("summary_id") == post.summary_guid and record.get("text") == post.text:
                        return Published(post_id=self._line_id(post))
        except FileNotFoundError:
            pass
        # The write is the publication: no line means it was never published.
        return self.publish(post)

    def check(self) -> str:
        return f"dry-run: posts go to {self.path}"
