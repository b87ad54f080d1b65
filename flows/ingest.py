"""The ingest flow: ``incoming/`` to a verified, versioned release, as a table of contents.

Each task is a few lines over :mod:`pipeline.ingest` and works on a whole
batch (a Prefect task costs tens of milliseconds; one per file would cost
more than the work).  What crosses into Prefect's records is opaque: the
flow's one parameter is the workspace folder (a site path, never a
patient's), tasks return PHI-free counts, results are never persisted, and
an exception is re-raised with its type and stage only (its full text goes
to the private run log, since a library's message may quote a value).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.utilities.asyncutils import run_coro_as_sync

from flows.recovery import mark_crashed
from pipeline.atomic import atomic_write_text
from pipeline.catalog.states import RunStatus
from pipeline.ingest.discovery import Discovery, discover_incoming
from pipeline.ingest.leakcheck import LeakReport, check_processed
from pipeline.ingest.process import InputGroup, StageReport, process_new
from pipeline.ingest.publishing import PublishReport, publish_verified
from pipeline.ingest.route import RouteReport, route
from pipeline.ingest.run import IngestRun
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


@task(name="discover", **_TASK)  # type: ignore[call-overload]
@_opaque("discover")
def discover(run: IngestRun) -> Discovery:
    return discover_incoming(
        run.workspace.incoming, run.catalog, run.run_id,
        quiet_seconds=run.workspace.config.quiet_seconds,
    )  # fmt: skip


@task(name="deidentify-dicom", **_TASK)  # type: ignore[call-overload]
@_opaque("deidentify-dicom")
def deidentify(run: IngestRun, found: Discovery) -> StageReport:
    return process_new(
        InputGroup.DICOM, run.processing, run.catalog, run.store, run.run_id, found.files,
        progress=_progress("de-identify DICOM"),
    )  # fmt: skip


@task(name="convert-raw", **_TASK)  # type: ignore[call-overload]
@_opaque("convert-raw")
def convert(run: IngestRun, found: Discovery) -> StageReport:
    return process_new(
        InputGroup.RAW, run.processing, run.catalog, run.store, run.run_id, found.files,
        progress=_progress("convert raw"),
    )  # fmt: skip


@task(name="leak-check", **_TASK)  # type: ignore[call-overload]
@_opaque("leak-check")
def verify(run: IngestRun, found: Discovery) -> LeakReport:
    return check_processed(run.catalog, run.run_id, found.files, run.processing.staging)


@task(name="route", **_TASK)  # type: ignore[call-overload]
@_opaque("route")
def route_items(run: IngestRun) -> RouteReport:
    share = run.workspace.config.spot_check_share
    return route(run.catalog, run.run_id, run.processing.key, share)


@task(name="publish", **_TASK)  # type: ignore[call-overload]
@_opaque("publish")
def publish(run: IngestRun) -> PublishReport:
    return publish_verified(run.workspace, run.catalog, run.run_id, run.processing)


class _Clock:
    """Wall seconds per stage, for the summary and ``bench/ingest.py``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, stage: Callable[..., R], *args: object) -> R:
        start = time.perf_counter()
        try:
            return stage(*args)
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 3)


@flow(name=FLOW_NAME, persist_result=False, log_prints=False)
def ingest(workspace: str, jobs: int = 0) -> dict[str, object]:
    """Discover, de-identify, convert, verify, route and publish: one run over ``incoming/``."""
    logger = get_run_logger()
    with IngestRun.open(open_workspace(Path(workspace)), jobs=jobs or None) as run:
        # Holding the workspace lock, no other run of this workspace is alive:
        # what Prefect still shows running was killed (kill -9, a reboot).
        crashed = _mark_crashed(workspace)
        if any(crashed):
            logger.info("marked %d flow run(s) and %d task run(s) of killed runs crashed", *crashed)
        clock = _Clock()
        found = clock("discover", discover, run)
        logger.info("run %s: %s", run.run_id, found.counts())
        dicom = clock("dicom", deidentify, run, found)
        raw = clock("raw", convert, run, found)
        leaks = clock("leak_check", verify, run, found)
        routed = clock("route", route_items, run)
        release = clock("release", publish, run)
        summary: dict[str, object] = {
            "run": run.run_id,
            "crashed_before": list(run.crashed_before),
            "discovered": found.counts(),
            "dicom": dataclasses.asdict(dicom),
            "raw": dataclasses.asdict(raw),
            "leak_check": dataclasses.asdict(leaks),
            "route": dataclasses.asdict(routed),
            "release": dataclasses.asdict(release),
            "seconds": clock.seconds,
        }
        run.summary = summary
        run.status = RunStatus.COMPLETED
        logger.info("run %s: %s", run.run_id, {k: v for k, v in summary.items() if k != "run"})
    return summary
