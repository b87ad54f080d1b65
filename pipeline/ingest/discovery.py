"""Find what is new in ``incoming/``: by content, once complete, never twice.

A file is identified by its SHA-256, not its name: a study re-sent by the
PACS, a file renamed or copied into another folder is not processed again.
A file whose size or modification time is younger than the quiet time is
still being written (a scanner or an ``rsync`` in progress): it is left
for the next run, which takes it once it is complete.  Hashing is the one
cost that grows with the data, so a file already seen with the same size,
mtime and inode is not hashed again.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.catalog import Catalog, Sighting
from pipeline.catalog.states import InputKind
from pipeline.ingest.classify import classify
from pipeline.read.content import file_sha256
from pipeline.read.discover import discover


@dataclass(frozen=True)
class IncomingFile:
    """One complete file of ``incoming/``.

    ``path`` is PHI (folder and file names hold patient names): it stays in
    this process and the private catalog, never in a log, a Prefect record
    or a report; ``sha256`` is the opaque key.
    """

    path: Path = field(repr=False)
    sha256: str
    size: int
    kind: InputKind


@dataclass(frozen=True)
class Discovery:
    """What ``incoming/`` holds now (PHI-free counts; paths only inside ``files``)."""

    files: Mapping[str, IncomingFile] = field(repr=False)  # sha256 -> the first path found
    new: frozenset[str]  # content not seen by any earlier run
    known: int  # content an earlier run registered (processed, or to be finished now)
    waiting: int  # still being written: left for the next run
    copies: int  # files of this listing whose content another file of it holds
    not_files: int  # FIFOs, sockets, links to folders, folders that cannot be listed

    def counts(self) -> dict[str, int]:
        return {
            "files": len(self.files),
            "new": len(self.new),
            "known": self.known,
            "waiting": self.waiting,
            "copies": self.copies,
            "not regular files": self.not_files,
        }


def discover_incoming(
    incoming: Path,
    catalog: Catalog,
    run_id: int,
    *,
    quiet_seconds: float,
    now: float | None = None,
) -> Discovery:
    """Hash and classify the complete files of ``incoming``; register new content as ``NEW``."""
    now = time.time() if now is None else now
    files: dict[str, IncomingFile] = {}
    sightings: list[tuple[bytes, Sighting]] = []
    waiting = copies = not_files = 0
    listed = discover(incoming)
    known = catalog.sightings(os.fsencode(p) for p in listed)
    for path in listed:
        try:
            info = path.lstat()
        except OSError:
            not_files += 1
            continue
        if not stat.S_ISREG(info.st_mode):
            not_files += 1
            continue
        if now - max(info.st_mtime, info.st_ctime) < quiet_seconds:
            waiting += 1
            continue
        raw = os.fsencode(path)
        seen = known.get(raw)
        if seen is not None and (seen.size, seen.mtime_ns) == (info.st_size, info.st_mtime_ns):
            sha = seen.sha256
        else:
            try:
                sha = file_sha256(path)
                after = path.stat()
            except OSError:
                not_files += 1  # vanished or unreadable between listing and reading
                continue
            if (after.st_size, after.st_mtime_ns) != (info.st_size, info.st_mtime_ns):
                waiting += 1  # written to while we read it
                continue
            sightings.append((raw, Sighting(info.st_size, info.st_mtime_ns, sha)))
        if sha in files:
            copies += 1
            continue
        files[sha] = IncomingFile(path, sha, info.st_size, classify(path))
    if sightings:
        catalog.record_sightings(sightings)
    new = catalog.register([(f.sha256, f.kind, f.size) for f in files.values()], run_id)
    return Discovery(files, frozenset(new), len(files) - len(new), waiting, copies, not_files)
