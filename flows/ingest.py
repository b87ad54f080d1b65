"""The ingest flow: ``incoming/`` to a verified, versioned release, as a table of contents.

Each task is a few lines over :mod:`pipeline.ingest` and works on a whole
batch (a Prefect task costs tens of milliseconds; one per file would cost
more than the work), and takes the open run and the discovery as
:func:`whole` values, which Prefect passes on without walking through
them (walking them cost more than every task run together).  What crosses into Prefect's records is opaque: the
flow's one parameter is the workspace folder (a site path, never a
patient's), tasks return PHI-free counts, results are never persisted, and
an exception is re-raised with its type and stage only (its full text goes
to the private run log, since a library's message may quote a value).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar, cast

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.utilities.annotations import quote
from prefect.utilities.asyncutils import run_coro_as_sync

from flows.engine import plain_flow, quick_heartbeat_exit
from flows.recovery import mark_crashed
from flows.scale_out import scale_out
from pipeline.atomic import atomic_write_text
from pipeline.catalog.states import RunStatus
from pipeline.ingest import stages
from pipeline.ingest.deface import DefaceReport
from pipeline.ingest.discovery import Discovery
from pipeline.ingest.leakcheck import LeakReport
from pipeline.ingest.process import InputGroup, StageReport
from pipeline.ingest.publishing import PublishReport
from pipeline.ingest.route import RouteReport
from pipeline.ingest.run import IngestRun
from pipeline.report import MARKDOWN_KEY, TABLE_KEY, ReportRefused, run_artifacts
from pipeline.workspace import open_workspace

FLOW_NAME = "mricurate-ingest"
P = ParamSpec("P")
R = TypeVar("R")

# The CLI's progress bar; a hook rather than a parameter so it never becomes
# part of a flow run's recorded parameters.
progress_hook: Callable[[str, int, int], None] | None = None


class StageFailed(RuntimeError):
    """A stage of the ingest flow failed; the private run log has the details."""


def _opaque(stage: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Re-raise any failure of ``stage`` with a PHI-free message; log the full one privately."""

    def wrap(body: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(body)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return body(*args, **kwargs)
            except Exception as exc:
                ingest = next((a for a in args if isinstance(a, IngestRun)), None)
                where = _private_log(ingest, stage, exc) if ingest else "the private location"
                raise StageFailed(
                    f"ingest stage '{stage}' failed ({type(exc).__name__}); the details are in "
                    f"{where} (private: they may quote an input)"
                ) from None

        return run

    return wrap


def _private_log(ingest: IngestRun, stage: str, exc: BaseException) -> str:
    folder = ingest.workspace.private / "logs"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"ingest-{ingest.run_id}-{stage}.txt"
    text = "".join(traceback.format_exception(exc))
    atomic_write_text(path, f"{dt.datetime.now(dt.UTC).isoformat()}\n{text}", mode=0o600)
    return f"private/logs/{path.name}"


def workspace_tag(workspace: str | Path) -> str:
    """The tag of this workspace's flow runs: opaque, so a shared server can tell workspaces apart."""
    digest = hashlib.sha256(os.fsencode(Path(workspace).absolute())).hexdigest()
    return f"mricurate-workspace-{digest[:12]}"


def _mark_crashed(workspace: str) -> tuple[int, int]:
    context = FlowRunContext.get()
    current = [context.flow_run.id] if context and context.flow_run else []
    return run_coro_as_sync(  # type: ignore[no-any-return]
        mark_crashed(FLOW_NAME, tags=[workspace_tag(workspace)], exclude=current)
    )


def _progress(stage: str) -> Callable[[int, int], None] | None:
    hook = progress_hook
    return None if hook is None else functools.partial(hook, stage)


_TASK = {"cache_policy": NO_CACHE, "persist_result": False}

T = TypeVar("T")


def whole(value: T) -> T:
    """``value`` as a task argument Prefect passes on without walking through it.

    Prefect visits every field of a task's arguments, recursively, twice per
    task (to find futures to wait for and inputs to record); the open run and
    the discovery hold every input, the rules and the key, which cost seconds
    of CPU per task on a corpus of thousands of files (most of the flow's
    overhead over the bare library run).  The task receives ``value`` itself;
    nothing of it reaches Prefect's records either way.
    """
    return cast(T, quote(value))


@task(name="discover", **_TASK)  # type: ignore[call-overload]
@_opaque("discover")
def discover(run: IngestRun) -> Discovery:
    return stages.discover(run)


@task(name="deidentify-dicom", **_TASK)  # type: ignore[call-overload]
@_opaque("deidentify-dicom")
def deidentify(run: IngestRun, found: Discovery) -> StageReport:
    return stages.process(InputGroup.DICOM, run, found, _progress("de-identify DICOM"))


@task(name="convert-raw", **_TASK)  # type: ignore[call-overload]
@_opaque("convert-raw")
def convert(run: IngestRun, found: Discovery) -> StageReport:
    return stages.process(InputGroup.RAW, run, found, _progress("convert raw"))


@task(name="deface", **_TASK)  # type: ignore[call-overload]
@_opaque("deface")
def deface(run: IngestRun) -> DefaceReport:
    return stages.deface(run)


@task(name="leak-check", **_TASK)  # type: ignore[call-overload]
@_opaque("leak-check")
def verify(run: IngestRun, found: Discovery) -> LeakReport:
    return stages.leak_check(run, found)


@task(name="route", **_TASK)  # type: ignore[call-overload]
@_opaque("route")
def route_items(run: IngestRun) -> RouteReport:
    return stages.route_processed(run)


@task(name="publish", **_TASK)  # type: ignore[call-overload]
@_opaque("publish")
def publish(run: IngestRun) -> PublishReport:
    return stages.publish(run)


@task(name="report", **_TASK)  # type: ignore[call-overload]
@_opaque("report")
def report(run: IngestRun, summary: dict[str, object]) -> bool:
    """Post the run's audit summary as artifacts (Prefect keeps them: checked for PHI first)."""
    try:
        artifacts = run_artifacts(run.catalog, run.workspace, run.run_id, summary)
    except ReportRefused:
        get_run_logger().warning(
            "run %s: audit artifacts withheld: the leak check found an identifier of the inputs "
            "in them (see `mricurate report`)", run.run_id,
        )  # fmt: skip
        return False
    create_markdown_artifact(
        markdown=artifacts.markdown, key=MARKDOWN_KEY,
        description=f"mricurate ingest run {run.run_id}: audit summary (no PHI)",
    )  # fmt: skip
    create_table_artifact(
        table=list(artifacts.table), key=TABLE_KEY,
        description=f"mricurate ingest run {run.run_id}: elements changed by rule and attribute",
    )  # fmt: skip
    return True


# Every flow run of a process that imports this module ends without waiting for
# its heartbeat thread's nap (flows.engine); heartbeats themselves stay on.
quick_heartbeat_exit()


@plain_flow(name=FLOW_NAME, persist_result=False, log_prints=False)
def ingest(workspace: str, jobs: int = 0, dask_address: str = "") -> dict[str, object]:
    """Discover, de-identify, convert, deface, verify, route, publish and report: one run over ``incoming/``.

    With ``dask_address`` (default: ``[ingest] dask_address``), the per-input
    work of the DICOM and raw stages runs as ``process-chunk`` tasks on that
    Dask cluster (:mod:`flows.scale_out`); everything else stays here.
    """
    logger = get_run_logger()
    opened = open_workspace(Path(workspace))
    address = dask_address or opened.config.dask_address
    with (
        IngestRun.open(opened, jobs=jobs or None) as run,
        scale_out(
            address,
            run.processing.staging,
            deadline_seconds=opened.config.chunk_deadline_seconds,
        ) as cluster,  # fmt: skip
    ):
        # Holding the workspace lock, no other run of this workspace is alive:
        # what Prefect still shows running was killed (kill -9, a reboot).
        crashed = _mark_crashed(workspace)
        if any(crashed):
            logger.info("marked %d flow run(s) and %d task run(s) of killed runs crashed", *crashed)
        if cluster is not None:
            run.dispatch_to(cluster)
            logger.info("run %s: DICOM and raw inputs computed on the Dask cluster", run.run_id)
        clock = stages.Clock()
        whole_run = whole(run)
        found = clock("discover", discover, whole_run)
        logger.info("run %s: %s", run.run_id, found.counts())
        whole_found = whole(found)
        dicom = clock("dicom", deidentify, whole_run, whole_found)
        raw = clock("raw", convert, whole_run, whole_found)
        defaced = clock("deface", deface, whole_run)
        leaks = clock("leak_check", verify, whole_run, whole_found)
        routed = clock("route", route_items, whole_run)
        release = clock("release", publish, whole_run)
        summary = stages.summary(run, found, dicom, raw, leaks, routed, release, clock, defaced)
        run.summary = summary
        report(whole_run, summary)
        run.status = RunStatus.COMPLETED
        for stage, line in stages.summary_lines(summary, facts=False):
            logger.info("run %s, %s: %s", run.run_id, stage, line)
    return summary
