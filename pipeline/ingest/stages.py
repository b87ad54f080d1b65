"""The seven stages of an ingest run, each a call on an open :class:`IngestRun`.

The Prefect flow (:mod:`flows.ingest`) wraps each in a task; :mod:`pipeline.ingest.once`
calls them in the same order without Prefect.  Both time them with a
:class:`Clock` and report with :func:`summary`, so the two runs say the same.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pipeline.dicom.tally import for_people
from pipeline.ingest.deface import DefaceReport, deface_processed
from pipeline.ingest.discovery import Discovery, discover_incoming
from pipeline.ingest.leakcheck import LeakReport, check_processed
from pipeline.ingest.process import InputGroup, StageReport, process_new
from pipeline.ingest.publishing import PublishReport, publish_verified
from pipeline.ingest.quarantine import write_account
from pipeline.ingest.route import RouteReport, route
from pipeline.ingest.run import IngestRun

R = TypeVar("R")
Progress = Callable[[int, int], None]


def discover(run: IngestRun) -> Discovery:
    quiet = run.workspace.config.quiet_seconds
    return discover_incoming(run.workspace.incoming, run.catalog, run.run_id, quiet_seconds=quiet)


def process(
    group: InputGroup, run: IngestRun, found: Discovery, progress: Progress | None = None
) -> StageReport:
    return process_new(
        group, run.processing, run.catalog, run.store, run.run_id, found.files, progress=progress
    )


def deface(run: IngestRun) -> DefaceReport:
    """Remove the face from head volumes in staging (after de-identification, before the leak check)."""
    return deface_processed(run.catalog, run.run_id, run.processing.staging, run.deface_rules)


def leak_check(run: IngestRun, found: Discovery) -> LeakReport:
    return check_processed(run.catalog, run.run_id, found.files, run.processing.staging)


def route_processed(run: IngestRun) -> RouteReport:
    share = run.workspace.config.spot_check_share
    return route(run.catalog, run.run_id, run.processing.key, share)


def publish(run: IngestRun) -> PublishReport:
    """Publish what is verified, then rewrite the PHI-free account of what is kept out."""
    report = publish_verified(run.workspace, run.catalog, run.run_id, run.processing)
    write_account(run.workspace, run.catalog)
    return report


class Clock:
    """Wall seconds per stage, for the summary and ``bench/ingest.py``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, stage: Callable[..., R], *args: object) -> R:
        start = time.perf_counter()
        try:
            return stage(*args)
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 3)


def summary(
    run: IngestRun,
    found: Discovery,
    dicom: StageReport,
    raw: StageReport,
    leaks: LeakReport,
    routed: RouteReport,
    release: PublishReport,
    clock: Clock,
    defaced: DefaceReport | None = None,
) -> dict[str, object]:
    """The run's PHI-free account (counts, reason codes, seconds); recorded with the run."""
    return {
        "run": run.run_id,
        "crashed_before": list(run.crashed_before),
        "discovered": found.counts(),
        "dicom": dataclasses.asdict(dicom),
        "raw": dataclasses.asdict(raw),
        "deface": dataclasses.asdict(defaced or DefaceReport(enabled=False)),
        "leak_check": dataclasses.asdict(leaks),
        "route": dataclasses.asdict(routed),
        "release": dataclasses.asdict(release),
        "rules": {
            "version": run.processing.ruleset_version,
            "files": dict(run.processing.rule_files),
        },
        "seconds": clock.seconds,
    }


def summary_lines(summary: dict[str, object], *, facts: bool = True) -> list[tuple[str, str]]:
    """``(stage, what it did)`` for each stage of a :func:`summary`, for a person to read.

    ``facts``: the DICOM and raw stages' facts too, one per line (the per-rule edit
    counts added up per action; the audit report lists them one by one).
    """

    def part(name: str) -> dict[str, Any]:
        value = summary.get(name)
        return value if isinstance(value, dict) else {}

    def counts(mapping: object) -> str:
        items = mapping.items() if isinstance(mapping, dict) else ()
        return ", ".join(f"{n} {k}" for k, n in sorted(items, key=lambda kv: (-kv[1], kv[0])))

    lines: list[tuple[str, str]] = []
    found = part("discovered")
    lines.append(("discovered", counts({k: v for k, v in found.items() if v}) or "nothing"))
    for stage in ("dicom", "raw"):
        report = part(stage)
        if not report.get("inputs"):
            lines.append((stage, "nothing to do"))
            continue
        text = f"{report['inputs']} inputs: {counts(report.get('outcomes'))}"
        if report.get("reasons"):
            text += f"; reasons: {counts(report['reasons'])}"
        if report.get("review"):
            text += f"; {report['review']} to review"
        if report.get("failure"):
            text += f"; stopped: {report['failure']}"
        found_facts = report.get("facts")
        if facts and isinstance(found_facts, dict) and found_facts:
            shown = for_people(found_facts)
            text += "\n" + "\n".join(f"  {name}: {n}" for name, n in shown)
        lines.append((stage, text))
    deface = part("deface")
    if deface.get("enabled"):
        lines.append((
            "deface",
            f"{deface.get('series', 0)} series, {deface.get('head_volumes', 0)} head volumes: "
            f"{deface.get('defaced', 0)} defaced, {deface.get('already_defaced', 0)} already, "
            f"{deface.get('to_review', 0)} to review; head k-space held "
            f"{deface.get('head_kspace_held', 0)}",
        ))  # fmt: skip
    leaks = part("leak_check")
    lines.append((
        "leak check",
        f"{leaks.get('outputs', 0)} outputs read, {leaks.get('failed', 0)} failed"
        + (f" ({counts(leaks['hits'])})" if leaks.get("hits") else "")
        + (f", {leaks['unverifiable']} unverifiable" if leaks.get("unverifiable") else ""),
    ))  # fmt: skip
    route = part("route")
    lines.append((
        "route",
        f"{route.get('verified', 0)} verified, {route.get('to_review', 0)} to review"
        + (f" ({route['spot_checks']} spot checks)" if route.get("spot_checks") else ""),
    ))  # fmt: skip
    release = part("release")
    if release.get("version"):
        changed = {k: release.get(k, 0) for k in ("added", "changed", "removed")}
        text = f"{release['version']}: {release.get('files', 0)} files ({counts(changed)})"
        if release.get("withdrawn_subjects"):
            text += f", {release['withdrawn_subjects']} subject(s) withdrawn"
    else:
        text = f"nothing new to publish (latest: {release.get('latest') or 'none'})"
    lines.append(("release", text))
    return lines
