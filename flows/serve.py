"""Serve a flow as a scheduled deployment that never runs twice at once.

``mricurate serve`` puts it together, in this order (the first two before
anything imports ``prefect``)::

    server = LocalServer(private / "prefect")       # unless PREFECT_API_URL names one
    configure(private / "prefect", api_url=server.api_url)
    with server:                                    # stops what a killed run left, first
        with workspace_lock:                        # briefly: no run of ours is alive
            asyncio.run(mark_crashed("ingest"))
        serve_flow(ingest, name="nightly", parameters=..., cron="0 2 * * *")

Prefect's scheduler creates a deployment's runs ahead of time.  After the
server or ``serve`` was down, every run whose time has passed is due at
once, and the runner would start them all together.  The deployment
therefore has a concurrency limit of one that cancels a new run while one
is going (``CANCEL_NEW``): the backlog is run once, its other runs end
Cancelled.  This is on top of the workspace lock each run takes, and is
not a lock itself (a killed holder keeps a Prefect concurrency slot until
its lease runs out; :func:`flows.recovery.mark_crashed` releases it).

Schedules are *not* paused when ``serve`` stops (Prefect would delete the
runs already created): a night missed while ``serve`` was down is caught up
once, at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from types import FrameType
from typing import Any

from prefect import Flow
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.runner import Runner
from prefect.types.entrypoint import EntrypointType

Parameter = str | int | float | bool | None
"""What a deployment parameter may be: Prefect stores it in every run's record."""

ONE_AT_A_TIME = ConcurrencyLimitConfig(
    limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
)
"""A new run is cancelled while another run of the deployment is going."""


def serve_flow(
    flow: Flow[..., Any],
    *,
    name: str,
    parameters: Mapping[str, Parameter],
    cron: str | None = None,
    interval: float | None = None,
    tags: Sequence[str] = (),
) -> None:
    """Serve ``flow`` as the deployment ``name`` until SIGTERM or SIGINT, then return.

    Runs start in subprocesses of this process, which must have been
    configured (:func:`flows.environment.configure`) with a real server's
    ``api_url``: schedules never fire on Prefect's ephemeral server.

    Parameters
    ----------
    flow : Flow
        A flow defined at the top level of an importable module (the
        deployment's entrypoint is its module path, e.g. ``flows.ingest.ingest``).
    name : str
        The deployment's name.
    parameters : Mapping[str, str | int | float | bool | None]
        The parameters of every run.  Prefect stores them in the deployment
        and in each flow run's record, and shows them in logs and events, so
        they must never carry patient data: an input's path, a file name or a
        header value is refused by the rule that flows carry opaque keys.  The
        workspace's own path may be passed: it is a folder the site chose when
        it set mricurate up (``/data/mricurate``), it names no patient, and
        Prefect's home already lies under it.  Only plain values are taken, so
        a :class:`pipeline.phi.Phi` or a list of inputs cannot slip in.
    cron, interval : str or float
        Exactly one: a cron expression (``"0 2 * * *"``) or seconds between runs.
    tags : Sequence[str]
        Tags of every run (:func:`flows.recovery.mark_crashed` can select by them).

    Raises
    ------
    ValueError
        Neither or both of ``cron`` and ``interval``.
    TypeError
        A parameter that is not a plain value.

    Notes
    -----
    Prefect starts each run in a ``multiprocessing`` *spawn* process, which
    imports the main module again: a script that serves must call this under
    ``if __name__ == "__main__":`` (``mricurate/__main__.py`` included), or each
    run would start serving again instead of running.

    A run that ends as ``serve`` stops can be recorded Cancelled after
    Completed: Prefect 3.9's runner cancels every run whose process has not
    exited yet.  The catalog, not Prefect, is the record of what was done.
    """
    if (cron is None) == (interval is None):
        raise ValueError("serve_flow needs exactly one schedule: a cron expression or an interval")
    for key, value in parameters.items():
        if not isinstance(value, str | int | float | bool | None):
            raise TypeError(
                f"deployment parameter {key!r} is a {type(value).__name__}; Prefect records "
                "parameters, so give only plain values (opaque keys, the workspace folder)"
            )
    # No limit of the runner's own: it takes every due run at once and the server's
    # CANCEL_NEW decides, one runs and the others end Cancelled.  A runner limit (5 by
    # default) would hold part of a backlog back to a later poll, after the first run
    # ended, and the backlog would run twice.  Nothing is fetched ahead of its time: a
    # run fetched early (Prefect's default is 10 s ahead) takes the slot early, or is
    # cancelled because a run that would have ended in time still holds it.  A run
    # starts at most one poll (PREFECT_RUNNER_POLL_FREQUENCY, 10 s) after its time.
    runner = Runner(name=name, pause_on_shutdown=False, limit=None, prefetch_seconds=0)
    # Until the runner takes SIGTERM over, it ends serving as SIGINT does.
    with _sigterm_interrupts():
        try:
            runner.add_flow(
                flow,
                name=name,
                cron=cron,
                interval=interval,
                parameters=dict(parameters),
                concurrency_limit=ONE_AT_A_TIME,
                tags=list(tags),
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
            # The runner handles SIGTERM itself: it cancels the runs it started, returns.
            asyncio.run(runner.start())
        except KeyboardInterrupt:
            pass  # asyncio cancelled the runner, which stopped its runs first


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt inside (main thread only; restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
