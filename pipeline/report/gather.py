"""Build the :class:`~pipeline.report.model.AuditReport` from the catalog and the workspace.

Counts of what happened to inputs come from the catalog's transitions (the
record of every change of state, with its run and reason code); what the
stages measured (the leak check, the rules' edits, seconds) comes from each
run's PHI-free summary; what a release holds comes from its manifest.  A run
still open (the ingest flow reporting on itself) is given with its summary,
which the catalog records only when the run ends.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pipeline.catalog import (
    Catalog,
    DecisionRecord,
    ItemState,
    ItemTransition,
    ReviewItem,
    ReviewReason,
    RunRecord,
)
from pipeline.dicom.tally import fold_edits, parse_default, parse_edit
from pipeline.reasons import Reason
from pipeline.release.manifest import MANIFEST_FOLDER, PARQUET_NAME, read_manifest
from pipeline.release.versions import latest_version
from pipeline.report.model import (
    AuditReport,
    BacklogPoint,
    Count,
    DecisionLine,
    DefaceAccount,
    LeakCheckResult,
    PhiView,
    PixelAccount,
    ReleaseContents,
    ReleaseLine,
    ReviewAccount,
    RuleAccount,
    RuleEdit,
    RuleSet,
    RunAccount,
    StatePoint,
)
from pipeline.workspace import Workspace

#: Why a file's pixels kept it from release: text signalled or found that could not be blanked.
PIXEL_REASONS = frozenset(
    r.value
    for r in (Reason.MAY_CARRY_BURNED_IN_TEXT, Reason.TEXT_NOT_LOCATED, Reason.TOO_MUCH_TEXT)
)
# The ingest writes such files as they are, for review: counted by their doubt's fact.
_PIXEL_REVIEW_FACTS = {Reason(r).review_fact: r for r in PIXEL_REASONS}
_PIXEL_FACT = "pixels "
_STAGES = ("dicom", "raw")
NOT_RECORDED = "not recorded"


def build_report(
    catalog: Catalog,
    workspace: Workspace,
    *,
    run_id: int | None = None,
    open_run: tuple[int, Mapping[str, object]] | None = None,
    now: dt.datetime | None = None,
) -> AuditReport:
    """The report of the whole workspace, or of one run.

    Parameters
    ----------
    run_id : int, optional
        Report on this run only (its account, its rules' edits, its queue
        entries); the catalog-wide totals and plots stay whole.
    open_run : (int, mapping), optional
        A run not yet finished and its summary (the flow's own run).

    The reviewers' views of PHI come from the catalog's access log (what the
    review app recorded): who saw what kind of PHI and of how many inputs,
    never which.
    """
    now = now or dt.datetime.now(dt.UTC)
    runs = catalog.runs()
    summaries = {r.run_id: r.summary or {} for r in runs}
    if open_run is not None:
        summaries[open_run[0]] = open_run[1]
    if run_id is not None and run_id not in summaries:
        raise LookupError(f"there is no run {run_id} in the catalog (see the report of all runs)")
    history = catalog.every_transition()
    by_run: dict[int, list[ItemTransition]] = {}
    for entry in history:
        if entry.transition.run_id is not None:
            by_run.setdefault(entry.transition.run_id, []).append(entry)
    chosen = [r for r in runs if run_id is None or r.run_id == run_id]
    accounts = tuple(_run_account(r, by_run.get(r.run_id, []), summaries[r.run_id]) for r in chosen)
    scope = [summaries[r.run_id] for r in chosen]
    entries = [e for e in catalog.review_entries() if run_id is None or e.run_id == run_id]
    decisions = catalog.every_decision()
    items = catalog.items()
    releases = catalog.releases()
    return AuditReport(
        title=f"{workspace.config.release_name}: audit report",
        generated_at=now,
        run_id=run_id,
        runs=accounts,
        items_by_state=_counts(Counter(i.state.value for i in items), order=_state_order()),
        items_by_kind=_counts(Counter(i.kind.value for i in items)),
        quarantined_by_reason=_counts(
            Counter(i.reason or NOT_RECORDED for i in items if i.state is ItemState.QUARANTINED)
        ),
        rules=_rules(chosen, scope),
        pixels=_pixels(scope, entries, decisions),
        review=_review(entries, decisions),
        phi_views=tuple(
            PhiView(v.reviewer, v.what.value, v.at, v.sha256) for v in catalog.phi_views()
        ),
        releases=tuple(
            ReleaseLine(
                r.version,
                r.created_at,
                r.run_id,
                r.files,
                _counts({k: _int(v) for k, v in r.changelog.items() if _is_count(v)}, order=None),
            )
            for r in releases
        ),
        latest_release=_release_contents(workspace.release),
        withdrawn_subjects=len({w.subject for w in catalog.withdrawals()}),
        states_over_time=_states_over_time(runs, history, now),
        backlog_over_time=_backlog(runs, catalog.review_entries(), decisions, now),
    )


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _state_order() -> list[str]:
    return [s.value for s in ItemState]


def _counts(counter: Mapping[str, int], order: Sequence[str] | None = None) -> tuple[Count, ...]:
    """Non-zero counts, in ``order`` where given, else largest first."""
    if order is not None:
        known = [Count(k, counter[k]) for k in order if counter.get(k)]
        rest = sorted((k for k in counter if k not in order and counter[k]), key=str)
        return tuple(known + [Count(k, counter[k]) for k in rest])
    return tuple(
        Count(k, n) for k, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])) if n
    )


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _run_account(
    run: RunRecord, moves: Sequence[ItemTransition], summary: Mapping[str, object]
) -> RunAccount:
    to = Counter(m.transition.to_state for m in moves)
    quarantined = Counter(
        m.transition.reason or NOT_RECORDED
        for m in moves
        if m.transition.to_state is ItemState.QUARANTINED
    )
    leaks = _mapping(summary.get("leak_check"))
    leak = (
        LeakCheckResult(
            _int(leaks.get("checked")),
            _int(leaks.get("outputs")),
            _int(leaks.get("failed")),
            _int(leaks.get("unverifiable")),
            _counts({str(k): _int(v) for k, v in _mapping(leaks.get("hits")).items()}),
        )
        if leaks
        else None
    )
    seconds = _mapping(summary.get("seconds"))
    total = (
        sum(float(v) for v in seconds.values() if isinstance(v, int | float)) if seconds else None
    )
    version = str(_mapping(summary.get("release")).get("version", "") or "")
    deface = _mapping(summary.get("deface"))
    return RunAccount(
        run_id=run.run_id,
        command=run.command,
        status=run.status.value,
        started_at=run.started_at,
        finished_at=run.finished_at,
        ruleset_version=run.ruleset_version,
        came_in=sum(
            1
            for m in moves
            if m.transition.from_state is None and m.transition.to_state is ItemState.NEW
        ),
        processed=to[ItemState.PROCESSED],
        released=to[ItemState.RELEASED],
        quarantined=_counts(quarantined),
        to_review=to[ItemState.NEEDS_REVIEW],
        withdrawn=to[ItemState.WITHDRAWN],
        version=version,
        leak_check=leak,
        seconds=round(total, 3) if total is not None else None,
        deface=_deface(deface) if deface else None,
    )


def _deface(block: Mapping[str, object]) -> DefaceAccount:
    """The run summary's ``deface`` block (:class:`pipeline.ingest.deface.DefaceReport`)."""
    seconds = block.get("seconds_per_volume")
    return DefaceAccount(
        enabled=block.get("enabled") is True,
        series=_int(block.get("series")),
        head_volumes=_int(block.get("head_volumes")),
        defaced=_int(block.get("defaced")),
        already_defaced=_int(block.get("already_defaced")),
        failed=_int(block.get("to_review")),
        problems=_counts({str(k): _int(v) for k, v in _mapping(block.get("problems")).items()}),
        head_kspace_held=_int(block.get("head_kspace_held")),
        seconds_per_volume=float(seconds) if isinstance(seconds, int | float) else 0.0,
    )


def step_facts(summary: Mapping[str, object]) -> list[tuple[str, int]]:
    """The steps' facts a run summary holds (DICOM and raw stages)."""
    facts: list[tuple[str, int]] = []
    for stage in _STAGES:
        for name, count in _mapping(_mapping(summary.get(stage)).get("facts")).items():
            if _is_count(count):
                facts.append((str(name), _int(count)))
    return facts


def _rules(runs: Sequence[RunRecord], summaries: Sequence[Mapping[str, object]]) -> RuleAccount:
    facts = [fact for summary in summaries for fact in step_facts(summary)]
    edits = fold_edits(facts)
    defaults: Counter[str] = Counter()
    other: Counter[str] = Counter()
    for name, count in facts:
        what = parse_default(name)
        if what is not None:
            defaults[what] += count
        elif parse_edit(name) is None and not name.startswith(_PIXEL_FACT):
            other[name] += count
    sets: dict[str, tuple[dict[str, str], list[int]]] = {}
    for run, summary in zip(runs, summaries, strict=True):
        rules = _mapping(summary.get("rules"))
        version = str(rules.get("version") or run.ruleset_version)
        files, ids = sets.setdefault(version, ({}, []))
        files.update({str(k): str(v) for k, v in _mapping(rules.get("files")).items()})
        ids.append(run.run_id)
    by_action: Counter[str] = Counter()
    for edit, count in edits.items():
        by_action[edit.action] += count
    ordered = sorted(edits.items(), key=lambda kv: (-kv[1], kv[0].rule, kv[0].attribute))
    return RuleAccount(
        rule_sets=tuple(
            RuleSet(v, dict(sorted(f.items())), tuple(i)) for v, (f, i) in sets.items()
        ),
        edits=tuple(RuleEdit(e.rule, e.attribute, e.action, n) for e, n in ordered),
        by_action=_counts(by_action),
        by_default=_counts(defaults),
        other_facts=_counts(other),
    )


def _latest(decisions: Iterable[DecisionRecord]) -> dict[int, DecisionRecord]:
    latest: dict[int, DecisionRecord] = {}
    for decision in decisions:  # oldest first: the last one stands
        latest[decision.queue_id] = decision
    return latest


def _pixels(
    summaries: Sequence[Mapping[str, object]],
    entries: Sequence[ReviewItem],
    decisions: Sequence[DecisionRecord],
) -> PixelAccount:
    outcomes: Counter[str] = Counter()
    held: Counter[str] = Counter()
    for summary in summaries:
        for name, count in step_facts(summary):
            if name.startswith(_PIXEL_FACT):
                outcomes[name[len(_PIXEL_FACT) :]] += count
            elif name in _PIXEL_REVIEW_FACTS:
                held[_PIXEL_REVIEW_FACTS[name]] += count
        for reason, number in _mapping(_mapping(summary.get("dicom")).get("reasons")).items():
            if reason in PIXEL_REASONS:
                held[str(reason)] += _int(number)
    pixel_entries = [e for e in entries if ReviewReason.PIXEL_FINDINGS in e.reasons]
    latest = _latest(decisions)
    decided = Counter(
        latest[e.queue_id].decision.value for e in pixel_entries if e.queue_id in latest
    )
    return PixelAccount(
        outcomes=_counts(outcomes),
        held_back=_counts(held),
        queued=len(pixel_entries),
        decided=_counts(decided),
        pending=sum(1 for e in pixel_entries if e.queue_id not in latest),
    )


def _review(entries: Sequence[ReviewItem], decisions: Sequence[DecisionRecord]) -> ReviewAccount:
    wanted = {e.queue_id: e for e in entries}
    mine = [d for d in decisions if d.queue_id in wanted]
    latest = _latest(mine)
    return ReviewAccount(
        queued=len(entries),
        pending=sum(1 for e in entries if e.queue_id not in latest),
        by_reason=_counts(Counter(r.value for e in entries for r in e.reasons)),
        decisions=tuple(
            DecisionLine(
                d.queue_id,
                d.reviewer,
                d.decision.value,
                d.decided_at,
                d.ruleset_version,
                tuple(r.value for r in wanted[d.queue_id].reasons),
                bool(d.reason.strip()),
            )
            for d in mine
        ),
        by_decision=_counts(Counter(d.decision.value for d in latest.values())),
        by_reviewer=_counts(Counter(d.reviewer for d in mine)),
    )


def _release_contents(release_root: Path) -> ReleaseContents | None:
    version = latest_version(release_root)
    if version is None:
        return None
    path = release_root / version / MANIFEST_FOLDER / PARQUET_NAME
    rows = read_manifest(path) if path.is_file() else []
    return ReleaseContents(
        version=version,
        files=len(rows),
        subjects=len({r.subject for r in rows}),
        by_area=_counts(Counter(r.area.value for r in rows)),
        by_acquisition=_counts(Counter(r.acquisition or NOT_RECORDED for r in rows)),
        by_field_strength=_counts(
            Counter(
                f"{r.field_strength_t:g} T" if r.field_strength_t is not None else NOT_RECORDED
                for r in rows
            )
        ),
        by_modality=_counts(Counter(r.modality or NOT_RECORDED for r in rows)),
    )


def _moments(runs: Sequence[RunRecord], now: dt.datetime) -> list[tuple[dt.datetime, str]]:
    """The end of every run, then now: where the plots over time have a point."""
    points = [(r.finished_at or r.started_at, f"run {r.run_id}") for r in runs]
    points.sort(key=lambda p: p[0])
    return [*points, (now, "now")]


def _states_over_time(
    runs: Sequence[RunRecord], history: Sequence[ItemTransition], now: dt.datetime
) -> tuple[StatePoint, ...]:
    ordered = sorted(history, key=lambda e: e.transition.at)
    state: dict[str, ItemState] = {}
    position = 0
    points: list[StatePoint] = []
    for at, label in _moments(runs, now):
        while position < len(ordered) and ordered[position].transition.at <= at:
            entry = ordered[position]
            state[entry.sha256] = entry.transition.to_state
            position += 1
        counts = Counter(s.value for s in state.values())
        points.append(StatePoint(at, label, _counts(counts, order=_state_order())))
    return tuple(points)


def _backlog(
    runs: Sequence[RunRecord],
    entries: Sequence[ReviewItem],
    decisions: Sequence[DecisionRecord],
    now: dt.datetime,
) -> tuple[BacklogPoint, ...]:
    first: dict[int, dt.datetime] = {}
    for decision in decisions:
        first.setdefault(decision.queue_id, decision.decided_at)
    return tuple(
        BacklogPoint(
            at,
            label,
            sum(
                1
                for e in entries
                if e.queued_at <= at and not (e.queue_id in first and first[e.queue_id] <= at)
            ),
        )
        for at, label in _moments(runs, now)
    )
