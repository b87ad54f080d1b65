"""One run at a time on an OUTPUT or a private location.

Two runs on one OUTPUT would sweep each other's temp files and race for the
same final names; two on one private location would interleave the journal.
Each run takes an exclusive ``flock`` on a file in every location it writes
before it touches anything, and a second run is refused at once with the
other run's PID and start time.  The kernel drops the lock when the process
ends, however it ends: there is no stale lock to clean up after a crash.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
from pathlib import Path

from pipeline.errors import RunLocked
from pipeline.storage import writing

LOCK_NAME = "lock"


class RunLock:
    """An exclusive lock on ``folder`` held until :meth:`release` (or the process ends).

    Parameters
    ----------
    state : Path
        The folder that holds the lock file (created 0700).
    what : str
        How messages name the location (``OUTPUT /data/release``).
    command : str
        The run that takes it, recorded for whoever is refused.
    """

    def __init__(self, state: Path, what: str, command: str) -> None:
        self.path = state / LOCK_NAME
        self.what = what
        with writing(what, state):
            state.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            os.close(self._fd)
            raise RunLocked(
                f"{what} is in use by another mricurate run ({holder}); wait for it to finish "
                "or stop it, then run again"
            ) from None
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        with writing(what, state):
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, json.dumps(record).encode(), 0)

    def _holder(self) -> str:
        try:
            record = json.loads(os.pread(self._fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            record = {}
        if not record:
            return "starting"
        return (
            f"'{record.get('command', '?')}', PID {record.get('pid', '?')} on "
            f"{record.get('host', '?')}, started {record.get('started', '?')}"
        )

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
