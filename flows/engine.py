"""What a flow run costs beyond its tasks, cut to what mricurate needs.

The ingest flow is measured against the bare library run on the same corpus
(``bench/ingest.py``; the issue asks for less than 10% overhead).  Three fixed
costs per run were Prefect's own, not the work's, and are cut here:

- **Parameter serialisation.**  To record a flow run's parameters Prefect
  passes each one through FastAPI's ``jsonable_encoder``, whose first use
  imports FastAPI and Starlette into the flow's process (0.15 s of CPU on a
  quiet machine; about a second in a profile at load 3-6, bench/README.md).  The ingest flow's parameters
  are a folder, a number and an address: :class:`PlainFlow` records plain
  JSON values as they are and leaves everything else to Prefect.
- **The heartbeat thread's nap.**  At the end of a run Prefect's sync engine
  joins its heartbeat thread, which sleeps in one-second steps, so each run
  ended by waiting up to a second for it.  :func:`quick_heartbeat_exit` makes
  the sync engine leave the thread to stop by itself, as Prefect's async
  engine always does (``join_on_exit=False``); the thread emits nothing after
  the run has ended.  Heartbeats themselves stay on.
- **Garbage collection over Prefect's objects.**  Importing Prefect leaves a
  few hundred thousand long-lived objects that every full collection walks
  again; :func:`freeze_long_lived` moves what exists at the start of a run
  out of the collector's way (``gc.freeze``), as a long-running server does
  after start-up.  The bare library run does the same, so that the two are
  compared like for like (:func:`pipeline.ingest.once.ingest_once`).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar

from prefect import Flow
from prefect import flow_engine as _flow_engine

P = ParamSpec("P")
R = TypeVar("R")

_PLAIN = (str, int, float, bool, type(None))


class PlainFlow(Flow[P, R]):
    """A flow whose plain JSON parameters are recorded without FastAPI's encoder."""

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        plain = {k: v for k, v in parameters.items() if type(v) in _PLAIN}
        if len(plain) == len(parameters):
            return plain
        return super().serialize_parameters(parameters)


def plain_flow(**options: Any) -> Callable[[Callable[P, R]], PlainFlow[P, R]]:
    """``@flow(**options)`` building a :class:`PlainFlow`."""

    def build(fn: Callable[P, R]) -> PlainFlow[P, R]:
        return PlainFlow(fn=fn, **options)

    return build


def quick_heartbeat_exit() -> bool:
    """Let the sync flow engine end a run without waiting for its heartbeat thread's nap.

    Returns whether it applies: on a Prefect whose heartbeat context manager
    is not the one this was written for (3.9: ``_send_heartbeats(engine,
    join_on_exit)``), nothing is changed and a run simply ends as before.
    """
    original = getattr(_flow_engine, "_send_heartbeats", None)
    if original is None or getattr(original, "_mricurate_quick_exit", False):
        return original is not None
    if "join_on_exit" not in inspect.signature(original).parameters:
        return False

    @contextlib.contextmanager
    def send_heartbeats(engine: Any, join_on_exit: bool = True) -> Iterator[None]:
        with original(engine, join_on_exit=False):
            yield

    send_heartbeats._mricurate_quick_exit = True  # type: ignore[attr-defined]
    _flow_engine._send_heartbeats = send_heartbeats
    return True
