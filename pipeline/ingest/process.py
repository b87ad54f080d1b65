"""Run the library's steps on the new inputs and record in the catalog what each became.

The batch runner does the work exactly as ``mricurate deid`` and
``convert`` do (pool, watchdog, journal, quarantine), writing into the
staging area under ``private/``; this module chooses the inputs from the
catalog and turns each :class:`~pipeline.batch.step.StepResult` into the
item's next state and its recorded outputs.
"""

from __future__ import annotations

import enum
import os
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pipeline.batch.runner import RunOptions, run_batch
from pipeline.batch.step import Item, Step, StepResult
from pipeline.catalog import Catalog, OutputRecord, StateChange
from pipeline.catalog.states import InputKind, ItemState, ReviewReason
from pipeline.dicom.profile import Profile
from pipeline.ingest.discovery import IncomingFile
from pipeline.ingest.redactions import boxes_for, requeue_redacted
from pipeline.keys import SecretKey
from pipeline.pixels.blank import ManualBox, PixelCleaning
from pipeline.private_store import PrivateStore
from pipeline.raw.header_rules import HeaderRules
from pipeline.reasons import DOUBTS, Outcome, Reason
from pipeline.steps.dicom_file import DicomStep
from pipeline.steps.raw_file import RawStep


class InputGroup(enum.Enum):
    """Which step an input goes through (raw data after DICOM: raw finds its subject there)."""

    DICOM = "dicom"
    RAW = "raw"

    @property
    def kinds(self) -> frozenset[InputKind]:
        if self is InputGroup.RAW:
            return frozenset({InputKind.TWIX, InputKind.ISMRMRD})
        # Unknown content goes through the DICOM step, which says why it is not DICOM.
        return frozenset({InputKind.DICOM, InputKind.DICOMDIR, InputKind.OTHER})


# Outputs that a person should see before they are released, from a step's facts.
_PIXEL_FACT = "pixels cleaned"
_HELD_REVIEW = {
    Reason.MAY_CARRY_BURNED_IN_TEXT: ReviewReason.PIXEL_FINDINGS,
    Reason.TEXT_NOT_LOCATED: ReviewReason.PIXEL_FINDINGS,
    Reason.TOO_MUCH_TEXT: ReviewReason.PIXEL_FINDINGS,
    Reason.SUBJECT_UNKNOWN: ReviewReason.CLEANING_DOUBT,
}
_DOUBT_REVIEW = {
    Reason.FREE_TEXT_NAMED_SUBJECT: ReviewReason.CLEANING_DOUBT,
    Reason.UNKNOWN_PRIVATE_CREATOR_KEPT: ReviewReason.UNKNOWN_PRIVATE_CREATOR,
}
assert set(_DOUBT_REVIEW) == DOUBTS, "every doubt needs its review reason"
# The ingest writes what may carry burned-in text as it is (the step's
# keep_burned_in): its reason comes back as a doubt, and a person sees the
# file itself, which an approval then releases.
_REVIEW_OF = {**_HELD_REVIEW, **_DOUBT_REVIEW}


@dataclass(frozen=True)
class Processing:
    """What the steps of one ingest run need; built once per run by the flow."""

    key: SecretKey
    profile: Profile
    header_rules: HeaderRules
    cleaning: PixelCleaning | None
    fastmri: bool
    staging: Path
    incoming: Path
    options: RunOptions
    ruleset_version: str
    # sha256 of each rule file the version stands for (run.rule_file_hashes).
    rule_files: Mapping[str, str] = field(default_factory=dict)

    def area_folder(self, area: str) -> Path:
        return self.staging / area


@dataclass(frozen=True)
class StageReport:
    """PHI-free account of one stage: counts by outcome and reason, and the run's opaque id."""

    inputs: int
    outcomes: Mapping[str, int]
    reasons: Mapping[str, int]
    review: int
    runner_run: str = ""
    failure: str = ""
    missing: int = 0  # NEW items whose file is no longer in incoming/ (done when it is back)
    redacted: int = 0  # processed with a reviewer's redaction not yet checked (back to review)
    # The steps' PHI-free facts added up (what the rules did: pipeline.dicom.tally).
    facts: Mapping[str, int] = field(default_factory=dict)


def process_new(
    group: InputGroup,
    processing: Processing,
    catalog: Catalog,
    store: PrivateStore,
    run_id: int,
    files: Mapping[str, IncomingFile],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> StageReport:
    """Process every ``NEW`` item of ``group`` whose file is in ``incoming/``; record the results.

    An item whose file is gone stays ``NEW`` (nothing is lost: it is done
    when its file is back); a file whose content changed since discovery is
    left to the next run's discovery.  Inputs quarantined by a reviewer's
    redaction come back as ``NEW`` first and are processed with its boxes
    (:mod:`pipeline.ingest.redactions`).
    """
    redactions: dict[str, tuple[ManualBox, ...]] = {}
    if group is InputGroup.DICOM:
        requeue_redacted(catalog, run_id, group.kinds)
    waiting = [item for item in catalog.items([ItemState.NEW]) if item.kind in group.kinds]
    todo = [files[item.sha256] for item in waiting if item.sha256 in files]
    missing = len(waiting) - len(todo)  # registered, but the file left incoming/: stays NEW
    if not todo:
        return StageReport(0, {}, {}, 0, missing=missing)
    unchecked: set[str] = set()
    if group is InputGroup.DICOM:
        redactions = boxes_for(catalog, [f.sha256 for f in todo])
        unchecked = catalog.awaiting_redaction() & set(redactions)
    step = _step(group, processing, store, redactions)
    results: list[tuple[IncomingFile, StepResult]] = []

    def collect(item: Item, result: StepResult) -> None:
        results.append((todo[item.index], result))

    summary = run_batch(
        step, processing.incoming, store, processing.options,
        on_result=collect, progress=progress, inputs=[f.path for f in todo],
    )  # fmt: skip
    review = _record(catalog, store, run_id, processing, step, results, unchecked)
    outcomes = Counter(r.outcome.value for _, r in results)
    reasons = Counter(r.reason.value for _, r in results if r.reason is not None)
    return StageReport(
        len(todo), dict(outcomes), dict(reasons), review, summary.run_id, summary.failure,
        missing, redacted=len(unchecked), facts=dict(summary.facts),
    )  # fmt: skip


def _step(
    group: InputGroup,
    processing: Processing,
    store: PrivateStore,
    redactions: Mapping[str, tuple[ManualBox, ...]],
) -> Step:
    if group is InputGroup.DICOM:
        # keep_burned_in: the review queue is the person who looks (an
        # approval must have a file to release, a redaction a file to blank).
        return DicomStep(
            processing.key, processing.profile, processing.area_folder("dicom"),
            keep_burned_in=True, cleaning=processing.cleaning, redactions=dict(redactions),
        )  # fmt: skip
    return RawStep(
        processing.key, processing.header_rules, processing.profile.date_shift_days,
        processing.area_folder("raw"), partial(PrivateStore.reader, store.root),
        fastmri=processing.area_folder("fastmri") if processing.fastmri else None,
    )  # fmt: skip


def _record(
    catalog: Catalog,
    store: PrivateStore,
    run_id: int,
    processing: Processing,
    step: Step,
    results: Sequence[tuple[IncomingFile, StepResult]],
    redacted: Collection[str] = frozenset(),
) -> int:
    """Outputs and next states of every finished input; returns how many await review.

    An input of ``redacted`` (processed with a redaction no one has checked
    yet) that was written goes back to review as REDACTED.
    """
    finished = [(f, r) for f, r in results if r.sha256 in ("", f.sha256)]  # others changed
    made = [f.sha256 for f, r in finished if r.outcome in (Outcome.WRITTEN, Outcome.UNCHANGED)]
    catalog.record_outputs(_outputs(store, step, processing, made, run_id))
    first: list[StateChange] = []
    held: list[tuple[str, Reason]] = []
    doubts: dict[str, list[ReviewReason]] = {}
    for incoming, result in finished:
        sha, reason = incoming.sha256, result.reason
        if result.outcome in (Outcome.WRITTEN, Outcome.UNCHANGED):
            first.append(StateChange(sha, ItemState.PROCESSED, reason.value if reason else None))
            found = review_reasons_of(result)
            if sha in redacted:
                found.insert(0, ReviewReason.REDACTED)
            if found:
                doubts[sha] = found
        elif result.outcome is Outcome.HELD_BACK and reason is not None:
            first.append(StateChange(sha, ItemState.PROCESSED, reason.value))
            held.append((sha, reason))
        else:
            why = reason or Reason.INTERNAL_ERROR
            first.append(StateChange(sha, ItemState.QUARANTINED, why.value))
    catalog.transition(first, run_id)
    if held:
        catalog.transition(
            [StateChange(sha, ItemState.NEEDS_REVIEW, reason.value) for sha, reason in held],
            run_id,
        )
    for sha, reason in held:
        catalog.enqueue_review(sha, [_HELD_REVIEW.get(reason, ReviewReason.CLEANING_DOUBT)], run_id)
    for sha, reasons in doubts.items():
        catalog.enqueue_review(sha, reasons, run_id)
    return len(held) + len(doubts)


def review_reasons_of(result: StepResult) -> list[ReviewReason]:
    """Why a person should see this output before it is released (from the step's facts)."""
    found: list[ReviewReason] = []
    facts = dict(result.facts)
    if facts.get(_PIXEL_FACT):
        found.append(ReviewReason.PIXEL_FINDINGS)
    found += [_REVIEW_OF[doubt] for doubt in result.doubts]
    return list(dict.fromkeys(found))


def _outputs(
    store: PrivateStore,
    step: Step,
    processing: Processing,
    shas: Sequence[str],
    run_id: int,
) -> list[OutputRecord]:
    roots = {os.fsencode(path.resolve()): path.name for path in step.areas.values()}
    subjects = store.subjects_of_inputs(shas)
    records = []
    for input_sha, root, relpath, output_sha in store.outputs_of_inputs(shas):
        area = roots.get(root)
        if area is None:
            continue  # an output of this content made by a plain `deid` elsewhere
        size = (processing.area_folder(area) / relpath).stat().st_size
        records.append(
            OutputRecord(
                input_sha,
                area,
                relpath,
                output_sha,
                size,
                subjects.get(input_sha, ""),
                processing.ruleset_version,
                processing.key.fingerprint,
                run_id,
            )
        )
    return records
