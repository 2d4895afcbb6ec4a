"""Where the digest's templates are kept compiled between processes: Jinja's per-user bytecode cache.

Each `digest send` is a new process; without it, each would compile the digest's two templates again.
"""

from __future__ import annotations

from typing import Any

import jinja2


class CompiledTemplates(jinja2.FileSystemBytecodeCache):
    """Jinja's per-user cache of compiled templates (keyed by the template's file and checked against its source),
    so a process that mails one digest does not compile its two templates again; a failed write is no error."""

    def dump_bytecode(self, bucket: Any) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass  # a read-only or full temporary folder: the template is compiled next time too


def compiled_templates() -> jinja2.BytecodeCache | None:
    """Jinja's default folder (``_jinja2-cache-<uid>`` in the system's temporary folder, private to the user)."""
    try:
        return CompiledTemplates()
    except (OSError, RuntimeError):  # no private temporary folder to be had: compile every time
        return None
