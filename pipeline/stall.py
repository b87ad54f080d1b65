"""Stop a worker process whose current input has stopped making progress.

Some damaged files make a C library loop or crawl inside a single call: a
raw file with a corrupt HDF5 heap kept libhdf5 allocating for 20 s in a
trial here, and zeros in a heap collection kept it from returning at all.
No Python exception can reach code stuck in C, and a scheduled ingest run
must not hang on one bad file.  So each worker process runs a watchdog
thread: when the input it is working on has made no progress for ``limit``
seconds, it writes which input that was into a marker file in the private
location (input paths can hold names) and ends the process.  The parent sees
its pool break, reads the markers (:func:`stalled_inputs`), quarantines
those inputs, and goes on with the rest in a new pool.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

# The exit status of a worker stopped by its watchdog.
STALL_EXIT = 70


class StallWatchdog:
    """Ends this process when :meth:`progress` is not called for ``limit`` seconds.

    Parameters
    ----------
    limit : float
        Seconds without progress before the process is ended.
    markers : pathlib.Path
        A private folder; the stalled input's label is written to
        ``markers/<pid>`` before the process ends.
    """

    def __init__(self, limit: float, markers: Path) -> None:
        self.limit = limit
        self.markers = markers
        self._lock = threading.Lock()
        self._label: str | None = None
        self._last = 0.0
        threading.Thread(target=self._watch, name="stall-watchdog", daemon=True).start()

    def start(self, label: str) -> None:
        """A new input (``label`` is written to the marker if it stalls: keep it private)."""
        with self._lock:
            self._label, self._last = label, time.monotonic()

    def progress(self) -> None:
        with self._lock:
            self._last = time.monotonic()

    def stop(self) -> None:
        with self._lock:
            self._label = None

    def _watch(self) -> None:
        tick = min(1.0, self.limit / 4)
        while True:
            time.sleep(tick)
            with self._lock:
                label, last = self._label, self._last
            if label is not None and time.monotonic() - last > self.limit:
                self.markers.mkdir(mode=0o700, parents=True, exist_ok=True)
                (self.markers / str(os.getpid())).write_text(label, encoding="utf-8")
                os._exit(STALL_EXIT)


def stalled_inputs(markers: Path) -> list[str]:
    """Labels of the inputs whose workers were stopped; the markers are removed."""
    found: list[str] = []
    if markers.is_dir():
        for marker in sorted(markers.iterdir()):
            found.append(marker.read_text(encoding="utf-8"))
            marker.unlink()
    return found
