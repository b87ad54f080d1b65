"""The audit report's model: what an IRB or data-protection officer is shown, and nothing else.

Every field is a count, a stable code, a version, a hash, a time or a
staff member's name (reviewers, who are not patients).  A reviewer's words
(a decision's reason) are free text that may quote a patient, so the model
keeps only whether there were words; an input is never named, not even by
its content hash (a hash of an original lets whoever holds it confirm that
it is in the dataset).  The HTML page, the Prefect artifacts and the tests
all read this one model.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Count:
    """A labelled number (a state, a reason, an action, an acquisition type)."""

    label: str
    count: float  # a number of things, or a rate (files per second)


@dataclass(frozen=True)
class LeakCheckResult:
    """What the run's leak check found (``hits``: by kind of identifier, never a value)."""

    checked: int
    outputs: int
    failed: int
    unverifiable: int
    hits: tuple[Count, ...]

    @property
    def passed(self) -> bool:
        return self.failed == 0 and self.unverifiable == 0


@dataclass(frozen=True)
class DefaceAccount:
    """What defacing did in one run, from its summary's ``deface`` block (counts and codes)."""

    enabled: bool
    series: int  # DICOM series looked at
    head_volumes: int  # of them, what the rules call head volumes
    defaced: int
    already_defaced: int  # defaced by an earlier run (a rerun after a crash)
    failed: int  # head volumes sent to review as deface-failed
    problems: tuple[Count, ...]  # why they failed, by stable code
    head_kspace_held: int  # raw k-space of head scans held for review
    seconds_per_volume: float  # the slowest defaced series


@dataclass(frozen=True)
class RunAccount:
    """One run: what came in, what became of it, from the catalog's transitions."""

    run_id: int
    command: str
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    ruleset_version: str
    came_in: int  # inputs registered by this run (new content)
    processed: int
    released: int  # inputs moved to RELEASED
    quarantined: tuple[Count, ...]  # by reason code
    to_review: int  # inputs moved to NEEDS_REVIEW
    withdrawn: int  # inputs moved to WITHDRAWN
    version: str  # the release this run published ("" for none)
    leak_check: LeakCheckResult | None  # None: the run recorded none (not an ingest run)
    seconds: float | None  # wall seconds of its stages (None: not recorded)
    deface: DefaceAccount | None = None  # None: the run recorded no deface stage

    @property
    def quarantined_total(self) -> int:
        return int(sum(c.count for c in self.quarantined))

    @property
    def files_per_second(self) -> float | None:
        if not self.seconds or not self.processed:
            return None
        return self.processed / self.seconds


@dataclass(frozen=True)
class RuleEdit:
    """How many elements one rule changed in one attribute, by one action."""

    rule: str
    attribute: str
    action: str
    count: int


@dataclass(frozen=True)
class RuleSet:
    """A rule-set version and the sha256 of each file it stands for."""

    version: str
    files: Mapping[str, str]  # rule file -> sha256 (empty: not recorded by that run)
    runs: tuple[int, ...]


@dataclass(frozen=True)
class RuleAccount:
    """What the rules did, over the runs in scope."""

    rule_sets: tuple[RuleSet, ...]
    edits: tuple[RuleEdit, ...]  # by count, largest first
    by_action: tuple[Count, ...]
    by_default: tuple[Count, ...]  # what each VR default decided ("PN empty")
    other_facts: tuple[Count, ...]  # the steps' other facts (vendor pre-steps, raw conversion)

    @property
    def elements_changed(self) -> int:
        return sum(e.count for e in self.edits)


@dataclass(frozen=True)
class PixelAccount:
    """Burned-in text: what the pixel scan did, and what became of those files."""

    outcomes: tuple[Count, ...]  # "cleaned", "not cleaned (kept for review)", ...
    # By reason code: text signalled or found that could not be blanked (held
    # back by a plain run; written as it is and queued for review by ingest).
    held_back: tuple[Count, ...]
    queued: int  # queue entries for pixel findings
    decided: tuple[Count, ...]  # their latest decisions
    pending: int


@dataclass(frozen=True)
class DecisionLine:
    """One decision: who, what, when; whether they gave a reason (never the words)."""

    queue_id: int
    reviewer: str
    decision: str
    decided_at: dt.datetime
    ruleset_version: str
    queue_reasons: tuple[str, ...]
    with_reason: bool


@dataclass(frozen=True)
class ReviewAccount:
    """The review queue and every decision taken on it."""

    queued: int
    pending: int
    by_reason: tuple[Count, ...]
    decisions: tuple[DecisionLine, ...]
    by_decision: tuple[Count, ...]
    by_reviewer: tuple[Count, ...]

    @property
    def decisions_with_reason(self) -> int:
        return sum(d.with_reason for d in self.decisions)


@dataclass(frozen=True)
class PhiView:
    """A reviewer's view of PHI (an item's image or original header), from the access log."""

    reviewer: str
    what: str
    at: dt.datetime
    # Which input, to count distinct inputs per reviewer; never rendered (an
    # input's content hash is opaque, but the report names no input at all).
    input: str = field(repr=False, default="")


@dataclass(frozen=True)
class ReleaseLine:
    """One published version and its changelog's counts."""

    version: str
    created_at: dt.datetime
    run_id: int
    files: int
    changes: tuple[Count, ...]


@dataclass(frozen=True)
class ReleaseContents:
    """What the latest release holds, from its manifest (``manifests/files.parquet``)."""

    version: str
    files: int
    subjects: int
    by_area: tuple[Count, ...]
    by_acquisition: tuple[Count, ...]
    by_field_strength: tuple[Count, ...]
    by_modality: tuple[Count, ...]


@dataclass(frozen=True)
class StatePoint:
    """Inputs per state at one moment (the end of a run, or now)."""

    at: dt.datetime
    label: str
    states: tuple[Count, ...]


@dataclass(frozen=True)
class BacklogPoint:
    """Queue entries waiting for a decision at one moment."""

    at: dt.datetime
    label: str
    pending: int


@dataclass(frozen=True)
class AuditReport:
    """The whole report (``run_id``: the one run it is about, or None for all of them)."""

    title: str
    generated_at: dt.datetime
    run_id: int | None
    runs: tuple[RunAccount, ...]
    items_by_state: tuple[Count, ...]  # now, over the whole catalog
    items_by_kind: tuple[Count, ...]
    quarantined_by_reason: tuple[Count, ...]  # inputs quarantined now, by reason
    rules: RuleAccount
    pixels: PixelAccount
    review: ReviewAccount
    phi_views: tuple[PhiView, ...]
    releases: tuple[ReleaseLine, ...]
    latest_release: ReleaseContents | None
    withdrawn_subjects: int
    states_over_time: tuple[StatePoint, ...]
    backlog_over_time: tuple[BacklogPoint, ...]

    @property
    def total_in(self) -> int:
        return sum(r.came_in for r in self.runs)
