"""Who holds a claim: one registry for every pass of a process, and the liveness of other processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from bot.claims import claimant_id, holder_is_dead, running


def test_passes_of_one_process_keep_each_others_claims_alive() -> None:
    dispatch, digest = claimant_id("dispatch"), claimant_id("digest")
    assert dispatch != claimant_id("dispatch")  # unique per pass
    with running(dispatch):
        with running(digest):
            # The scheduler runs a dispatch pass and a digest pass at once: neither frees the other's rows.
            assert not holder_is_dead(dispatch) and not holder_is_dead(digest)
        assert holder_is_dead(digest) and not holder_is_dead(dispatch)
    assert holder_is_dead(dispatch)


def test_other_processes_by_their_pid_other_hosts_by_their_lease() -> None:
    host = socket.gethostname()
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as alive:
        try:
            assert not holder_is_dead(f"{host}:{alive.pid}:dispatch:abc")
        finally:
            alive.kill()
    alive.wait()
    assert holder_is_dead(f"{host}:{alive.pid}:dispatch:abc")
    assert not holder_is_dead(f"another-host:{os.getpid()}:digest:abc")
    assert not holder_is_dead("not a claimant id")
