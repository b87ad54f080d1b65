"""The seven stages of an ingest run, each a call on an open :class:`IngestRun`.

The Prefect flow (:mod:`flows.ingest`) wraps each in a task; :mod:`pipeline.ingest.once`
calls them in the same order without Prefect.  Both time them with a
:class:`Clock` and report with :func:`summary`, so the two runs say the same.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TypeVar

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
