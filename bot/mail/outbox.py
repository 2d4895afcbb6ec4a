"""The dry-run mailer: each e-mail becomes an RFC 5322 ``.eml`` file under ``<outbox>/email/``.

Used when SMTP_URL is unset or BOT_DRY_RUN=1, so digests can be previewed and
tested without sending anything. The file name comes from the Message-ID.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from bot.errors import TransientMailError
from bot.mail.base import Email
from bot.settings import Settings

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


def eml_name(message_id: str) -> str:
    """A safe file name for a Message-ID: no separators, no dot files, bounded length."""
    name = _UNSAFE.sub("_", message_id.strip().strip("<>")).strip("._") or "message"
    return name[:200] + ".eml"


class OutboxMailer:
    """Writes each e-mail to <outbox>/email/<message-id>.eml (CRLF line ends, as sent by SMTP)."""

    live = False

    def __init__(self, settings: Settings | None = None, *, directory: Path | None = None) -> None:
        if directory is None:
            if settings is None:
                raise ValueError("OutboxMailer needs settings or a directory")
            directory = settings.outbox_dir / "email"
        self.directory = directory

    def path_for(self, email: Email) -> Path:
        return self.directory / eml_name(email.message_id)

    def send(self, email: Email) -> None:
        path = self.path_for(email)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Write aside and rename, so a reader never sees half a message.
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(email.as_bytes())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise TransientMailError(
                f"outbox {self.directory}: cannot write {path.name}: {exc.strerror or exc}"
            ) from None

    def check(self) -> str:
        return f"ok: e-mails are written to {self.directory} (no SMTP_URL, or dry-run)"

    def close(self) -> None:
        pass
