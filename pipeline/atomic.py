"""Atomic output: write to a temporary name in the target folder, fsync, rename.

Every writer in mricurate goes through here so that a crash or a cut-off
session never leaves a half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TEMP_PREFIX = ".mricurate-tmp-"


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


def temp_path_beside(path: Path) -> Path:
    """Reserve a temporary name in ``path``'s folder for a writer that needs a path.

    The caller renames it with :func:`commit` or removes it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def commit(tmp: Path, path: Path, mode: int = 0o644) -> None:
    """fsync ``tmp`` and rename it onto ``path``."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
