"""Two processes on one catalog: each change is applied once, nothing is corrupted."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
from multiprocessing.queues import Queue

import sqlalchemy as sa

from pipeline.catalog import Catalog, IllegalTransition, InputKind, ItemState, StateChange
from pipeline.catalog.engine import create_catalog_engine
from tests.catalog.conftest import sha

ROUNDS = 8
BATCH = 25


def contend(url: str, barrier: multiprocessing.synchronize.Barrier, results: Queue[object]) -> None:
    """Register the same inputs as the other process, then race it to move them on."""
    new: set[str] = set()
    moved = refused = 0
    try:
        with Catalog.open(url) as catalog:
            run = catalog.start_run("ingest", ruleset_version="r", key_fingerprint="k")
            for round_ in range(ROUNDS):
                items = [sha((round_, n)) for n in range(BATCH)]
                barrier.wait()
                new |= catalog.register([(item, InputKind.DICOM, 1) for item in items], run)
                barrier.wait()
                try:
                    catalog.transition(
                        [StateChange(item, ItemState.PROCESSED) for item in items], run
                    )
                    moved += 1
                except IllegalTransition:  # the other process moved them first
                    refused += 1
    except BaseException as exc:  # reported to the test; the other process stops waiting
        barrier.abort()
        results.put(repr(exc))
        raise
    results.put((new, moved, refused))


def test_two_processes_register_and_move_the_same_inputs(catalog_url: str) -> None:
    context = multiprocessing.get_context("fork")  # a fresh engine in each child
    barrier = context.Barrier(2, timeout=60)
    results: Queue[object] = context.Queue()
    workers = [
        context.Process(target=contend, args=(catalog_url, barrier, results)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert [o for o in outcomes if isinstance(o, str)] == []  # neither process failed
    assert [worker.exitcode for worker in workers] == [0, 0]
    (new_a, moved_a, refused_a), (new_b, moved_b, refused_b) = outcomes  # type: ignore[misc]
    everything = {sha((round_, n)) for round_ in range(ROUNDS) for n in range(BATCH)}
    assert new_a | new_b == everything and not new_a & new_b  # each input new to one process
    assert moved_a + moved_b == ROUNDS and refused_a + refused_b == ROUNDS  # one winner a round
    with Catalog.open(catalog_url) as catalog:
        for item in everything:
            assert [(t.from_state, t.to_state) for t in catalog.history(item)] == [
                (None, ItemState.NEW), (ItemState.NEW, ItemState.PROCESSED),
            ]  # fmt: skip
        assert len(catalog.items([ItemState.PROCESSED])) == len(everything)
    engine, _ = create_catalog_engine(catalog_url)
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            assert connection.execute(sa.text("PRAGMA integrity_check")).scalar() == "ok"
    engine.dispose()
