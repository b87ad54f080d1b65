"""The temp file pynetdicom writes a received dataset into, made to survive a failed write.

pynetdicom (``STORE_RECV_CHUNKED_DATASET``) writes each C-STORE's dataset,
fragment by fragment as it arrives, into a ``NamedTemporaryFile`` it opens
in its DIMSE decoder, in the association's reader thread.  When that write
fails (the disk is full: ``ENOSPC``, a quota, ``EFBIG``, an I/O error) the
exception escapes the reader thread: the association is aborted, the sender
never gets a status for the instance, and the half-written temp file (a part
of a dataset: PHI) is left in ``private/receiving`` until the next start.

:class:`SpoolFile` stands in for that temp file (:func:`install` points
pynetdicom's decoder at it).  On the first failed write it records the error,
truncates the file to nothing (so the space goes back to the instances and
the catalog rows that do fit) and drops the rest of the dataset as it comes,
so the association goes on in step.  The C-STORE handler then asks
:func:`failure` and answers "out of resources" (the sender retries later);
pynetdicom removes the file after the handler, as for any dataset.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import threading
from pathlib import Path

from pynetdicom import dimse_messages

# The errors a full or failing disk gives a write: ours, never the sender's data's.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

_failed: dict[str, OSError] = {}  # temp file path -> its first write error
_failed_lock = threading.Lock()


class SpoolFile:
    """One received dataset's temp file, in ``tempfile.gettempdir()`` (the listener's).

    Writes are unbuffered and whole (``os.write`` until every byte is down:
    pynetdicom ignores a short write's count).  The attributes are those
    pynetdicom uses of a ``NamedTemporaryFile``: ``name``, ``write``,
    ``file.flush`` and ``close``.
    """

    def __init__(self, *_: object, suffix: str = ".dcm", **__: object) -> None:
        self.file = self  # pynetdicom flushes ``.file`` after each write
        self.name = ""
        self._fd: int | None = None
        try:
            self._fd, self.name = tempfile.mkstemp(suffix=suffix)
        except OSError as exc:
            # No file could be made (no inode, no directory block): a name that
            # does not exist, so that the handler reads the failure, not a file.
            self.name = str(Path(tempfile.gettempdir()) / f"unwritten-{id(self):x}{suffix}")
            self._fail(exc)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data)
        if self._fd is None:
            return len(view)  # failed before: dropped, the association reads on
        try:
            done = 0
            while done < len(view):
                done += os.write(self._fd, view[done:])
        except OSError as exc:
            self._fail(exc)
        return len(view)

    def flush(self) -> None:
        """Nothing to flush: every write went to the file."""

    def close(self) -> None:
        with _failed_lock:
            _failed.pop(self.name, None)
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __del__(self) -> None:
        # An association cut off mid-dataset drops this object unclosed.
        self.close()

    def _fail(self, exc: OSError) -> None:
        with _failed_lock:
            _failed.setdefault(self.name, exc)
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # give the space back now, not when pynetdicom unlinks
            os.close(fd)


def failure(path: Path | str) -> OSError | None:
    """The error that kept the dataset at ``path`` from being written whole, if any."""
    with _failed_lock:
        return _failed.get(str(path))


def describe(exc: OSError) -> str:
    """Our failure in words, no path: "the disk is full (No space left on device)"."""
    words = exc.strerror or type(exc).__name__
    if exc.errno in DISK_FULL:
        return f"the disk is full ({words})"
    return f"a write failed ({words})"


def install() -> None:
    """Make pynetdicom's decoder write received datasets into :class:`SpoolFile`.

    Process-wide, as ``tempfile.tempdir`` is: the listener and the C-GET of a
    pull own their process (:mod:`pipeline.net.listener`).
    """
    setattr(dimse_messages, "NamedTemporaryFile", SpoolFile)  # noqa: B010 (not re-exported)
