"""Waiting for a detached sender between benchmark runs (shared by run.py, bench_upload.py, bench_cli.py)."""

from __future__ import annotations

import os
import time


def _held(lock: str) -> bool:
    """True while some process holds the spool's lock (an flock: the file itself outlives its holder)."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock to ask; the file's presence is all there is
        return os.path.exists(lock)
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def quiet(home: str, seconds: float, appear: float = 2.0) -> None:
    """Wait (bounded by ``seconds``) until no detached sender works on ``home``'s spool.

    Done when nothing is left to send, when a sender that held the lock has let
    it go (what it keeps for a later retry stays), or when none took it within
    ``appear`` seconds.
    """
    spool = os.path.join(home, "cache", "spool")
    lock = os.path.join(spool, ".lock")
    now = time.monotonic()
    deadline, appeared_by = now + seconds, now + appear
    seen = False
    while time.monotonic() < deadline:
        if _held(lock):
            seen = True
        else:
            pending = os.path.isdir(spool) and any(n.endswith(".json") for n in os.listdir(spool))
            if not pending or seen or time.monotonic() > appeared_by:
                return
        time.sleep(0.02)
