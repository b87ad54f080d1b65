"""The SHA-256 of a raw input, taken from the bytes its reader reads anyway.

A raw file is hundreds of megabytes: hashing it in a pass of its own (the
runner names every input by its hash) reads it twice.  An :class:`InputHash`
is fed the chunks the twix reader reads, in file order, and hashes them on a
thread of its own (hashlib releases the GIL), so the file is read once and
the hash costs the other core.  Whatever the reader did not read (the
multi-raid table, protocol headers, gaps between measurements, the tail
after the last ACQEND, or the whole file when another library reads it) is
read by the hash itself, so :meth:`InputHash.hexdigest` is always the
SHA-256 of the whole file, equal to :func:`pipeline.read.content.file_sha256`.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from pipeline.read.content import HASH_BLOCK


class InputHash:
    """SHA-256 of ``path``, fed by its reader; a context manager (it owns a thread).

    Feed chunks with :meth:`feed` in increasing file order (a chunk may
    overlap what was fed before: only its new bytes count); bytes skipped
    over are read from the file.  :meth:`hexdigest` reads the rest of the
    file and returns the hash; after it, further chunks are ignored.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._sha = hashlib.sha256()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="input-hash")
        self._fed = 0  # bytes of the file's prefix hashed or queued
        self._tail: Future[None] | None = None
        self._result: str | None = None

    def __enter__(self) -> InputHash:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the thread (what is queued is dropped)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def feed(self, pos: int, data: memoryview) -> Future[None] | None:
        """``data`` was read at ``pos``; hash its new bytes on the hash's thread.

        Returns
        -------
        Future or None
            Done when ``data`` is no longer needed: the caller must not
            change its buffer before (None: nothing of it was taken).
        """
        end = pos + len(data)
        if self._tail is not None or end <= self._fed:
            return None
        if pos > self._fed:
            self._pool.submit(self._read, self._fed, pos)
            self._fed = pos
        part = data[self._fed - pos :]
        self._fed = end
        return self._pool.submit(self._sha.update, part)

    def in_background(self) -> None:
        """Hash the rest of the file now, on the hash's thread (for a reader that feeds none)."""
        if self._tail is None:
            self._tail = self._pool.submit(self._read, self._fed, None)

    def hexdigest(self) -> str:
        """The SHA-256 of the whole file (what was not fed is read now).

        Raises
        ------
        OSError
            The file could not be read.
        """
        if self._result is None:
            self.in_background()
            assert self._tail is not None
            self._tail.result()
            self._result = self._sha.hexdigest()
        return self._result

    def _read(self, start: int, stop: int | None) -> None:
        """Hash the file's bytes ``start`` to ``stop`` (None: to its end)."""
        fd = os.open(self._path, os.O_RDONLY)
        try:
            pos = start
            while stop is None or pos < stop:
                want = HASH_BLOCK if stop is None else min(HASH_BLOCK, stop - pos)
                block = os.pread(fd, want, pos)
                if not block:
                    break
                self._sha.update(block)
                pos += len(block)
        finally:
            os.close(fd)
