"""The ingest stages in order, without an orchestrator: the baseline ``bench/ingest.py`` measures.

:mod:`flows.ingest` runs the same stages as Prefect tasks; this is the run
without Prefect, for the benchmark and for tests of the stages' order.
"""

from __future__ import annotations

import dataclasses
import time

from pipeline.catalog.states import RunStatus
from pipeline.ingest.discovery import discover_incoming
from pipeline.ingest.leakcheck import check_processed
from pipeline.ingest.process import InputGroup, process_new
from pipeline.ingest.publishing import publish_verified
from pipeline.ingest.route import route
from pipeline.ingest.run import IngestRun
from pipeline.workspace import Workspace


def ingest_once(workspace: Workspace, *, jobs: int | None = None) -> dict[str, object]:
    """One ingest run over ``incoming/``; returns the same PHI-free summary as the flow."""
    seconds: dict[str, float] = {}

    def timed(name: str, start: float) -> None:
        seconds[name] = round(time.perf_counter() - start, 3)

    with IngestRun.open(workspace, jobs=jobs) as run:
        start = time.perf_counter()
        found = discover_incoming(
            workspace.incoming, run.catalog, run.run_id,
            quiet_seconds=workspace.config.quiet_seconds,
        )  # fmt: skip
        timed("discover", start)
        reports: dict[str, object] = {}
        for group in InputGroup:
            start = time.perf_counter()
            report = process_new(
                group, run.processing, run.catalog, run.store, run.run_id, found.files
            )
            reports[group.value] = dataclasses.asdict(report)
            timed(group.value, start)
        start = time.perf_counter()
        leaks = check_processed(run.catalog, run.run_id, found.files, run.processing.staging)
        timed("leak_check", start)
        start = time.perf_counter()
        routed = route(run.catalog, run.run_id, run.processing.key,
                       workspace.config.spot_check_share)  # fmt: skip
        timed("route", start)
        start = time.perf_counter()
        release = publish_verified(workspace, run.catalog, run.run_id, run.processing)
        timed("release", start)
        summary: dict[str, object] = {
            "run": run.run_id,
            "crashed_before": list(run.crashed_before),
            "discovered": found.counts(),
            **reports,
            "leak_check": dataclasses.asdict(leaks),
            "route": dataclasses.asdict(routed),
            "release": dataclasses.asdict(release),
            "seconds": seconds,
        }
        run.summary = summary
        run.status = RunStatus.COMPLETED
    return summary
