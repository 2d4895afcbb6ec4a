"""Who holds a claim: the ids of this process's running passes, and whether a claim's holder is gone.

Deliveries and digest sends are claimed under the id of the pass that claimed
them (``host:pid:kind:random``). A pass of a process on this host that has
exited, or a pass of this process that has ended, will never finish its
claims; claims made on other hosts are known to be abandoned only when their
lease runs out. Dispatch passes and digest passes share the one registry, so
neither takes the other's live claims for abandoned ones.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_HOST = socket.gethostname()
#: ids of this process's passes that are running now (their claims are alive)
_RUNNING: set[str] = set()
_LOCK = threading.Lock()


def claimant_id(kind: str) -> str:
    """A new id, ``host:pid:kind:random``: unique per pass, so a process tells its own passes apart."""
    return f"{_HOST}:{os.getpid()}:{kind}:{secrets.token_hex(6)}"


@contextmanager
def running(claimant: str) -> Iterator[str]:
    """While the block runs, the claims of `claimant` are alive; after it, they are abandoned."""
    with _LOCK:
        _RUNNING.add(claimant)
    try:
        yield claimant
    finally:
        with _LOCK:
            _RUNNING.discard(claimant)


def holder_is_dead(claimed_by: str) -> bool:
    """True when the claim's pass is gone: its process on this host exited, or it is one of this
    process's passes and no longer running. Claims of other hosts are left to their lease."""
    host, _, rest = claimed_by.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        with _LOCK:
            return claimed_by not in _RUNNING
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, run by another user
        return False
    return False
