"""The deface stage: after de-identification, before the leak check.

Every DICOM series among the outputs of ``PROCESSED`` items (one folder of
``private/staging/dicom``) that ``rules/deface/head.yaml`` calls a head
volume is defaced in place (:func:`pipeline.deface.series.deface_series`),
and the items' output records get the new content hashes and sizes.  A head
series that cannot be assembled or whose registration fails the quality
check puts its items in the review queue (``deface-failed``); route then
sends them to ``NEEDS_REVIEW``, never to a release as they are.  Raw
k-space of a head scan is queued as ``head-kspace`` when the rules hold it.

A series already defaced (a rerun after a crash) is recognised by its marks
and only its records are brought up to date.  Nothing here names a file by
more than its keyed release path: the counts in :class:`DefaceReport` and
the codes are PHI-free.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.catalog import Catalog, OutputRecord
from pipeline.catalog.states import ItemState, ReviewReason
from pipeline.deface.rules import DefaceRules, HeadKspace
from pipeline.deface.series import SeriesOutcome, deface_series
from pipeline.read.content import file_sha256


@dataclass(frozen=True)
class DefaceReport:
    """PHI-free: series looked at, what became of them, and head raw data held."""

    enabled: bool
    series: int = 0
    head_volumes: int = 0
    defaced: int = 0
    already_defaced: int = 0
    to_review: int = 0
    verdicts: Mapping[str, int] = dataclasses.field(default_factory=dict)
    problems: Mapping[str, int] = dataclasses.field(default_factory=dict)
    head_kspace_held: int = 0
    seconds_per_volume: float = 0.0  # the slowest defaced series


def deface_processed(
    catalog: Catalog, run_id: int, staging: Path, rules: DefaceRules | None
) -> DefaceReport:
    """Deface the head volumes among the outputs of every ``PROCESSED`` item (``rules`` None: off)."""
    if rules is None:
        return DefaceReport(enabled=False)
    processed = [i.sha256 for i in catalog.items([ItemState.PROCESSED])]
    outputs = catalog.outputs_of(processed)
    series: dict[str, list[OutputRecord]] = {}
    for o in outputs:
        if o.area == "dicom":
            series.setdefault(o.relpath.rsplit("/", 1)[0], []).append(o)
    verdicts: Counter[str] = Counter()
    problems: Counter[str] = Counter()
    outcomes: Counter[SeriesOutcome] = Counter()
    updated: set[str] = set()
    review: set[str] = set()
    slowest = 0.0
    for folder in sorted(series):
        members = sorted(series[folder], key=lambda o: o.relpath)
        result = deface_series([staging / "dicom" / o.relpath for o in members], rules)
        verdicts[result.verdict.value] += 1
        outcomes[result.outcome] += 1
        if result.outcome in (SeriesOutcome.DEFACED, SeriesOutcome.ALREADY_DEFACED):
            updated.update(o.input_sha256 for o in members)
            slowest = max(slowest, result.seconds)
        elif result.outcome is SeriesOutcome.FAILED:
            problems[result.problem] += 1
            review.update(o.input_sha256 for o in members)
    _record_new_hashes(catalog, staging, outputs, updated)
    for sha in sorted(review):
        catalog.enqueue_review(sha, [ReviewReason.DEFACE_FAILED], run_id)
    held = _hold_head_kspace(catalog, run_id, staging, outputs, rules)
    return DefaceReport(
        enabled=True,
        series=len(series),
        head_volumes=verdicts["head-volume"] + verdicts["head-not-assembled"],
        defaced=outcomes[SeriesOutcome.DEFACED],
        already_defaced=outcomes[SeriesOutcome.ALREADY_DEFACED],
        to_review=outcomes[SeriesOutcome.FAILED],
        verdicts=dict(verdicts),
        problems=dict(problems),
        head_kspace_held=held,
        seconds_per_volume=round(slowest, 3),
    )


def _record_new_hashes(
    catalog: Catalog, staging: Path, outputs: Sequence[OutputRecord], inputs: set[str]
) -> None:
    """Every output of ``inputs`` recorded again with the content its staged file has now."""
    records = []
    for o in outputs:
        if o.input_sha256 not in inputs:
            continue
        path = staging / o.area / o.relpath
        records.append(dataclasses.replace(o, sha256=file_sha256(path), size=path.stat().st_size))
    catalog.record_outputs(records)


_WORD = re.compile(r"[a-z]+")
_RAW_FIELDS = ("bodyPartExamined", "protocolName", "seriesDescription")


def _hold_head_kspace(
    catalog: Catalog,
    run_id: int,
    staging: Path,
    outputs: Sequence[OutputRecord],
    rules: DefaceRules,
) -> int:
    """Queue every processed raw item whose ISMRMRD header says head, when the rules hold it."""
    if rules.head_kspace is HeadKspace.RELEASE:
        return 0
    held = 0
    for sha in sorted({o.input_sha256 for o in outputs if o.area == "raw"}):
        files = [staging / o.area / o.relpath for o in outputs if o.input_sha256 == sha]
        if any(_raw_is_head(f, rules) for f in files if f.suffix == ".h5"):
            catalog.enqueue_review(sha, [ReviewReason.HEAD_KSPACE], run_id)
            held += 1
    return held


def _raw_is_head(path: Path, rules: DefaceRules) -> bool:
    """Whether the ISMRMRD header of ``path`` names a head (body part or protocol words)."""
    import xml.etree.ElementTree as ET

    import h5py

    try:
        with h5py.File(path, "r") as h5:
            data = h5["dataset/xml"][()]
            text = data[0] if hasattr(data, "__len__") and not isinstance(data, bytes) else data
    except (OSError, KeyError):
        return False
    try:
        root = ET.fromstring(text.decode() if isinstance(text, bytes) else str(text))
    except ET.ParseError:
        return False
    values: dict[str, str] = {}
    for element in root.iter():
        name = element.tag.rsplit("}", 1)[-1]
        if name in _RAW_FIELDS and element.text:
            values[name] = element.text
    if values.get("bodyPartExamined", "").strip().upper() in rules.head.body_parts:
        return True
    words = _WORD.findall(" ".join(values.get(k, "") for k in _RAW_FIELDS[1:]).lower())
    return bool(set(words) & rules.head.anatomy_words)
