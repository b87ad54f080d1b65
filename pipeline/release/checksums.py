"""``SHA256SUMS``: every file of a version with its SHA-256, as ``sha256sum -c`` reads it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipeline.atomic import atomic_write_text

SUMS_NAME = "SHA256SUMS"
# Characters sha256sum would escape (it then writes a leading backslash): refused instead,
# so the file stays the plain two-column text every checker reads.
_ESCAPED = ("\\", "\n", "\r")


def sums_text(digests: Mapping[str, str]) -> str:
    """``<sha256>  <path>`` lines (text mode, two spaces), sorted by path.

    Raises
    ------
    ValueError
        A path that sha256sum would have to escape.
    """
    lines = []
    for path in sorted(digests):
        if any(char in path for char in _ESCAPED):
            raise ValueError(f"{path!r}: a path sha256sum would escape cannot be released")
        lines.append(f"{digests[path]}  {path}\n")
    return "".join(lines)


def write_sums(version: Path, digests: Mapping[str, str]) -> Path:
    """Write ``version/SHA256SUMS`` for ``digests`` (relative path -> sha256)."""
    path = version / SUMS_NAME
    atomic_write_text(path, sums_text(digests))
    return path
