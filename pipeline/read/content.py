"""An input's content hash, and the opaque key every summary names it by."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

HASH_BLOCK = 1 << 20  # bytes per read of a file being hashed


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file read in 1 MiB blocks (raw files do not fit in memory)."""
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def opaque_key(sha256: str, path: str | bytes | Path) -> str:
    """How summaries name an input: its content hash, never its path (paths hold names).

    An input that could not be read has no content hash; it is named by a hash
    of its path instead.
    """
    raw = path if isinstance(path, bytes) else os.fsencode(path)
    return sha256[:12] or "path-" + sha256_of(raw)[:8]
