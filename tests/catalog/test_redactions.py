"""Redact decisions and their boxes, on SQLite and PostgreSQL: kept, read back, append-only."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from pipeline.catalog import (
    BoxSource,
    Catalog,
    CatalogError,
    Decision,
    InputKind,
    ItemState,
    RedactionBox,
    ReviewReason,
    StateChange,
    migrate,
)
from pipeline.catalog.engine import create_catalog_engine
from tests.catalog.conftest import sha, staged

BANNER = RedactionBox(None, 0, 0, 256, 20, BoxSource.OCR)
CORNER = RedactionBox(2, 200, 230, 50, 20, BoxSource.DRAWN)
REGION = RedactionBox(0, 10, 10, 30, 5, BoxSource.REGION)


def queued(catalog: Catalog, run: int, label: str) -> tuple[str, int]:
    item = sha(label)
    catalog.register([(item, InputKind.DICOM, 10)], run)
    staged(catalog, run, item)
    catalog.transition(
        [StateChange(item, ItemState.PROCESSED), StateChange(item, ItemState.NEEDS_REVIEW)], run
    )
    return item, catalog.enqueue_review(item, [ReviewReason.PIXEL_FINDINGS], run)


def decide(catalog: Catalog, queue: int, decision: Decision, *boxes: RedactionBox) -> int:
    return catalog.decide(
        queue, decision, reviewer="r", reason="why", ruleset_version="rules-1", boxes=boxes
    )


def test_a_redaction_keeps_its_boxes_until_a_later_decision(catalog: Catalog, run: int) -> None:
    item, queue = queued(catalog, run, "a")
    other, other_queue = queued(catalog, run, "b")
    assert catalog.redaction_boxes(item) == ()
    first = decide(catalog, queue, Decision.REDACT, BANNER, CORNER, REGION)
    assert catalog.state_of(item) is ItemState.QUARANTINED
    assert catalog.history(item)[-1].reason == "redact"
    # In the order given, every field back as it went in; the other input has none.
    assert catalog.redaction_boxes(item) == (BANNER, CORNER, REGION)
    assert catalog.redaction_boxes(other) == ()
    second = decide(catalog, other_queue, Decision.REDACT, CORNER)
    assert second > first and catalog.redaction_boxes(other) == (CORNER,)
    # A later approval supersedes the redaction; the history keeps both, with boxes.
    third = decide(catalog, queue, Decision.APPROVE)
    assert third > second and catalog.redaction_boxes(item) == ()
    assert [(d.decision, d.decision_id, d.boxes) for d in catalog.decisions(item)] == [
        (Decision.REDACT, first, (BANNER, CORNER, REGION)),
        (Decision.APPROVE, third, ()),
    ]
    # The input came back as NEW (the approval of a quarantined input); redacted is a
    # review reason the queue takes.
    assert catalog.state_of(item) is ItemState.NEW
    catalog.transition(
        [StateChange(item, ItemState.PROCESSED),
         StateChange(item, ItemState.NEEDS_REVIEW, ReviewReason.REDACTED.value)],
        run,
    )  # fmt: skip
    again = catalog.enqueue_review(item, [ReviewReason.REDACTED], run)
    assert [(p.queue_id, p.reasons) for p in catalog.pending_reviews()] == [
        (again, (ReviewReason.REDACTED,))
    ]


def test_redact_needs_boxes_and_only_redact_takes_them(catalog: Catalog, run: int) -> None:
    item, queue = queued(catalog, run, "a")
    with pytest.raises(CatalogError, match="needs at least one box"):
        decide(catalog, queue, Decision.REDACT)
    with pytest.raises(CatalogError, match="only a redact decision blanks boxes"):
        decide(catalog, queue, Decision.APPROVE, BANNER)
    with pytest.raises(CatalogError, match="only a redact decision blanks boxes"):
        decide(catalog, queue, Decision.REJECT, BANNER)
    assert catalog.decisions(item) == [] and catalog.state_of(item) is ItemState.NEEDS_REVIEW


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ((None, -1, 0, 5, 5, BoxSource.DRAWN), "must not be negative"),
        ((-1, 0, 0, 5, 5, BoxSource.DRAWN), "must not be negative"),
        ((None, 0, 0, 0, 5, BoxSource.DRAWN), "at least 1 pixel"),
        ((None, 0, 0, 5, -2, BoxSource.DRAWN), "at least 1 pixel"),
        ((None, 0.5, 0, 5, 5, BoxSource.DRAWN), "whole number"),
        ((None, 0, 0, 5, 5, "drawn"), "must be a BoxSource"),
    ],
)
def test_a_box_is_checked_when_made(fields: tuple[object, ...], message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        RedactionBox(*fields)  # type: ignore[arg-type]


def test_boxes_are_append_only(catalog: Catalog, catalog_url: str, run: int) -> None:
    item, queue = queued(catalog, run, "a")
    decide(catalog, queue, Decision.REDACT, BANNER)
    engine, _ = create_catalog_engine(catalog_url)
    try:
        for statement in ("UPDATE redaction_boxes SET width = 1", "DELETE FROM redaction_boxes"):
            with (
                pytest.raises(sa_exc.DatabaseError, match="append-only"),
                engine.begin() as connection,
            ):
                connection.execute(sa.text(statement))
        # The database refuses what the record refuses, for a writer by hand.
        with pytest.raises(sa_exc.IntegrityError), engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO redaction_boxes (decision_id, box_index, x, y, width, height,"
                    " source) SELECT decision_id, 5, 0, 0, 0, 1, 'drawn' FROM decisions"
                )
            )
        with pytest.raises(sa_exc.IntegrityError), engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO redaction_boxes (decision_id, box_index, x, y, width, height,"
                    " source) SELECT decision_id, 6, 0, 0, 1, 1, 'guessed' FROM decisions"
                )
            )
    finally:
        engine.dispose()
    assert catalog.redaction_boxes(item) == (BANNER,)


def test_0002_keeps_the_queue_and_widens_its_reasons(empty_url: str) -> None:
    """A catalog made at 0001 with a queue in it upgrades; its reasons survive; and back."""
    engine, _ = create_catalog_engine(empty_url)
    insert_reason = sa.text("INSERT INTO review_reasons (queue_id, reason) VALUES (1, :reason)")
    try:
        assert migrate.upgrade(engine, "0001") == "0001"
        with engine.begin() as connection:
            for statement in (
                "INSERT INTO runs (run_id, command, ruleset_version, key_fingerprint, status,"
                " started_at) VALUES (1, 'ingest', 'r', 'k', 'running', '2026-12-01 00:00:00')",
                f"INSERT INTO items (sha256, kind, size, state, registered_run_id, updated_at)"
                f" VALUES ('{sha(1)}', 'dicom', 1, 'needs-review', 1, '2026-12-01 00:00:00')",
                f"INSERT INTO reviews (queue_id, sha256, run_id, queued_at)"
                f" VALUES (1, '{sha(1)}', 1, '2026-12-01 00:00:00')",
            ):
                connection.execute(sa.text(statement))
            connection.execute(insert_reason, {"reason": "spot-check"})
        with pytest.raises(sa_exc.IntegrityError), engine.begin() as connection:
            connection.execute(insert_reason, {"reason": "redacted"})
        assert migrate.upgrade(engine, "0002") == "0002"
        with engine.begin() as connection:
            connection.execute(insert_reason, {"reason": "redacted"})
        with pytest.raises(sa_exc.IntegrityError), engine.begin() as connection:
            connection.execute(insert_reason, {"reason": "not-a-reason"})  # still checked
        with Catalog.open(empty_url) as catalog:
            (pending,) = catalog.pending_reviews()
            assert pending.reasons == (ReviewReason.SPOT_CHECK, ReviewReason.REDACTED)
        assert migrate.downgrade(engine, "0001") == "0001"
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT reason FROM review_reasons")).all() == [
                ("spot-check",)
            ]
            assert "redaction_boxes" not in sa.inspect(connection).get_table_names()
    finally:
        engine.dispose()


def test_redactions_in_force_across_queue_entries(catalog: Catalog, run: int) -> None:
    item, first_entry = queued(catalog, run, "a")
    other, other_entry = queued(catalog, run, "b")
    decide(catalog, first_entry, Decision.REDACT, BANNER)
    decide(catalog, other_entry, Decision.REDACT, REGION)
    assert catalog.awaiting_redaction() == {item, other}
    # Re-processed, back in the queue on a new entry: a second redaction adds its box.
    catalog.transition([StateChange(item, ItemState.NEW), StateChange(item, ItemState.PROCESSED),
                        StateChange(item, ItemState.NEEDS_REVIEW)], run)  # fmt: skip
    second_entry = catalog.enqueue_review(item, [ReviewReason.REDACTED], run)
    decide(catalog, second_entry, Decision.REDACT, CORNER)
    assert catalog.redactions([item, other, sha("none")]) == {
        item: (BANNER, CORNER),
        other: (REGION,),
    }
    # Approving the redacted file keeps the redaction in force but no longer awaiting.
    catalog.transition([StateChange(item, ItemState.NEW), StateChange(item, ItemState.PROCESSED),
                        StateChange(item, ItemState.NEEDS_REVIEW)], run)  # fmt: skip
    third_entry = catalog.enqueue_review(item, [ReviewReason.REDACTED], run)
    decide(catalog, third_entry, Decision.APPROVE)
    assert catalog.redactions([item]) == {item: (BANNER, CORNER)}
    assert catalog.awaiting_redaction() == {other}
    # Revisiting an entry's decision withdraws that entry's boxes.
    decide(catalog, other_entry, Decision.APPROVE)
    assert catalog.redactions([other]) == {} and catalog.awaiting_redaction() == set()
