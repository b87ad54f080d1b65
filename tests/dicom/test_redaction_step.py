"""The DICOM step carries out a reviewer's redaction even without pixel cleaning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from pipeline.batch.runner import RunOptions, run_batch
from pipeline.dicom.profile import load_profile
from pipeline.keys import SecretKey
from pipeline.pixels.blank import ManualBox
from pipeline.pixels.regions import Rect
from pipeline.private_store import PrivateStore
from pipeline.read.content import file_sha256
from pipeline.reasons import Outcome
from pipeline.samples import make_subjects, other_objects
from pipeline.steps.dicom_file import DicomStep

KEY = SecretKey(b"\x07" * 32)


def test_a_capture_held_back_is_written_with_the_reviewers_boxes(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    capture = other_objects(make_subjects(1, seed=5)[0])["secondary_capture"]
    capture.save_as(source / "sc.dcm", enforce_file_format=True)
    sha = file_sha256(source / "sc.dcm")
    # Its three burned-in lines: rows 0-90 of the 96 x 480 capture, from column 0.
    boxes = (ManualBox(None, Rect(0, 0, 480, 90)),)
    results: dict[str, Outcome] = {}
    profile = load_profile("research")

    def run(step: DicomStep, out: str) -> None:
        run_batch(
            step, source, PrivateStore(tmp_path / f"{out}-private"), RunOptions(jobs=1),
            on_result=lambda item, result: results.__setitem__(out, result.outcome),
        )  # fmt: skip

    plain = DicomStep(KEY, profile, tmp_path / "plain")
    redacted = DicomStep(KEY, profile, tmp_path / "redacted", redactions={sha: boxes})
    assert plain.digest() != redacted.digest()  # a new redaction is never "unchanged"
    run(plain, "plain")
    run(redacted, "redacted")
    assert results == {"plain": Outcome.HELD_BACK, "redacted": Outcome.WRITTEN}
    (written,) = (tmp_path / "redacted").rglob("*.dcm")
    ds = pydicom.dcmread(written)
    before = capture.pixel_array
    after = ds.pixel_array
    assert not after[:90].any() and np.array_equal(before[90:], after[90:])
    assert ds.BurnedInAnnotation == "NO"
