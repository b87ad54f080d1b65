"""Our own writes failing: a full disk, a read-only mount, a dying device.

These are run failures (:class:`~pipeline.errors.StorageError`), never an
input's fault.  Writers wrap their writes in :func:`writing`; when a step
fails in a way nobody foresaw, :func:`probe` asks each location whether it
can still be written, because a full disk often surfaces as some library's
odd exception (an OCR program that cannot write its crop, an HDF5 error
without an errno) rather than as ENOSPC.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path

from pipeline.errors import StorageError

# Errors that writing to a location of ours can give and reading an input cannot.
OWN_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
_PROBE_BYTES = 64 * 1024


@contextlib.contextmanager
def writing(area: str, folder: Path) -> Iterator[None]:
    """Turn any OSError (or SQLite's disk errors) inside into a StorageError for ``area``."""
    try:
        yield
    except OSError as exc:
        raise StorageError(area, folder, exc) from None
    except sqlite3.OperationalError as exc:
        error = sqlite_os_error(exc)
        if (error is not None and error.errno == errno.EIO) or "unable to open" in str(exc):
            # SQLite says 'disk I/O error' (a WAL index it cannot grow) or 'unable to
            # open database file' (no inode left for its WAL) for a full disk too:
            # the disk itself says which it is.
            probe({area: folder})
        if error is None:
            raise
        raise StorageError(area, folder, error) from None


def sqlite_os_error(exc: sqlite3.Error) -> OSError | None:
    """The OSError behind one of SQLite's disk errors, or None for other errors."""
    text = str(exc).lower()
    for phrase, number in (
        ("full", errno.ENOSPC),
        ("readonly", errno.EROFS),
        ("read-only", errno.EROFS),
        ("disk i/o", errno.EIO),
    ):
        if phrase in text:
            return OSError(number, os.strerror(number))
    return None


def hidden_write_error(exc: BaseException, path: Path) -> OSError | None:
    """The OSError of a failed write of ours to ``path`` that a library reported only in words.

    libhdf5 (through h5py) reports a full disk as a ``RuntimeError``, or an
    ``OSError`` without errno, whose message says ``file write failed: ...
    errno = 28``; left so, it would be taken for a damaged input.  None when
    ``exc`` is not such a failure (or already carries its errno).
    """
    if isinstance(exc, OSError) and exc.errno is not None:
        return None
    if not isinstance(exc, OSError | RuntimeError):
        return None
    found = re.search(r"\berrno = (\d+)", str(exc))
    if found is None or int(found.group(1)) not in OWN_ERRNOS:
        return None
    number = int(found.group(1))
    return OSError(number, os.strerror(number), str(path))


def probe(locations: Mapping[str, Path]) -> None:
    """Write, sync and remove a small file in each location; raise StorageError if one fails."""
    for area, folder in locations.items():
        path = folder / f".mricurate-probe-{os.getpid()}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"\0" * _PROBE_BYTES)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StorageError(area, folder, exc) from None
        finally:
            with contextlib.suppress(OSError):
                path.unlink()


def sync_filesystem(folder: Path) -> None:
    """Flush the file system that holds ``folder`` (``syncfs``; ``sync`` where it is missing).

    One call makes a whole batch of temp files durable, instead of an fsync
    per file; syncfs touches only that file system, not every disk of the host.
    """
    fd = os.open(folder, os.O_RDONLY)
    try:
        if not _syncfs(fd):
            os.sync()
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Make the names in ``folder`` (a rename into it) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(fd: int) -> bool:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if not hasattr(libc, "syncfs"):
            return False
        if libc.syncfs(fd) != 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number))
        return True
    except (OSError, AttributeError) as exc:
        if isinstance(exc, OSError) and exc.errno:
            raise
        return False
