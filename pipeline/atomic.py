"""Atomic output: write to a temporary name in the target folder, fsync, rename.

Every writer in mricurate goes through here so that a crash or a cut-off
session never leaves a half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Protocol

TEMP_PREFIX = ".mricurate-tmp-"


class _Digest(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...


@contextlib.contextmanager
def atomic_open(path: Path, mode: int = 0o644) -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path``; on success it replaces ``path``.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, mode) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), mode)


_COUNTER = itertools.count()


def write_temp(
    folder: Path, data: bytes | Iterable[bytes | memoryview], digest: _Digest | None = None
) -> Path:
    """Write ``data`` (bytes, or pieces written in turn) to a new temporary file in ``folder``.

    Returns the file's path.  Pieces spare the caller joining them, a copy
    of everything (pixel data included) made only to be written; they may
    be made as they are written (a cine's frames, decoded one by one), and
    ``digest`` (a :mod:`hashlib` object) then takes each as it is written:
    its digest is the file's.

    Cheaper than :func:`tempfile.mkstemp` on a hot path: the name is the
    process ID and a counter, created exclusively.  The caller makes it
    durable and renames it (see :func:`remove_stale_temps` for crashes).
    """
    while True:
        path = folder / f"{TEMP_PREFIX}{os.getpid()}-{next(_COUNTER)}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, (bytes, bytearray, memoryview)):
                data = (data,)
            for piece in data:  # small ones are buffered, large ones written through
                handle.write(piece)
                if digest is not None:
                    digest.update(piece)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def remove_stale_temps(folder: Path) -> int:
    """Delete temporary files a crashed run left in ``folder``; return how many."""
    stale = list(folder.glob(f"{TEMP_PREFIX}*")) if folder.is_dir() else []
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return len(stale)
