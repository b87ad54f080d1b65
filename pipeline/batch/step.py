"""The one shape of a per-input step, and of what it returns.

A step (de-identify a DICOM file, convert a raw file, scan a file) takes one
:class:`Item` and returns one frozen :class:`StepResult`.  It never renames
onto a final name and never records anything: it writes its outputs under
temporary names in the folders the runner gives it (:class:`WorkerEnv`)
and says what they are (:class:`Candidate`) and what links they carry
(:class:`LinkRow`).  The runner (:mod:`pipeline.batch.runner`) decides
duplicates and conflicts, renames, records and quarantines, the same way
for every step.
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pipeline.identity.links import LinkRecord
from pipeline.phi import NO_DETAIL, Phi
from pipeline.reasons import Outcome, Reason


@dataclass(frozen=True)
class Item:
    """One input of a run.

    Attributes
    ----------
    path : Path
        As the file system gave it; a name that is not UTF-8 is carried with
        surrogate escapes (:attr:`raw_path` gives the bytes back).  PHI:
        paths hold names; never print it.
    index : int
        Its place in discovery order: results are committed in this order,
        so which of two copies is the duplicate does not depend on timing.
    """

    path: Path = field(repr=False)
    index: int

    @property
    def raw_path(self) -> bytes:
        return os.fsencode(self.path)


class Area(enum.Enum):
    """An output folder a step writes into; each has its own temp folder and lock."""

    RELEASE = "release"
    FASTMRI = "fastmri"


@dataclass(frozen=True)
class Candidate:
    """One output written under a temporary name, waiting for the runner.

    Attributes
    ----------
    area : Area
        Which output folder it belongs to.
    relpath : str
        Its final path in that folder, made of keyed tokens only.
    temp : str
        Where it was written (in the area's temp folder, same file system).
        A ``str``, not a ``Path``: results cross a pipe by the thousand, and
        unpickling a ``Path`` re-parses it (a third of a result's cost).
    sha256 : str
        Of the bytes written: decides duplicates, conflicts and reruns.
    durable : bool
        The writer already fsynced it (HDF5 files); otherwise the runner
        syncs the file system once per batch before recording it.
    """

    area: Area
    relpath: str
    temp: str
    sha256: str
    durable: bool = False


@dataclass(frozen=True)
class LinkRow:
    """A link-table row: whose data an output is (originals: private only)."""

    key: str  # the input's sha256, or sha256#n for the n-th output of one input
    relpath: str
    record: LinkRecord


@dataclass(frozen=True)
class StepResult:
    """What happened to one input.

    Attributes
    ----------
    outcome : Outcome
    sha256 : str
        The input's content hash; empty when it could not be read.
    reason : Reason or None
        Why it was not written (or why it is noted), from the one enum.
    detail : Phi[str]
        What exactly, for the private store only.
    outputs : tuple of Candidate
        Temp files to commit (all of them or none).
    links : tuple of LinkRow
    facts : tuple of (str, int)
        PHI-free counters the summary adds up ("pixels cleaned", "acquisitions").
    payload : Phi or None
        A step's private record for its caller (the scan's finding).
    doubts : tuple of Reason
        Written, but a person should see it before it is released
        (:data:`pipeline.reasons.DOUBTS`): the ingest flow queues it for review.
    """

    outcome: Outcome
    sha256: str = ""
    reason: Reason | None = None
    detail: Phi[str] = NO_DETAIL
    outputs: tuple[Candidate, ...] = ()
    links: tuple[LinkRow, ...] = ()
    facts: tuple[tuple[str, int], ...] = ()
    payload: Phi[object] | None = None
    doubts: tuple[Reason, ...] = ()

    def discard_temps(self) -> None:
        for candidate in self.outputs:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(candidate.temp)


def rejected(
    outcome: Outcome, reason: Reason, detail: str = "", sha256: str = "", **more: object
) -> StepResult:
    """A result without outputs: quarantined, held back, not copied."""
    return StepResult(outcome, sha256, reason, Phi(detail), **more)  # type: ignore[arg-type]


@dataclass(frozen=True)
class WorkerEnv:
    """What the runner gives a step in each worker process.

    Attributes
    ----------
    temp_dirs : Mapping[Area, Path]
        Where to write each area's candidates.
    progress : callable
        Call it whenever work advances (a block read, a batch of OCR): the
        stall watchdog ends a worker whose input makes none for too long.
    max_inflated_bytes : int
        The largest a deflated dataset may inflate to (a 1 MB file can
        inflate to 1 GiB).
    """

    temp_dirs: Mapping[Area, Path]
    progress: Callable[[], None]
    max_inflated_bytes: int


class Step(Protocol):
    """What the runner needs from a step; steps are pickled into workers once."""

    @property
    def command(self) -> str:
        """``deid``, ``convert``, ``scan``: names the run and its records."""
        ...

    @property
    def areas(self) -> Mapping[Area, Path]:
        """The output folders (none for the scan)."""
        ...

    @property
    def incremental(self) -> bool:
        """Whether a rerun skips inputs unchanged since their outputs were written."""
        ...

    @property
    def key_fingerprint(self) -> str:
        """The key's public fingerprint ('' for a step without a key)."""
        ...

    def digest(self) -> str:
        """Everything that decides the outputs but the input: rules, options, version."""
        ...

    def setup(self, env: WorkerEnv) -> None:
        """Once per worker process, before its first item."""
        ...

    def run(self, item: Item) -> StepResult:
        """Never raises for bad input; raises :class:`~pipeline.errors.RunFailure` for ours."""
        ...


def result_of_error(error: Exception, sha256: str, label: str) -> StepResult:
    """The result for an input whose processing raised ``error``: the one boundary of every step.

    Bad input (:class:`~pipeline.errors.InputError`) keeps its reason; a
    :class:`MemoryError` under the worker's ceiling is *too large*; anything
    else nobody foresaw is an *internal error* with its type and message kept
    privately (the pool then checks that our own locations can still be
    written, so a full disk is not blamed on the input).  Our own failures
    (:class:`~pipeline.errors.RunFailure`) are raised again.
    """
    from pipeline.errors import HeldBack, InputError, RunFailure, StorageError
    from pipeline.storage import OWN_ERRNOS

    if isinstance(error, RunFailure):
        raise error
    if isinstance(error, OSError) and error.errno in OWN_ERRNOS:
        # Reading an input never fills a disk: a write of ours failed inside a library.
        where = Path(os.path.dirname(error.filename)) if isinstance(error.filename, str) else None
        raise StorageError("OUTPUT or the private location", where, error) from None
    if isinstance(error, HeldBack):
        return rejected(Outcome.HELD_BACK, error.reason, error.detail, sha256)
    if isinstance(error, InputError):
        return rejected(Outcome.QUARANTINED, error.reason, error.detail, sha256)
    if isinstance(error, MemoryError):
        return rejected(
            Outcome.QUARANTINED,
            Reason.TOO_LARGE,
            f"{label}: needs more memory than a worker may use (--memory-limit); process it "
            "alone with a higher limit if the machine has the memory",
            sha256,
        )
    return rejected(
        Outcome.QUARANTINED,
        Reason.INTERNAL_ERROR,
        f"{label}: {type(error).__name__}: {error}"[:1000]
        + "; the input is kept in quarantine: report this as a bug with the error type, not the file",
        sha256,
    )


def not_a_file(path: Path) -> StepResult | None:
    """The result for an input that is not a regular file, or None for one that is."""
    if path.is_file():
        return None
    # A FIFO would block, a device never ends, a dangling link has nothing.
    if path.is_symlink() and path.is_dir():
        kind = "a link to a folder (not followed, to avoid cycles): give its target as SOURCE"
    elif path.is_dir():
        kind = "a folder that cannot be listed: check its permissions"
    else:
        kind = "a FIFO, socket, device or dangling link: nothing to read"
    return rejected(Outcome.QUARANTINED, Reason.NOT_A_REGULAR_FILE, kind)
