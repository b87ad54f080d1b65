"""The ingest stages in order, without an orchestrator: the baseline ``bench/ingest.py`` measures.

:mod:`flows.ingest` runs the same stages (:mod:`pipeline.ingest.stages`) as
Prefect tasks; this is the run without Prefect, for the benchmark and for
tests of the stages themselves.
"""

from __future__ import annotations

from pipeline.catalog.states import RunStatus
from pipeline.ingest import stages
from pipeline.ingest.process import InputGroup
from pipeline.ingest.run import IngestRun
from pipeline.workspace import Workspace


def ingest_once(workspace: Workspace, *, jobs: int | None = None) -> dict[str, object]:
    """One ingest run over ``incoming/``; returns the same PHI-free summary as the flow."""
    with IngestRun.open(workspace, jobs=jobs) as run:
        clock = stages.Clock()
        found = clock("discover", stages.discover, run)
        dicom = clock("dicom", stages.process, InputGroup.DICOM, run, found)
        raw = clock("raw", stages.process, InputGroup.RAW, run, found)
        defaced = clock("deface", stages.deface, run)
        leaks = clock("leak_check", stages.leak_check, run, found)
        routed = clock("route", stages.route_processed, run)
        release = clock("release", stages.publish, run)
        run.summary = stages.summary(run, found, dicom, raw, leaks, routed, release, clock, defaced)
        run.status = RunStatus.COMPLETED
    return run.summary
