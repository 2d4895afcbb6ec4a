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


def _control_escapes() -> dict[int, str]:
    table = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
    table.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"})
    return table


_CONTROL_ESCAPES = _control_escapes()
_JSON_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def escape_controls(text: str) -> str:
    """Control characters (C0, C1, DEL, CR, LF, U+2028/9) as backslash escapes: one record, one line."""
    return text.translate(_CONTROL_ESCAPES)


class TextFormatter(logging.Formatter):
    """One line per record: a GUID or server text with a newline in it cannot forge a log line."""

    def format(self, record: logging.LogRecord) -> str:
        # A copy: other handlers (and pytest's caplog) keep the record as it was.
        escaped = logging.makeLogRecord(record.__dict__)
        escaped.msg, escaped.args = escape_controls(record.getMessage()), None
        return super().format(escaped)


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
        # JSON escapes C0 itself; NEL and U+2028/9 stay raw with ensure_ascii=False, and some viewers break lines there.
        return json.dumps(data, ensure_ascii=False).translate(_JSON_LINE_BREAKS)


def setup_logging(level: str, fmt: str, secrets: Sequence[str]) -> RedactingFilter:
    handler = logging.StreamHandler(sys.stderr)
    redactor = RedactingFilter(secrets)
    handler.addFilter(redactor)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries chatter at INFO (every HTTP request); keep their warnings only.
    # oauthlib logs consumer keys and tokens at DEBUG: never below WARNING. markdown-it logs every
    # block rule it tries, a dozen lines per paragraph: --log-level DEBUG would show little else.
    for noisy in (
        "httpx",
        "httpcore",
        "apscheduler.executors.default",
        "alembic",
        "urllib3",
        "tweepy",
        "oauthlib",
        "requests_oauthlib",
        "markdown_it",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    return redactor
