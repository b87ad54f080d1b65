"""Release versions on disk: ``release/v0001``, ``release/v0002``, ... and folders being built.

A version is a folder named ``v`` and at least four digits, numbered from 1
in the order published.  It appears in one ``rename`` of a folder built
beside it (``release/.building-<random>``), so a folder with a version's
name is always complete; a ``.building-*`` folder is what a publish that
did not finish left, and the next publish removes it.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

BUILDING_PREFIX = ".building-"
_VERSION = re.compile(r"v(\d{4,})")


def version_name(number: int) -> str:
    """``v0001`` for 1: four digits at least, more when needed (``v10000``)."""
    return f"v{number:04d}"


def version_number(name: str) -> int | None:
    """The number of a version folder's name, or ``None`` for any other name."""
    found = _VERSION.fullmatch(name)
    return int(found.group(1)) if found else None


def versions(release_root: Path) -> list[str]:
    """Every version under ``release_root``, oldest first."""
    if not release_root.is_dir():
        return []
    numbered = [
        (number, entry.name)
        for entry in os.scandir(release_root)
        if entry.is_dir(follow_symlinks=False)
        and (number := version_number(entry.name)) is not None
    ]
    return [name for _, name in sorted(numbered)]


def latest_version(release_root: Path) -> str | None:
    """The newest version under ``release_root`` (``None`` before the first publish)."""
    found = versions(release_root)
    return found[-1] if found else None


def next_version(release_root: Path) -> str:
    """The name the next version takes."""
    latest = latest_version(release_root)
    return version_name((version_number(latest) or 0) + 1 if latest else 1)


def remove_stale_builds(release_root: Path) -> int:
    """Remove what unfinished publishes left (``.building-*``); return how many."""
    stale = [p for p in release_root.glob(f"{BUILDING_PREFIX}*") if p.is_dir()]
    for path in stale:
        remove_tree(path)
    return len(stale)


def remove_tree(path: Path) -> None:
    """Remove a folder whose subfolders may already be read-only (0555)."""
    for folder, subfolders, _ in os.walk(path):
        for name in subfolders:
            _writable(Path(folder) / name)
    _writable(path)
    shutil.rmtree(path)


def _writable(folder: Path) -> None:
    info = folder.lstat()
    if stat.S_ISDIR(info.st_mode):
        os.chmod(folder, stat.S_IMODE(info.st_mode) | stat.S_IRWXU)
