"""Logging set-up: text or JSON lines, with every secret value redacted from every record."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime


class RedactingFilter(logging.Filter):
    """Replaces each secret value with *** in the final message (args included)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = self.redact(record.getMessage())
            record.msg, record.args = message, None
            if record.exc_info:
                # Render the traceback now, redacted, and drop the live exception.
                formatted = logging.Formatter().formatException(record.exc_info)
                record.exc_text = self.redact(formatted)
                record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text or record.exc_info:
            data["error"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(data, ensure_ascii=False)


def setup_logging(level: str, fmt: str, secrets: Sequence[str]) -> RedactingFilter:
    handler = logging.StreamHandler(sys.stderr)
    redactor = RedactingFilter(secrets)
    handler.addFilter(redactor)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries chatter at INFO (every HTTP request); keep their warnings only.
    # oauthlib logs consumer keys and tokens at DEBUG: never below WARNING. markdown-it logs every
    # block rule it tries, a dozen lines per paragraph: --log-level DEBUG would show little else.
    for noisy in ("httpx", "httpcore", "apscheduler.executors.default", "alembic", "urllib3", "tweepy", "oauthlib", "requests_oauthlib", "markdown_it"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    return redactor
