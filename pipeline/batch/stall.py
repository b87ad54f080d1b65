"""Stop a worker process whose current input has stopped making progress.

Some damaged files make a C library loop or crawl inside a single call: a
raw file with a corrupt HDF5 heap kept libhdf5 allocating for 20 s in a
trial here, and zeros in a heap collection kept it from returning at all.
No Python exception can reach code stuck in C, and a scheduled ingest run
must not hang on one bad file.  So each worker process runs a watchdog
thread: when the input it is working on has made no progress for ``limit``
seconds, it ends the process with :data:`STALL_EXIT`.  The pool knows which
input that worker held, quarantines it as stalled and goes on with a new
worker.
"""

from __future__ import annotations

import os
import threading
import time

# The exit status of a worker stopped by its watchdog.
STALL_EXIT = 70


class StallWatchdog:
    """Ends this process when :meth:`progress` is not called for ``limit`` seconds.

    ``limit`` 0 or less: never.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._busy = False
        self._last = 0.0
        if limit > 0:
            threading.Thread(target=self._watch, name="stall-watchdog", daemon=True).start()

    def start(self) -> None:
        """A new input."""
        with self._lock:
            self._busy, self._last = True, time.monotonic()

    def progress(self) -> None:
        with self._lock:
            self._last = time.monotonic()

    def stop(self) -> None:
        with self._lock:
            self._busy = False

    def _watch(self) -> None:
        tick = min(1.0, self.limit / 4)
        while True:
            time.sleep(tick)
            with self._lock:
                busy, last = self._busy, self._last
            if busy and time.monotonic() - last > self.limit:
                os._exit(STALL_EXIT)
