"""What a killed run leaves in Prefect's records, settled at the next start.

A flow run killed with SIGKILL cannot report its end: its flow run and the
task runs it was in stay RUNNING for ever (heartbeats would tell a watcher it
died, but nothing on a local server acts on them).  The next start marks them
Crashed, which is what they are, before it starts a new run, so that the
records a person reads tell the truth and a deployment's concurrency slot held
by the dead run is released (a forced state change runs Prefect's
``ReleaseFlowConcurrencySlots`` rule).

The workspace lock, not Prefect, decides that no run is alive: call
:func:`mark_crashed` only while holding it, so a RUNNING record cannot
belong to a live run of this workspace.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

from prefect import get_client
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import State, StateType
from prefect.client.schemas.responses import OrchestrationResult, SetStateStatus
from prefect.states import Crashed

CRASH_MESSAGE = "interrupted: marked crashed at the next start"
"""The state message of every run marked here: a fact about the run, never about its inputs."""

_FLOW_RUN_STATES = (StateType.RUNNING, StateType.PENDING)
# A task run of a dead flow run will never finish, whatever its last state was.
_TASK_RUN_STATES = (StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED)
_PAGE = 200  # the server's default page size


async def mark_crashed(
    flow_name: str, *, tags: Collection[str] = (), exclude: Collection[uuid.UUID] = ()
) -> tuple[int, int]:
    """Mark the unfinished runs of ``flow_name``, and their task runs, Crashed.

    Parameters
    ----------
    flow_name : str
        The flow whose RUNNING and PENDING flow runs were left by a killed run.
    tags : Collection[str]
        Only flow runs carrying every one of these tags.  A Prefect server
        shared by several workspaces must be told which runs are this
        workspace's (give each workspace's runs a tag of its own), or one
        workspace would mark another's live runs.
    exclude : Collection[UUID]
        Flow runs to leave alone: the run that calls this, from inside its
        flow, once it holds the workspace lock (no other live run then exists).

    Returns
    -------
    tuple[int, int]
        How many flow runs and how many task runs were marked.
    """
    async with get_client() as client:
        flow_runs = [
            run
            for run in await _unfinished_flow_runs(client, flow_name, tags)
            if run not in exclude
        ]
        task_runs = await _unfinished_task_runs(client, flow_runs)
        marked: OrchestrationResult[None]
        marked_tasks = 0
        for task_run in task_runs:
            marked = await client.set_task_run_state(task_run, _crashed(), force=True)
            marked_tasks += marked.status is SetStateStatus.ACCEPT
        marked_flows = 0
        for flow_run in flow_runs:
            marked = await client.set_flow_run_state(flow_run, _crashed(), force=True)
            marked_flows += marked.status is SetStateStatus.ACCEPT
    return marked_flows, marked_tasks


def _crashed() -> State[None]:
    # Set with force=True: only Prefect's minimal rules apply, one of which releases a
    # deployment concurrency slot the dead run held (ReleaseFlowConcurrencySlots).
    return Crashed(message=CRASH_MESSAGE)


async def _unfinished_flow_runs(
    client: PrefectClient, flow_name: str, tags: Collection[str]
) -> list[uuid.UUID]:
    flow_run_filter = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(_FLOW_RUN_STATES))),
        tags=FlowRunFilterTags(all_=sorted(tags)) if tags else None,
    )
    found: list[uuid.UUID] = []
    while True:
        page = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            flow_run_filter=flow_run_filter,
            limit=_PAGE,
            offset=len(found),
        )
        found.extend(run.id for run in page)
        if len(page) < _PAGE:
            return found


async def _unfinished_task_runs(
    client: PrefectClient, flow_runs: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    found: list[uuid.UUID] = []
    for start in range(0, len(flow_runs), _PAGE):
        task_run_filter = TaskRunFilter(
            flow_run_id=TaskRunFilterFlowRunId(any_=list(flow_runs[start : start + _PAGE])),
            state=TaskRunFilterState(type=TaskRunFilterStateType(any_=list(_TASK_RUN_STATES))),
        )
        offset = 0
        while True:
            page = await client.read_task_runs(
                task_run_filter=task_run_filter, limit=_PAGE, offset=offset
            )
            found.extend(run.id for run in page)
            offset += len(page)
            if len(page) < _PAGE:
                break
    return found
