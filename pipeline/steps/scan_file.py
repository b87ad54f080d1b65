"""The ``scan`` step: one file's pixels, overlays and icons read for burned-in text.

The finding (PHI: the words read, the input's path) travels back to the
parent as the result's private payload; the caller writes the findings into
the private location.  A file that cannot be read or decoded is quarantined
with its reason and still gets a finding (status ``error``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import __version__
from pipeline.batch.runner import RunOptions, RunSummary, run_batch
from pipeline.batch.step import Area, Item, StepResult, WorkerEnv, result_of_error
from pipeline.phi import Phi
from pipeline.pixels.engines import EngineName, make_engine
from pipeline.pixels.ocr import OcrEngine
from pipeline.pixels.regions import RegionRules, load_region_rules
from pipeline.pixels.scan import (
    ScanFinding,
    ScanStatus,
    failed_finding,
    relative_path,
    scan_data,
)
from pipeline.read.content import sha256_of
from pipeline.read.dicom import quiet_pydicom
from pipeline.reasons import Outcome, Reason

if TYPE_CHECKING:
    from pipeline.private_store import PrivateStore


@dataclass
class ScanStep:
    """Scan files for burned-in text (:class:`~pipeline.batch.step.Step`).

    Parameters
    ----------
    engine : OcrEngine
        Each worker process loads its own models once, on first use.
    source : Path
        SOURCE, resolved: findings name inputs relative to it.
    prefilter : bool
        Let the pre-filter skip images it judges free of text.
    rules : RegionRules, optional
        The pixel rules whose header priors apply (by default the shipped
        ``rules/pixels``).
    """

    engine: OcrEngine
    source: Path
    prefilter: bool = True
    rules: RegionRules = field(default_factory=load_region_rules)
    command: str = "scan"
    incremental: bool = False
    key_fingerprint: str = ""
    _env: WorkerEnv | None = field(default=None, repr=False)

    @property
    def areas(self) -> dict[Area, Path]:
        return {}

    def digest(self) -> str:
        parts = [__version__, self.engine.name, self.prefilter, self.rules.digest]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def setup(self, env: WorkerEnv) -> None:
        quiet_pydicom()
        self._env = env

    def run(self, item: Item) -> StepResult:
        env = self._env
        assert env is not None, "setup() runs before the first input"
        relative = relative_path(item.path, self.source)
        if not item.path.is_file():
            what = "a folder that cannot be listed" if item.path.is_dir() else "not a regular file"
            return _failed(
                failed_finding(relative, "", f"{what}: nothing to scan"),
                Reason.NOT_A_REGULAR_FILE,
                "",
            )
        try:
            data = item.path.read_bytes()
        except OSError as exc:
            finding = failed_finding(relative, "", f"unreadable ({type(exc).__name__})")
            return _failed(finding, Reason.INPUT_IO_ERROR, "")
        sha = sha256_of(data)
        key = sha[:12]
        try:
            finding = scan_data(
                data, key, relative, self.engine, prefilter=self.prefilter,
                max_inflated=env.max_inflated_bytes, progress=env.progress, rules=self.rules,
            )  # fmt: skip
        except Exception as exc:
            result = result_of_error(exc, sha, f"input {key}")
            finding = failed_finding(relative, key, result.detail.reveal())
            return replace(result, payload=Phi(finding))
        status = "flagged" if finding.status is ScanStatus.FLAGGED else "clear"
        facts = [
            (status, 1),
            ("images read by OCR", finding.images_scanned),
            ("images skipped by the pre-filter", finding.ocr_skipped_by_prefilter),
            (
                "show their own header PHI",
                int(any(m.kind.from_header for m in finding.phi_matches)),
            ),
        ]
        return StepResult(Outcome.SCANNED, sha, facts=tuple(facts), payload=Phi(finding))


def _failed(finding: ScanFinding, reason: Reason, sha: str) -> StepResult:
    return StepResult(
        Outcome.QUARANTINED, sha, reason, Phi(finding.error or ""), payload=Phi(finding)
    )


def scan_tree(
    source: Path,
    engine: OcrEngine | EngineName | str,
    private: PrivateStore,
    *,
    jobs: int | None = None,
    prefilter: bool = True,
    options: RunOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[RunSummary, list[ScanFinding]]:
    """Scan every file under ``source`` (any name); one finding per file, in discovery order.

    The engine is checked once up front (a missing tesseract is a setup
    error, not a file's).  ``engine`` is an engine or its name for
    :func:`~pipeline.pixels.engines.make_engine`.
    """
    if isinstance(engine, (str, EngineName)):
        engine = make_engine(engine)
    _ = engine.name  # fails early and clearly when the engine is not installed
    options = options or RunOptions()
    if jobs is not None:
        options = replace(options, jobs=max(1, jobs))
    findings: list[ScanFinding] = []

    def collect(item: Item, result: StepResult) -> None:
        if result.payload is not None:
            finding = result.payload.reveal()
            assert isinstance(finding, ScanFinding)
            findings.append(finding)

    step = ScanStep(engine, source.resolve(), prefilter)
    summary = run_batch(step, source, private, options, on_result=collect, progress=progress)
    return summary, findings
