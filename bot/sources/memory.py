"""An in-memory source beside the Source interface, for tests and previews: serves bytes you hand it."""

from __future__ import annotations

import hashlib
from datetime import datetime

from bot.errors import SourceError
from bot.records import FetchResult, SourceState


class MemorySource:
    def __init__(self, body: bytes = b"", *, url: str = "memory://feed", content_type: str | None = None) -> None:
        self.url = url
        self.body = body
        self.content_type = content_type
        self.fetches = 0
        #: raised by the next fetch, if set
        self.error: SourceError | None = None

    def fetch(self, state: SourceState, *, now: datetime) -> FetchResult:
        self.fetches += 1
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        etag = hashlib.sha256(self.body).hexdigest()[:16]
        if state.etag == etag:
            return FetchResult(body=None, etag=etag, status=304)
        return FetchResult(body=self.body, etag=etag, status=200, content_type=self.content_type)
