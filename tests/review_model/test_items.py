"""The review's item model on a real ingested workspace: the view, frames, header, boxes.

One ingest run (real Tesseract) of an RGB ultrasound with the name burned in
(cleaned, queued for its pixel findings) and a screen capture with too much
text to blank (written as it is and queued: the reviewer sees the file an
approval would release).
"""

from __future__ import annotations

import io
import json
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from pipeline.catalog import (
    BoxSource,
    Catalog,
    CatalogError,
    Decision,
    RedactionBox,
    ReviewReason,
)
from pipeline.catalog.states import ItemState
from pipeline.ingest.once import ingest_once
from pipeline.pixels.engines import make_engine
from pipeline.review import (
    ItemView,
    ReviewError,
    header_changes,
    item_boxes,
    open_item,
    render_frame,
    scan_cache_path,
)
from pipeline.samples import Subject, make_subjects, other_objects
from pipeline.samples.burned_text import printed_name
from pipeline.workspace import Workspace, init_workspace, open_workspace
from tests.flows.sample import config_text

CONFIG = config_text(jobs=1)


@dataclass(frozen=True)
class Queue:
    workspace: Workspace
    subject: Subject
    ultrasound: int  # queue ids
    capture: int


@pytest.fixture(scope="module")
def queue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Queue]:
    if shutil.which("tesseract") is None:
        pytest.skip("tesseract is not installed (Debian: apt-get install tesseract-ocr)")
    workspace = init_workspace(tmp_path_factory.mktemp("review") / "w")
    (workspace.root / "mricurate.toml").write_text(CONFIG)
    workspace = open_workspace(workspace.root)
    subject = make_subjects(1, seed=8)[0]
    objects = other_objects(subject)
    exam = workspace.incoming / "exam"
    exam.mkdir()
    objects["ultrasound"].save_as(exam / "us.dcm", enforce_file_format=True)
    objects["secondary_capture"].save_as(exam / "sc.dcm", enforce_file_format=True)
    ingest_once(workspace, jobs=1)
    with Catalog.open(workspace.catalog_url) as catalog:
        ids = {}
        for entry in catalog.pending_reviews():
            (path,) = catalog.paths_of(entry.sha256)
            ids[Path(path.decode()).name] = entry.queue_id
    yield Queue(workspace, subject, ids["us.dcm"], ids["sc.dcm"])


def view(queue: Queue, queue_id: int) -> ItemView:
    with Catalog.open(queue.workspace.catalog_url) as catalog:
        return open_item(queue.workspace, catalog, queue_id)


def png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# -- the view -------------------------------------------------------------------------


def test_a_cleaned_item_names_its_files_pseudonyms_and_reasons(queue: Queue) -> None:
    item = view(queue, queue.ultrasound)
    assert item.reasons == (ReviewReason.PIXEL_FINDINGS,) and item.pending
    assert item.state is ItemState.NEEDS_REVIEW and item.decisions == ()
    assert item.original == queue.workspace.incoming / "exam" / "us.dcm"
    assert item.staged is not None and item.staged.is_relative_to(queue.workspace.staging)
    assert item.staged.is_file() and item.area == "dicom"
    assert item.relpath == f"{item.subject}/{item.study}/{item.series}/{item.staged.name}"
    assert item.subject.startswith("SUBJ-") and item.study.startswith("ST-")
    assert item.series.startswith("SE-")
    assert (item.frames, item.rows, item.columns) == (1, 240, 320)
    assert item.key == item.sha256[:12]
    # The view's repr (a log line, a traceback) shows no path.
    assert "exam" not in repr(item) and str(queue.workspace.root) not in repr(item)


def test_text_too_much_to_blank_is_written_as_it_is_for_the_reviewer(queue: Queue) -> None:
    capture, ultrasound = view(queue, queue.capture), view(queue, queue.ultrasound)
    assert capture.staged is not None and capture.staged.is_file() and capture.area == "dicom"
    assert capture.original is not None
    staged, original = pydicom.dcmread(capture.staged), pydicom.dcmread(capture.original)
    assert np.array_equal(staged.pixel_array, original.pixel_array)  # not cleaned
    assert staged.PatientName != original.PatientName  # the header is de-identified
    # Derived from its header with the workspace key: the same subject and study.
    assert (capture.subject, capture.study) == (ultrasound.subject, ultrasound.study)
    assert capture.series.startswith("SE-") and capture.series != ultrasound.series
    assert capture.frames == 1 and capture.reasons == (ReviewReason.PIXEL_FINDINGS,)


def test_decisions_so_far_are_in_the_view(queue: Queue, tmp_path: Path) -> None:
    # On a copy of the catalog: the module's queue stays as it is.
    copy = tmp_path / "catalog.sqlite"
    shutil.copyfile(queue.workspace.private / "catalog.sqlite", copy)
    box = RedactionBox(None, 0, 0, 480, 90, BoxSource.DRAWN)
    with Catalog.open(f"sqlite:///{copy}") as catalog:
        catalog.decide(queue.capture, Decision.REDACT, reviewer="dr. r", reason="the banner",
                       ruleset_version="rules", boxes=[box])  # fmt: skip
        item = open_item(queue.workspace, catalog, queue.capture)
    (decision,) = item.decisions
    assert decision.decision is Decision.REDACT and decision.boxes == (box,)
    assert not item.pending and item.state is ItemState.QUARANTINED
    with (
        Catalog.open(f"sqlite:///{copy}") as catalog,
        pytest.raises(CatalogError, match="no review 999"),
    ):
        open_item(queue.workspace, catalog, 999)


def test_an_original_that_left_incoming_is_said_so(queue: Queue) -> None:
    original = queue.workspace.incoming / "exam" / "sc.dcm"
    aside = queue.workspace.root / "sc.dcm.aside"
    original.rename(aside)
    try:
        item = view(queue, queue.capture)
        assert item.original is None and item.original_gone
        assert item.frames == 1  # read from its staged output
        with pytest.raises(ReviewError, match=rf"input {item.key}: the original is no longer"):
            header_changes(queue.workspace, item)
        with pytest.raises(ReviewError, match="no longer in incoming"):
            item_boxes(queue.workspace, item)
    finally:
        aside.rename(original)
    assert not view(queue, queue.capture).original_gone


# -- frames ---------------------------------------------------------------------------


def test_original_and_cleaned_frames_side_by_side(queue: Queue) -> None:
    item = view(queue, queue.ultrasound)
    assert item.original is not None and item.staged is not None
    original = png(render_frame(item.original, 0, key=item.key))
    cleaned = png(render_frame(item.staged, 0, key=item.key))
    assert original.mode == cleaned.mode == "RGB" and original.size == cleaned.size == (320, 240)
    # 8-bit RGB is shown as stored; cleaning blackened the name OCR read.
    stored = pydicom.dcmread(item.original).pixel_array
    assert np.array_equal(np.asarray(original), stored)
    assert not np.array_equal(np.asarray(cleaned), stored)
    with pytest.raises(
        ReviewError, match=rf"input {item.key}: there is no frame 1 \(frames 0 to 0\)"
    ):
        render_frame(item.original, 1, key=item.key)


def test_bad_input_is_a_review_error_naming_the_file_by_short_sha(tmp_path: Path) -> None:
    garbage = tmp_path / "DOE^JOHN.dcm"
    garbage.write_bytes(b"not a dicom file at all" * 10)
    with pytest.raises(ReviewError, match=r"input [0-9a-f]{12}: cannot be read as DICOM") as bad:
        render_frame(garbage, 0)
    assert "DOE" not in str(bad.value)
    # A JPEG file whose codestream is cut: the header reads, the frame does not decode.
    from pydicom.data import get_testdata_file

    source = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    source.PixelData = source.PixelData[: len(source.PixelData) // 3] + b"\x00\x00"
    cut = tmp_path / "cut.dcm"
    source.save_as(cut)
    with pytest.raises(ReviewError, match="frame 0 cannot be decoded"):
        render_frame(cut, 0, key="abcdef123456")
    with pytest.raises(ReviewError, match="window needs"):
        render_frame(Path(get_testdata_file("MR_small.dcm")), 0, window=(40.0, 0.0))


# -- the header -----------------------------------------------------------------------


def test_header_before_and_after_with_the_deciding_rule(queue: Queue) -> None:
    item = view(queue, queue.ultrasound)
    changes = {c.keyword: c for c in header_changes(queue.workspace, item)}
    name = changes["PatientName"]
    assert name.before == queue.subject.phi.patient_name and name.after != name.before
    assert name.rule and name.action
    assert changes["PatientID"].before == queue.subject.phi.patient_id
    assert changes["PatientID"].after != queue.subject.phi.patient_id
    released = pydicom.dcmread(item.staged)  # type: ignore[arg-type]
    assert str(released.PatientName) == name.after


# -- boxes ----------------------------------------------------------------------------


def test_ocr_boxes_say_what_was_read_and_why_and_are_cached(queue: Queue) -> None:
    item = view(queue, queue.ultrasound)
    boxes = item_boxes(queue.workspace, item)
    read = [b for b in boxes if b.source is BoxSource.OCR]
    assert read and all(b.engine.startswith("tesseract") for b in read)
    name_parts = set(printed_name(queue.subject.phi.patient_name).split())
    named = [b for b in read if b.matched == "PatientName part"]
    assert named and {b.text.upper() for b in named} & name_parts
    assert all("matches the header's PatientName part" in b.why for b in named)
    assert all(b.frame == 0 and b.image == "frame 0" for b in named)
    # Accepting one gives the catalog a box on its frame, grown as cleaning grows it.
    accepted = named[0].as_redaction()
    assert (accepted.frame, accepted.source) == (0, BoxSource.OCR)
    assert accepted.width == named[0].width + 4 or accepted.x == 0
    # Cached privately (0600), keyed by sha256 + rule set + engine; a reload reads it.
    cache = scan_cache_path(queue.workspace, item.sha256, make_engine("tesseract"))
    assert cache.is_file() and cache.is_relative_to(queue.workspace.private)
    assert cache.name.startswith(item.sha256) and stat.S_IMODE(cache.stat().st_mode) == 0o600
    document = json.loads(cache.read_text())
    document["boxes"][0]["why"] = "from the cache"
    cache.write_text(json.dumps(document))
    again = item_boxes(queue.workspace, item)
    assert again[0] == replace(boxes[0], why="from the cache") and again[1:] == boxes[1:]
    # A cache that cannot be read is scanned again, not trusted.
    cache.write_text("{broken")
    assert item_boxes(queue.workspace, item) == boxes
