"""Find every input under SOURCE: any name, any depth, nothing silently skipped."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import CurationError


def discover(source: Path) -> list[Path]:
    """Every regular file under ``source``, any name, in a stable order.

    A folder that cannot be listed, and a link to a folder (not followed, so
    that a cycle cannot make the run endless), are returned as entries of
    their own, so they are accounted for instead of silently skipped.  Names
    that are not valid UTF-8 are kept as the bytes the file system gave
    (``os.fsencode`` of the path gives them back).
    """
    if not source.exists():
        raise CurationError(f"SOURCE {source} does not exist")
    if source.is_file():
        return [source]
    found: list[Path] = []

    def unreadable(error: OSError) -> None:
        if error.filename:
            found.append(Path(error.filename))

    for folder, dirs, files in os.walk(source, onerror=unreadable):
        dirs.sort()
        found += [Path(folder) / f for f in sorted(files)]
        # os.walk lists symlinks to folders under dirs without following them.
        found += [Path(folder) / d for d in dirs if (Path(folder) / d).is_symlink()]
    return found
