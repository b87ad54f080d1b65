"""The ``convert`` step: one raw input (twix or ISMRMRD) into anonymized ISMRMRD and fastMRI files.

Every input ends written (all its measurements together), held back
(*subject unknown*) or quarantined with its reason; the runner commits.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import __version__
from pipeline.batch.runner import RunOptions, RunSummary, run_batch
from pipeline.batch.step import (
    Area,
    Candidate,
    Item,
    LinkRow,
    StepResult,
    WorkerEnv,
    not_a_file,
    rejected,
    result_of_error,
)
from pipeline.keys import SecretKey
from pipeline.phi import NO_DETAIL, Phi
from pipeline.raw.convert import Conversion, Converter, convert_input
from pipeline.raw.header_rules import HeaderRules
from pipeline.raw.input_hash import InputHash
from pipeline.raw.subject_lookup import IdentityIndex, SubjectLookup
from pipeline.read.content import sha256_of
from pipeline.reasons import Outcome, Reason
from pipeline.storage import OWN_ERRNOS

if TYPE_CHECKING:
    from pipeline.private_store import PrivateStore


@dataclass
class RawStep:
    """Convert raw k-space files (:class:`~pipeline.batch.step.Step`).

    Parameters
    ----------
    key : SecretKey
    rules : HeaderRules
        The ISMRMRD header allowlist.
    span : (int, int)
        The DICOM profile's date-shift range.
    output : Path
        The ISMRMRD release folder.
    identities : callable
        Opens the link table for reading in a worker (subjects of raw files
        are found through DICOM already de-identified).
    mapping : Mapping
        ``--subjects``: raw file SHA-256 or measurement ID → (patient ID, issuer).
    fastmri : Path, optional
        Also write fastMRI-layout training files here.
    """

    key: SecretKey
    rules: HeaderRules
    span: tuple[int, int]
    output: Path
    identities: Callable[[], IdentityIndex]
    mapping: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    fastmri: Path | None = None
    command: str = "convert"
    incremental: bool = True
    _converter: Converter | None = field(default=None, repr=False)

    @property
    def areas(self) -> dict[Area, Path]:
        areas = {Area.RELEASE: self.output}
        if self.fastmri is not None:
            areas[Area.FASTMRI] = self.fastmri
        return areas

    @property
    def key_fingerprint(self) -> str:
        return self.key.fingerprint

    def digest(self) -> str:
        mapping = sha256_of(json.dumps(sorted(self.mapping.items())).encode())
        parts = [__version__, self.rules.digest, list(self.span), self.fastmri is not None, mapping]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def setup(self, env: WorkerEnv) -> None:
        self._converter = Converter(
            self.key,
            self.rules,
            self.span,
            SubjectLookup(self.identities(), self.mapping),
            env.temp_dirs[Area.RELEASE],
            env.temp_dirs.get(Area.FASTMRI),
            env.progress,
        )

    def run(self, item: Item) -> StepResult:
        refused = not_a_file(item.path)
        if refused is not None:
            return refused
        converter = self._converter
        assert converter is not None, "setup() runs before the first input"
        # The input's SHA-256 (its opaque key, the seed of its output names) is
        # taken from the bytes the reader reads, on the other core: the file is read once.
        with InputHash(item.path) as digest:
            try:
                conversion = convert_input(item.path, digest, converter)
            except OSError as exc:
                if _is_ours(exc):
                    return result_of_error(exc, "", "input")  # raises StorageError
                unreadable = rejected(
                    Outcome.QUARANTINED, Reason.INPUT_IO_ERROR, type(exc).__name__
                )
                return _with_sha(unreadable, digest)
            except Exception as exc:
                return _with_sha(result_of_error(exc, "", "input"), digest)
            return _result(conversion, digest.hexdigest())


def _is_ours(exc: OSError) -> bool:
    return exc.errno in OWN_ERRNOS


def _with_sha(result: StepResult, digest: InputHash) -> StepResult:
    """A rejected input is named (and its quarantined copy keyed) by its hash."""
    try:
        return replace(result, sha256=digest.hexdigest())
    except OSError as exc:
        return rejected(Outcome.QUARANTINED, Reason.INPUT_IO_ERROR, type(exc).__name__)


def _result(conversion: Conversion, sha: str) -> StepResult:
    outputs: list[Candidate] = []
    links: list[LinkRow] = []
    facts = {
        f"input {conversion.kind}": 1,
        f"subject from {conversion.source.value}": 1,
        "measurements": 0,
        "noise measurements": 0,
        "acquisitions": 0,
        "fastMRI files": 0,
        "fastMRI skipped": 0,
    }
    for index, m in enumerate(conversion.measurements):
        outputs.append(
            Candidate(
                Area.RELEASE,
                m.relpath,
                os.fspath(m.temp_path),
                m.sha256,  # hashed by the writer while the file was fsynced
                durable=True,
            )
        )
        if m.fastmri_temp is not None and m.fastmri_relpath is not None:
            outputs.append(
                Candidate(
                    Area.FASTMRI,
                    m.fastmri_relpath,
                    os.fspath(m.fastmri_temp),
                    m.fastmri_sha256,  # hashed by the export while the file was fsynced
                    durable=True,
                )
            )
        links.append(LinkRow(f"{sha}#{index}", m.relpath, m.link))
        facts["measurements"] += 1
        facts["noise measurements"] += m.noise
        facts["acquisitions"] += m.acquisitions
        facts["fastMRI files"] += m.fastmri_relpath is not None
        facts["fastMRI skipped"] += bool(m.fastmri_skipped)
    # Written all the same; the private record says which measurement has no training file and why.
    skipped = [
        f"measurement {index + 1} of {len(conversion.measurements)}: {m.fastmri_skipped}"
        for index, m in enumerate(conversion.measurements)
        if m.fastmri_skipped
    ]
    return StepResult(
        Outcome.WRITTEN, sha, Reason.NO_FASTMRI_LAYOUT if skipped else None,
        Phi("; ".join(skipped)) if skipped else NO_DETAIL,
        outputs=tuple(outputs), links=tuple(links), facts=tuple(facts.items()),
    )  # fmt: skip


def convert_tree(
    source: Path,
    output: Path,
    key: SecretKey,
    private: PrivateStore,
    rules: HeaderRules,
    *,
    date_shift_days: tuple[int, int],
    subjects: Mapping[str, tuple[str, str]] | None = None,
    fastmri: Path | None = None,
    jobs: int | None = None,
    stall_seconds: float | None = None,
    options: RunOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """Convert every raw file under ``source`` into anonymized ISMRMRD under ``output``.

    Parameters
    ----------
    date_shift_days : (int, int)
        The DICOM profile's shift range: the same range gives a subject the
        same shift on both sides.
    subjects : Mapping, optional
        ``--subjects``: raw file SHA-256 or measurement ID → (patient ID, issuer).
    fastmri : Path, optional
        Also write fastMRI-layout training files for each image measurement.
    """
    from functools import partial

    from pipeline.private_store import PrivateStore

    options = options or RunOptions()
    if jobs is not None:
        options = replace(options, jobs=max(1, jobs))
    if stall_seconds is not None:
        options = replace(options, stall_seconds=stall_seconds)
    step = RawStep(
        key, rules, date_shift_days, output, partial(PrivateStore.reader, private.root),
        dict(subjects or {}), fastmri,
    )  # fmt: skip
    return run_batch(step, source, private, options, progress=progress)
