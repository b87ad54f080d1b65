"""The Catalog API on SQLite and PostgreSQL: runs, sightings, items, outputs, reviews, releases."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from pipeline.catalog import (
    BoxSource,
    Catalog,
    CatalogError,
    Decision,
    IllegalTransition,
    InputKind,
    ItemRecord,
    ItemState,
    OutputRecord,
    RedactionBox,
    ReleaseFile,
    ReviewReason,
    RunStatus,
    Sighting,
    StateChange,
    UnknownItem,
)
from pipeline.reasons import Reason
from tests.catalog.conftest import sha, staged

S = ItemState


def registered(
    catalog: Catalog, run: int, *labels: object, kind: InputKind = InputKind.DICOM
) -> list[str]:
    items = [sha(label) for label in labels]
    catalog.register([(item, kind, 100 + n) for n, item in enumerate(items)], run)
    return items


def output(
    item: str, relpath: str, run: int, subject: str = "sub-1", area: str = "dicom"
) -> OutputRecord:
    return OutputRecord(item, area, relpath, sha(relpath), 10, subject, "rules-1", "key-1", run)


# -- runs -----------------------------------------------------------------------------


def test_a_run_is_recorded_from_start_to_finish(catalog: Catalog) -> None:
    before = dt.datetime.now(dt.UTC)
    run = catalog.start_run("ingest", ruleset_version="rules-1", key_fingerprint="key-1")
    started = catalog.run(run)
    assert (started.command, started.status, started.finished_at) == (
        "ingest",
        RunStatus.RUNNING,
        None,
    )
    assert started.started_at.tzinfo is dt.UTC and started.started_at >= before - dt.timedelta(
        seconds=1
    )
    catalog.finish_run(run, RunStatus.COMPLETED, {"written": 3, "reasons": {"unreadable": 1}})
    finished = catalog.run(run)
    assert finished.status is RunStatus.COMPLETED
    assert finished.summary == {"written": 3, "reasons": {"unreadable": 1}}
    assert finished.finished_at is not None and finished.finished_at >= started.started_at
    assert (finished.ruleset_version, finished.key_fingerprint) == ("rules-1", "key-1")


def test_a_run_ends_once_and_not_as_running(catalog: Catalog, run: int) -> None:
    with pytest.raises(CatalogError, match="not running"):
        catalog.finish_run(run, RunStatus.RUNNING, {})
    catalog.finish_run(run, RunStatus.FAILED, {})
    with pytest.raises(CatalogError, match="already ended"):
        catalog.finish_run(run, RunStatus.COMPLETED, {})
    with pytest.raises(CatalogError, match="no run 999"):
        catalog.finish_run(999, RunStatus.COMPLETED, {})
    with pytest.raises(CatalogError, match="must be JSON"):
        catalog.finish_run(catalog.start_run("x", ruleset_version="", key_fingerprint=""),
                           RunStatus.COMPLETED, {"path": object()})  # fmt: skip


def test_runs_left_running_are_marked_crashed_once(catalog: Catalog) -> None:
    killed = [
        catalog.start_run("ingest", ruleset_version="r", key_fingerprint="k") for _ in range(2)
    ]
    done = catalog.start_run("ingest", ruleset_version="r", key_fingerprint="k")
    catalog.finish_run(done, RunStatus.COMPLETED, {})
    assert catalog.mark_unfinished_runs_crashed() == killed
    assert [catalog.run(r).status for r in (*killed, done)] == [
        RunStatus.CRASHED, RunStatus.CRASHED, RunStatus.COMPLETED,
    ]  # fmt: skip
    assert all(catalog.run(r).finished_at is not None for r in killed)
    assert catalog.mark_unfinished_runs_crashed() == []


def test_writes_name_a_run_that_exists(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="no run 42"):
        catalog.register([(sha(1), InputKind.DICOM, 1)], 42)
    assert catalog.items() == []


# -- discovery's cache ----------------------------------------------------------------


def test_sightings_keep_any_path_bytes(catalog: Catalog) -> None:
    latin1 = "/incoming/MÜLLER^HANS/1.dcm".encode("latin-1")  # not UTF-8
    deep = b"/incoming/" + b"d" * 250 + b"/" * 1 + b"x" * 3800  # longer than an index entry
    catalog.record_sightings(
        [(latin1, Sighting(10, 111, sha("a"))), (deep, Sighting(20, 222, sha("b")))]
    )
    assert catalog.sighting(latin1) == Sighting(10, 111, sha("a"))
    assert catalog.sighting(deep) == Sighting(20, 222, sha("b"))
    assert catalog.sighting(os.fsencode("/incoming/other")) is None
    # The file changed: the new sighting replaces the old one.
    catalog.record_sightings(
        [(latin1, Sighting(11, 333, sha("c"))), (latin1, Sighting(12, 444, sha("d")))]
    )
    assert catalog.sighting(latin1) == Sighting(12, 444, sha("d"))


def test_sightings_of_a_whole_folder_at_once(catalog: Catalog) -> None:
    seen = {f"/incoming/{n}.dcm".encode(): Sighting(n, n * 10, sha(n)) for n in range(1200)}
    catalog.record_sightings(list(seen.items()))
    asked = [*seen, b"/incoming/new.dcm"]
    assert catalog.sightings(asked) == seen


def test_a_sighting_needs_a_content_hash_not_a_path(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="sha256") as refused:
        catalog.record_sightings([(b"/in/DOE^JOHN.dcm", Sighting(1, 1, "/in/DOE^JOHN.dcm"))])
    assert "DOE" not in str(refused.value)


# -- items and history ----------------------------------------------------------------


def test_register_creates_only_unknown_items(catalog: Catalog, run: int) -> None:
    a, b = sha("a"), sha("b")
    assert catalog.register(
        [(a, InputKind.DICOM, 5), (b, InputKind.TWIX, 7), (a, InputKind.DICOM, 5)], run
    ) == {a, b}
    catalog.transition([StateChange(a, S.PROCESSED)], run)
    again = catalog.start_run("ingest", ruleset_version="rules-1", key_fingerprint="key-1")
    assert catalog.register([(a, InputKind.DICOM, 5), (sha("c"), InputKind.OTHER, 1)], again) == {
        sha("c")
    }
    assert catalog.state_of(a) is S.PROCESSED  # a known input is left as it is
    assert [t.to_state for t in catalog.history(a)] == [S.NEW, S.PROCESSED]
    first = catalog.history(b)
    assert [(t.from_state, t.to_state, t.reason, t.run_id) for t in first] == [
        (None, S.NEW, None, run)
    ]
    assert catalog.items() == sorted(
        [
            ItemRecord(a, InputKind.DICOM, 5, S.PROCESSED, None),
            ItemRecord(b, InputKind.TWIX, 7, S.NEW, None),
            ItemRecord(sha("c"), InputKind.OTHER, 1, S.NEW, None),
        ],
        key=lambda record: record.sha256,
    )
    assert catalog.state_of(sha("never")) is None and catalog.history(sha("never")) == []


def test_history_is_appended_in_order_with_reasons(catalog: Catalog, run: int) -> None:
    (item,) = registered(catalog, run, "x")
    later = catalog.start_run("ingest", ruleset_version="rules-2", key_fingerprint="key-1")
    catalog.transition(
        [
            StateChange(item, S.PROCESSED),
            StateChange(item, S.NEEDS_REVIEW, ReviewReason.PIXEL_FINDINGS.value),
        ],
        run,
    )
    catalog.transition([StateChange(item, S.QUARANTINED, Reason.TEXT_NOT_LOCATED.value)], later)
    catalog.transition(
        [StateChange(item, S.NEW), StateChange(item, S.PROCESSED), StateChange(item, S.VERIFIED)],
        later,
    )
    history = catalog.history(item)
    assert [(t.from_state, t.to_state, t.reason, t.run_id) for t in history] == [
        (None, S.NEW, None, run),
        (S.NEW, S.PROCESSED, None, run),
        (S.PROCESSED, S.NEEDS_REVIEW, "pixel-findings", run),
        (S.NEEDS_REVIEW, S.QUARANTINED, "burned-in-text-not-located", later),
        (S.QUARANTINED, S.NEW, None, later),
        (S.NEW, S.PROCESSED, None, later),
        (S.PROCESSED, S.VERIFIED, None, later),
    ]
    assert [t.at for t in history] == sorted(t.at for t in history)
    assert catalog.items([S.VERIFIED]) == [ItemRecord(item, InputKind.DICOM, 100, S.VERIFIED, None)]


def test_a_quarantined_item_keeps_its_reason(catalog: Catalog, run: int) -> None:
    a, b = registered(catalog, run, "a", "b")
    catalog.transition([StateChange(a, S.QUARANTINED, Reason.UNREADABLE.value)], run)
    assert catalog.items([S.QUARANTINED]) == [
        ItemRecord(a, InputKind.DICOM, 100, S.QUARANTINED, "unreadable")
    ]
    assert {r.sha256 for r in catalog.items([S.NEW, S.QUARANTINED])} == {a, b}


def test_a_batch_with_one_illegal_change_changes_nothing(catalog: Catalog, run: int) -> None:
    items = registered(catalog, run, *range(5))
    changes = [StateChange(item, S.PROCESSED) for item in items]
    changes.insert(3, StateChange(items[1], S.RELEASED))  # PROCESSED -> RELEASED is not an edge
    with pytest.raises(
        IllegalTransition, match=f"{items[1][:12]} cannot move from processed to released"
    ):
        catalog.transition(changes, run)
    assert {catalog.state_of(item) for item in items} == {S.NEW}
    assert all(len(catalog.history(item)) == 1 for item in items)


def test_a_batch_naming_an_unknown_item_changes_nothing(catalog: Catalog, run: int) -> None:
    (item,) = registered(catalog, run, "known")
    with pytest.raises(UnknownItem, match=sha("unknown")[:12]):
        catalog.transition(
            [StateChange(item, S.PROCESSED), StateChange(sha("unknown"), S.PROCESSED)], run
        )
    assert catalog.state_of(item) is S.NEW


def test_reasons_are_stable_codes_never_free_text() -> None:
    item = sha("x")
    assert StateChange(item, S.QUARANTINED, Reason.STALLED.value).reason == "stalled"
    assert StateChange(item, S.NEEDS_REVIEW, ReviewReason.SPOT_CHECK.value).reason == "spot-check"
    with pytest.raises(CatalogError, match="stable code") as refused:
        StateChange(item, S.QUARANTINED, "name DOE^JOHN burned in")
    assert "DOE" not in str(refused.value) and item[:12] in str(refused.value)
    with pytest.raises(CatalogError, match="sha256") as bad_key:
        StateChange("/incoming/DOE^JOHN/1.dcm", S.NEW)
    assert "DOE" not in str(bad_key.value)


def test_two_thousand_inputs_in_three_batches(catalog: Catalog, run: int, backend: str) -> None:
    """Batches of the runner's size: one transaction each, chunked past any parameter limit.

    (On PostgreSQL 600, past one chunk of 500: its 2,000 cost 2 s of this folder's budget.)
    """
    count = 2000 if backend == "sqlite" else 600
    items = [sha(n) for n in range(count)]
    assert catalog.register(
        [(item, InputKind.DICOM, n) for n, item in enumerate(items)], run
    ) == set(items)
    catalog.transition([StateChange(item, S.PROCESSED) for item in items], run)
    catalog.record_outputs([output(item, f"sub-1/{item}.dcm", run) for item in items])
    assert len(catalog.items([S.PROCESSED])) == count
    assert len(catalog.outputs_of(items)) == count
    assert catalog.history(items[-1])[-1].to_state is S.PROCESSED


# -- outputs ----------------------------------------------------------------------------


def test_outputs_are_replaced_per_input(catalog: Catalog, run: int) -> None:
    a, b = registered(catalog, run, "a", "b")
    catalog.record_outputs([output(a, "sub-1/st/se/1.dcm", run), output(b, "sub-2/raw.h5", run, "sub-2", "raw"),
                            output(b, "sub-2/raw.h5", run, "sub-2", "fastmri")])  # fmt: skip
    rerun = catalog.start_run("ingest", ruleset_version="rules-2", key_fingerprint="key-1")
    new = OutputRecord(
        a, "dicom", "sub-1/st/se/1b.dcm", sha("new bytes"), 11, "sub-1", "rules-2", "key-1", rerun
    )
    catalog.record_outputs([new])
    assert catalog.outputs_of([a]) == [new]
    assert [(o.input_sha256, o.area, o.relpath) for o in catalog.outputs_of([b, a])] == sorted(
        [
            (a, "dicom", "sub-1/st/se/1b.dcm"),
            (b, "fastmri", "sub-2/raw.h5"),
            (b, "raw", "sub-2/raw.h5"),
        ]
    )
    assert catalog.outputs_of([sha("none")]) == []


def test_two_inputs_cannot_make_one_output(catalog: Catalog, run: int) -> None:
    a, b = registered(catalog, run, "a", "b")
    catalog.record_outputs([output(a, "sub-1/x.dcm", run)])
    with pytest.raises(CatalogError, match=f"output of input {a[:12]}"):
        catalog.record_outputs([output(b, "sub-1/x.dcm", run)])
    with pytest.raises(CatalogError, match="two inputs"):
        catalog.record_outputs([output(b, "sub-1/y.dcm", run), output(a, "sub-1/y.dcm", run)])
    assert [o.input_sha256 for o in catalog.outputs_of([a, b])] == [a]


def test_outputs_need_a_known_area_and_input(catalog: Catalog, run: int) -> None:
    (a,) = registered(catalog, run, "a")
    with pytest.raises(CatalogError, match="area must be one of dicom, raw, fastmri"):
        catalog.record_outputs([output(a, "x", run, area="nifti")])
    with pytest.raises(UnknownItem):
        catalog.record_outputs([output(sha("unknown"), "x", run)])
    assert catalog.outputs_of([a, sha("unknown")]) == []


# -- the review queue -------------------------------------------------------------------


def test_review_queue_approve(catalog: Catalog, run: int) -> None:
    a, b = registered(catalog, run, "a", "b")
    staged(catalog, run, a, b)
    catalog.transition(
        [
            StateChange(a, S.PROCESSED),
            StateChange(a, S.NEEDS_REVIEW, ReviewReason.PIXEL_FINDINGS.value),
        ],
        run,
    )
    queue_a = catalog.enqueue_review(a, [ReviewReason.SPOT_CHECK, ReviewReason.PIXEL_FINDINGS], run)
    queue_b = catalog.enqueue_review(b, [ReviewReason.LEAK_CHECK], run)
    # A rerun queues the same input again: one entry, reasons merged.
    assert (
        catalog.enqueue_review(a, [ReviewReason.CLEANING_DOUBT, ReviewReason.SPOT_CHECK], run)
        == queue_a
    )
    pending = catalog.pending_reviews()
    assert [(p.queue_id, p.sha256, p.reasons, p.run_id) for p in pending] == [
        (
            queue_a,
            a,
            (ReviewReason.PIXEL_FINDINGS, ReviewReason.CLEANING_DOUBT, ReviewReason.SPOT_CHECK),
            run,
        ),
        (queue_b, b, (ReviewReason.LEAK_CHECK,), run),
    ]
    catalog.decide(
        queue_a, Decision.APPROVE, reviewer="dr. reviewer", reason="", ruleset_version="rules-1"
    )
    assert catalog.state_of(a) is S.VERIFIED
    assert catalog.history(a)[-1].reason == "approve" and catalog.history(a)[-1].run_id is None
    assert [p.queue_id for p in catalog.pending_reviews()] == [queue_b]
    assert catalog.approved() == {a}
    (decision,) = catalog.decisions(a)
    assert (decision.queue_id, decision.decision, decision.reviewer, decision.ruleset_version) == (
        queue_a, Decision.APPROVE, "dr. reviewer", "rules-1",
    )  # fmt: skip
    # Decided: the next time it is routed to review it gets a new entry.
    assert catalog.enqueue_review(a, [ReviewReason.SPOT_CHECK], run) not in (queue_a, queue_b)


def test_a_later_decision_supersedes_and_both_are_kept(catalog: Catalog, run: int) -> None:
    (a,) = registered(catalog, run, "a")
    staged(catalog, run, a)
    catalog.transition([StateChange(a, S.PROCESSED), StateChange(a, S.NEEDS_REVIEW)], run)
    queue = catalog.enqueue_review(a, [ReviewReason.UNKNOWN_PRIVATE_CREATOR], run)
    catalog.decide(queue, Decision.APPROVE, reviewer="r1", reason="", ruleset_version="rules-1")
    catalog.decide(
        queue,
        Decision.REJECT,
        reviewer="r2",
        reason="name in a private tag",
        ruleset_version="rules-1",
    )
    assert catalog.state_of(a) is S.QUARANTINED and catalog.approved() == set()
    catalog.decide(
        queue,
        Decision.APPROVE,
        reviewer="r3",
        reason="tag is a device name",
        ruleset_version="rules-2",
    )
    # Back to be processed again; the approval now stands for it.
    assert catalog.state_of(a) is S.NEW and catalog.approved() == {a}
    assert [(d.decision, d.reviewer) for d in catalog.decisions(a)] == [
        (Decision.APPROVE, "r1"), (Decision.REJECT, "r2"), (Decision.APPROVE, "r3"),
    ]  # fmt: skip
    assert [t.reason for t in catalog.history(a)][-3:] == ["approve", "reject", "approve"]


def test_an_input_held_back_without_an_output_cannot_be_approved(
    catalog: Catalog, run: int
) -> None:
    """Approved, it would be RELEASED with no file in any release: refused, rejecting works."""
    (a,) = registered(catalog, run, "a", kind=InputKind.TWIX)
    catalog.transition(
        [StateChange(a, S.PROCESSED, "subject-unknown"), StateChange(a, S.NEEDS_REVIEW)], run
    )
    queue = catalog.enqueue_review(a, [ReviewReason.CLEANING_DOUBT], run)
    with pytest.raises(CatalogError, match=r"without an output .* nothing to approve: reject it"):
        catalog.decide(queue, Decision.APPROVE, reviewer="r", reason="", ruleset_version="rules-1")
    assert catalog.decisions(a) == [] and catalog.state_of(a) is S.NEEDS_REVIEW
    catalog.decide(queue, Decision.REJECT, reviewer="r", reason="no subject", ruleset_version="r1")
    assert catalog.state_of(a) is S.QUARANTINED


def test_reject_needs_a_reason_redact_quarantines(catalog: Catalog, run: int) -> None:
    a, b = registered(catalog, run, "a", "b")
    catalog.transition(
        [StateChange(x, s) for x in (a, b) for s in (S.PROCESSED, S.NEEDS_REVIEW)], run
    )
    queue_a, queue_b = (
        catalog.enqueue_review(x, [ReviewReason.PIXEL_FINDINGS], run) for x in (a, b)
    )
    with pytest.raises(CatalogError, match="needs a reason"):
        catalog.decide(
            queue_a, Decision.REJECT, reviewer="r", reason="  ", ruleset_version="rules-1"
        )
    with pytest.raises(CatalogError, match="reviewer"):
        catalog.decide(queue_a, Decision.APPROVE, reviewer="", reason="", ruleset_version="rules-1")
    with pytest.raises(CatalogError, match="no review 999"):
        catalog.decide(999, Decision.APPROVE, reviewer="r", reason="", ruleset_version="rules-1")
    assert catalog.decisions(a) == [] and catalog.state_of(a) is S.NEEDS_REVIEW
    catalog.decide(
        queue_b,
        Decision.REDACT,
        reviewer="r",
        reason="blank the top band",
        ruleset_version="rules-1",
        boxes=[RedactionBox(None, 0, 0, 64, 12, BoxSource.DRAWN)],
    )
    assert catalog.state_of(b) is S.QUARANTINED and catalog.history(b)[-1].reason == "redact"
    assert catalog.items([S.QUARANTINED])[0].reason == "redact"


def test_a_queued_input_must_exist_and_have_a_reason(catalog: Catalog, run: int) -> None:
    with pytest.raises(UnknownItem):
        catalog.enqueue_review(sha("nobody"), [ReviewReason.SPOT_CHECK], run)
    (a,) = registered(catalog, run, "a")
    with pytest.raises(CatalogError, match="needs a reason"):
        catalog.enqueue_review(a, [], run)
    assert catalog.pending_reviews() == []


# -- releases ---------------------------------------------------------------------------


def test_releases_are_recorded_once_and_the_latest_is_read_back(catalog: Catalog, run: int) -> None:
    assert catalog.latest_release() is None
    a, b = registered(catalog, run, "a", "b")
    first = [ReleaseFile("dicom/sub-1/1.dcm", sha("f1"), 10, a, "sub-1")]
    catalog.record_release("1.0.0", run, first, {"added": 1})
    second = [ReleaseFile("raw/sub-2/2.h5", sha("f2"), 20, b, "sub-2"), *first]
    catalog.record_release("1.1.0", run, second, {"added": 1, "withdrawn_subjects": 0})
    latest = catalog.latest_release()
    assert latest is not None
    assert (latest.version, latest.run_id, dict(latest.changelog)) == (
        "1.1.0",
        run,
        {"added": 1, "withdrawn_subjects": 0},
    )
    assert latest.files == tuple(sorted(second, key=lambda f: f.relpath))
    assert latest.created_at.tzinfo is dt.UTC
    with pytest.raises(CatalogError, match="immutable"):
        catalog.record_release("1.0.0", run, [], {})
    with pytest.raises(CatalogError, match="twice"):
        catalog.record_release("2.0.0", run, [first[0], first[0]], {})
    assert catalog.latest_release() == latest


# -- withdrawals ------------------------------------------------------------------------


def test_withdrawing_a_subject_moves_each_of_their_inputs(catalog: Catalog, run: int) -> None:
    mine, released, theirs = registered(catalog, run, "mine", "released", "theirs")
    catalog.transition(
        [StateChange(x, s) for x in (released, theirs) for s in (S.PROCESSED, S.VERIFIED)], run
    )
    catalog.transition([StateChange(released, S.RELEASED)], run)
    catalog.record_outputs([output(mine, "sub-1/a.dcm", run), output(released, "sub-1/b.dcm", run),
                            output(theirs, "sub-2/c.dcm", run, "sub-2")])  # fmt: skip
    withdraw = catalog.start_run("withdraw", ruleset_version="rules-1", key_fingerprint="key-1")
    assert catalog.withdraw_subject("sub-1", withdraw) == {mine, released}
    assert (catalog.state_of(mine), catalog.state_of(released), catalog.state_of(theirs)) == (
        S.WITHDRAWN, S.WITHDRAWN, S.VERIFIED,
    )  # fmt: skip
    assert catalog.history(released)[-1].run_id == withdraw
    assert catalog.withdrawn_subjects() == {"sub-1"}
    assert (
        catalog.withdraw_subject("sub-1", withdraw) == set()
    )  # asked again: recorded, nothing moves
    assert catalog.withdraw_subject("sub-nobody", withdraw) == set()
    assert catalog.withdrawn_subjects() == {"sub-1", "sub-nobody"}
    with pytest.raises(IllegalTransition):
        catalog.transition([StateChange(mine, S.NEW)], run)
