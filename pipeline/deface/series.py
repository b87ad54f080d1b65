"""Deface one series of de-identified files in place: decide, assemble, deface, check, replace.

The caller gives the files of one series (one folder of the staging area)
and gets back what happened, PHI-free.  Files are replaced only when the
whole series passed: each defaced file is written to a temporary name
beside it, synced, then renamed over it (:func:`pipeline.atomic.atomic_open`),
so a reader sees either the old file or the new one.  A series whose every
file already says it was defaced (a rerun after a crash) is left as it is.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from pipeline.atomic import atomic_open
from pipeline.deface.face import Defaced, QualityReport, deface_volume
from pipeline.deface.heads import HeadVerdict, classify_series
from pipeline.deface.register import RegistrationFailed
from pipeline.deface.rules import DefaceRules
from pipeline.deface.volume import AssemblyError, Volume, assemble
from pipeline.deface.write import is_marked_defaced, write_back
from pipeline.errors import UnreadableInput


class SeriesOutcome(enum.Enum):
    DEFACED = "defaced"
    ALREADY_DEFACED = "already-defaced"
    NOT_A_HEAD = "not-a-head-volume"
    FAILED = "deface-failed"  # to review: assembly, registration or the quality check


@dataclass(frozen=True)
class SeriesResult:
    """What happened to one series; every field PHI-free (codes and numbers)."""

    outcome: SeriesOutcome
    verdict: HeadVerdict
    problem: str = ""  # a stable code: an AssemblyProblem, QualityProblem or registration-failed
    detail: str = ""  # measures or the geometry fault, no header value
    quality: QualityReport | None = None
    changed_voxels: int = 0
    seconds: float = 0.0
    # The volume and its masks (for a caller that looks: the tests, the benchmark).
    volume: Volume | None = field(default=None, compare=False, repr=False)
    defaced: Defaced | None = field(default=None, compare=False, repr=False)


def deface_series(paths: Sequence[Path], rules: DefaceRules) -> SeriesResult:
    """Deface the series made of ``paths`` (de-identified DICOM files) where the rules say so."""
    start = time.perf_counter()
    try:
        headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    except (InvalidDicomError, OSError, ValueError) as exc:
        return SeriesResult(
            SeriesOutcome.FAILED, HeadVerdict.UNASSEMBLED, "unreadable", type(exc).__name__
        )
    decision = classify_series(headers, rules.head)
    if decision.verdict is HeadVerdict.UNASSEMBLED:
        problem = decision.problem
        code = problem.problem.value if problem is not None else "unassembled"
        return SeriesResult(SeriesOutcome.FAILED, decision.verdict, code, str(problem or ""))
    if decision.verdict is not HeadVerdict.HEAD:
        return SeriesResult(SeriesOutcome.NOT_A_HEAD, decision.verdict)
    if all(is_marked_defaced(h) for h in headers):
        return SeriesResult(SeriesOutcome.ALREADY_DEFACED, decision.verdict)
    datasets: list[Dataset] = [pydicom.dcmread(p) for p in paths]
    try:
        volume = assemble(datasets)
        defaced = deface_volume(volume, rules)
    except AssemblyError as exc:
        return SeriesResult(SeriesOutcome.FAILED, decision.verdict, exc.problem.value, str(exc))
    except RegistrationFailed as exc:
        return SeriesResult(SeriesOutcome.FAILED, decision.verdict, "registration-failed", str(exc))
    seconds = round(time.perf_counter() - start, 3)
    if not defaced.quality.passed:
        return SeriesResult(
            SeriesOutcome.FAILED, decision.verdict, defaced.quality.problems[0].value,
            defaced.quality.describe(), defaced.quality, seconds=seconds, volume=volume,
            defaced=defaced,
        )  # fmt: skip
    try:
        write_back(datasets, volume, defaced.voxels)
    except UnreadableInput as exc:  # BitsAllocated that the decoded values do not match
        return SeriesResult(SeriesOutcome.FAILED, decision.verdict, "unreadable", str(exc))
    for ds, path in zip(datasets, paths, strict=True):
        replace_file(path, ds)
    return SeriesResult(
        SeriesOutcome.DEFACED, decision.verdict, "", defaced.quality.describe(), defaced.quality,
        defaced.changed, round(time.perf_counter() - start, 3), volume, defaced,
    )  # fmt: skip


def replace_file(path: Path, ds: Dataset) -> None:
    """Write ``ds`` over ``path`` atomically, keeping the file's permissions."""
    mode = os.stat(path).st_mode & 0o777
    with atomic_open(path, mode) as handle:
        pydicom.dcmwrite(handle, ds, enforce_file_format=True)
