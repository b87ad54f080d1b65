"""The review loop through real ingest runs: redact -> re-processed -> back to review -> released.

One small workspace (a plain MR slice, a screen capture whose text is too
much to blank by rule, an RGB ultrasound with the name burned in), three
ingest runs with the real Tesseract, reviewers' decisions in between:

1. the MR is released; the capture (too much text to blank) is written as
   it is and the ultrasound cleaned, both queued;
2. after the ultrasound is redacted (a drawn box) and the capture rejected:
   the ultrasound alone is processed again, its staged file and output record
   replaced, the box's pixels background and every other pixel as before,
   and it is back in the queue as ``redacted``;
3. after the redacted file is approved: it is published, not processed
   again; the rejected capture is in no release.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pydicom
import pytest

from pipeline.catalog import (
    BoxSource,
    Catalog,
    Decision,
    ItemState,
    OutputRecord,
    RedactionBox,
    ReviewReason,
)
from pipeline.ingest.once import ingest_once
from pipeline.reasons import Reason
from pipeline.samples import make_subjects, mr_series, other_objects
from pipeline.workspace import Workspace, init_workspace, open_workspace
from tests.flows.sample import config_text

CONFIG = config_text(jobs=1)
# Drawn by the reviewer over the ultrasound's image (not over text OCR blanked).
BOX = RedactionBox(None, 100, 100, 40, 30, BoxSource.DRAWN)
Summary = dict[str, object]


@dataclass(frozen=True)
class Loop:
    workspace: Workspace
    mr: str
    capture: str
    ultrasound: str
    summaries: tuple[Summary, Summary, Summary]
    first_output: OutputRecord
    first_pixels: npt.NDArray[np.generic]
    queued_after_redaction: list[tuple[str, tuple[ReviewReason, ...]]]
    state_after_redaction: ItemState | None
    reason_after_redaction: str | None
    second_output: OutputRecord


def sha_of(catalog: Catalog, workspace: Workspace, name: str) -> str:
    path = workspace.incoming / "exam" / name
    seen = catalog.sighting(bytes(path))
    assert seen is not None
    return seen.sha256


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    if shutil.which("tesseract") is None:
        pytest.skip("tesseract is not installed (Debian: apt-get install tesseract-ocr)")
    root = tmp_path_factory.mktemp("redaction") / "w"
    workspace = init_workspace(root)
    (workspace.root / "mricurate.toml").write_text(CONFIG)
    workspace = open_workspace(workspace.root)
    subject = make_subjects(1, seed=3)[0]
    objects = other_objects(subject)
    exam = workspace.incoming / "exam"
    exam.mkdir()
    mr_series(subject, n_slices=1, rows=32, cols=32)[0].save_as(
        exam / "mr.dcm", enforce_file_format=True
    )
    objects["secondary_capture"].save_as(exam / "sc.dcm", enforce_file_format=True)
    objects["ultrasound"].save_as(exam / "us.dcm", enforce_file_format=True)

    first = ingest_once(workspace, jobs=1)
    with Catalog.open(workspace.catalog_url) as catalog:
        mr, capture, ultrasound = (
            sha_of(catalog, workspace, name) for name in ("mr.dcm", "sc.dcm", "us.dcm")
        )
        queue = {p.sha256: p.queue_id for p in catalog.pending_reviews()}
        (first_output,) = catalog.outputs_of([ultrasound])
        first_pixels = read_pixels(workspace, first_output)
        catalog.decide(
            queue[ultrasound], Decision.REDACT, reviewer="dr. r", reason="a name on the probe",
            ruleset_version="rules", boxes=[BOX],
        )  # fmt: skip
        catalog.decide(
            queue[capture], Decision.REJECT, reviewer="dr. r", reason="a screenshot of the chart",
            ruleset_version="rules",
        )  # fmt: skip

    second = ingest_once(workspace, jobs=1)
    with Catalog.open(workspace.catalog_url) as catalog:
        pending = catalog.pending_reviews()
        queued = [(p.sha256, p.reasons) for p in pending]
        record = next(i for i in catalog.items() if i.sha256 == ultrasound)
        (second_output,) = catalog.outputs_of([ultrasound])
        for entry in pending:
            catalog.decide(entry.queue_id, Decision.APPROVE, reviewer="dr. s", reason="",
                           ruleset_version="rules")  # fmt: skip

    third = ingest_once(workspace, jobs=1)
    yield Loop(
        workspace, mr, capture, ultrasound, (first, second, third), first_output, first_pixels,
        queued, record.state, record.reason, second_output,
    )  # fmt: skip


def read_pixels(workspace: Workspace, output: OutputRecord) -> npt.NDArray[np.generic]:
    ds = pydicom.dcmread(workspace.staging / output.area / output.relpath)
    pixels: npt.NDArray[np.generic] = ds.pixel_array.copy()
    return pixels


def test_the_first_run_queues_both_doubtful_files(loop: Loop) -> None:
    first = loop.summaries[0]
    assert first["dicom"]["outcomes"] == {"written": 3}  # type: ignore[index]
    # The capture's text could not be blanked: written for the reviewer, never released alone.
    facts = first["dicom"]["facts"]  # type: ignore[index]
    assert facts[Reason.TOO_MUCH_TEXT.review_fact] == 1
    assert first["release"]["version"] == "v0001"  # type: ignore[index]
    assert first["dicom"]["redacted"] == 0  # type: ignore[index]


def test_a_redaction_is_carried_out_by_the_next_run(loop: Loop) -> None:
    second = loop.summaries[1]
    # Only the redacted input is processed again; the rejected one stays out.
    assert second["dicom"]["inputs"] == 1 and second["dicom"]["redacted"] == 1  # type: ignore[index]
    assert second["dicom"]["outcomes"] == {"written": 1}  # type: ignore[index]
    assert second["release"]["version"] == ""  # type: ignore[index]
    # The staged file was replaced at its path, and its record with it.
    first, after = loop.first_output, loop.second_output
    assert (after.relpath, after.area) == (first.relpath, first.area)
    assert after.sha256 != first.sha256 and after.run_id > first.run_id
    staged = loop.workspace.staging / after.area / after.relpath
    assert staged.is_file() and not list(staged.parent.glob("*.tmp*"))


def test_the_box_is_background_and_every_other_pixel_as_before(loop: Loop) -> None:
    before = loop.first_pixels
    after = read_pixels(loop.workspace, loop.second_output)
    assert before.shape == after.shape and before.ndim == 3  # RGB: the fill is black
    rows = slice(BOX.y, BOX.y + BOX.height)
    cols = slice(BOX.x, BOX.x + BOX.width)
    assert before[rows, cols].any(), "the box must cover image content to prove anything"
    assert not after[rows, cols].any()
    outside = np.ones(before.shape[:2], dtype=bool)
    outside[rows, cols] = False
    assert np.array_equal(before[outside], after[outside])


def test_the_redacted_file_comes_back_to_the_queue(loop: Loop) -> None:
    assert loop.state_after_redaction is ItemState.NEEDS_REVIEW
    assert loop.reason_after_redaction == ReviewReason.REDACTED.value
    ((sha, reasons),) = loop.queued_after_redaction
    assert sha == loop.ultrasound and ReviewReason.REDACTED in reasons


def test_approved_is_published_rejected_never(loop: Loop) -> None:
    third = loop.summaries[2]
    assert third["dicom"]["inputs"] == 0  # not re-processed again: its redaction was carried out
    assert third["release"]["version"] == "v0002"  # type: ignore[index]
    with Catalog.open(loop.workspace.catalog_url) as catalog:
        assert catalog.state_of(loop.ultrasound) is ItemState.RELEASED
        assert catalog.state_of(loop.capture) is ItemState.QUARANTINED
        latest = catalog.latest_release()
        # The approval stands for the redacted file; the redaction stays in force.
        assert catalog.redaction_boxes(loop.ultrasound) == ()
        assert catalog.redactions([loop.ultrasound]) == {loop.ultrasound: (BOX,)}
    assert latest is not None
    released = {f.input_sha256: f for f in latest.files}
    assert set(released) == {loop.mr, loop.ultrasound}
    assert released[loop.ultrasound].sha256 == loop.second_output.sha256
    published = loop.workspace.release / "v0002" / released[loop.ultrasound].relpath
    assert (
        published.read_bytes()
        == (
            loop.workspace.staging / loop.second_output.area / loop.second_output.relpath
        ).read_bytes()
    )
