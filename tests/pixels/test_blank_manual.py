"""A reviewer's boxes (ManualBox): blanked on their frame or all, on top of rules and OCR."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from pipeline.pixels.blank import ManualBox, PixelAction, blank_pixels, plan_cleaning, plan_manual
from pipeline.pixels.regions import Rect
from pipeline.pixels.scan import FoundWord, ScanFinding, ScanStatus
from pipeline.reasons import Reason
from pipeline.samples import make_subjects, mr_series

from .images import with_pixels


def finding(words: tuple[FoundWord, ...] = (), signals: tuple[str, ...] = ()) -> ScanFinding:
    return ScanFinding(
        path="x", key="k", flagged=True, status=ScanStatus.FLAGGED, header_signals=signals,
        words=words,
    )  # fmt: skip


@pytest.fixture(scope="module")
def cine() -> Dataset:
    """Three 12-bit MONOCHROME2 frames with no pixel at 0 (a fill of 0 shows everywhere)."""
    ds = mr_series(make_subjects(1, seed=4)[0], n_slices=1, rows=40, cols=50)[0]
    frame = (ds.pixel_array.astype(np.uint16) % 4000) + 7
    ds = with_pixels(ds, np.stack([frame, frame + 1, frame + 2]))
    ds.NumberOfFrames = 3
    return ds


def test_a_box_on_one_frame_and_a_box_on_every_frame(cine: Dataset) -> None:
    boxes = (ManualBox(1, Rect(2, 3, 10, 4)), ManualBox(None, Rect(45, 35, 20, 20)))
    plan = plan_manual(cine, boxes)
    assert plan.action is PixelAction.CLEANED and plan.by_hand == 2
    # Clipped to the image; the all-frames box on every frame.
    corner = Rect(45, 35, 5, 5)
    assert plan.frame_areas == ((corner,), (Rect(2, 3, 10, 4), corner), (corner,))
    cleaned = blank_pixels(cine, plan, "input x")
    before = cine.pixel_array
    assert (cleaned.frames[1, 3:7, 2:12] == 0).all()
    assert (cleaned.frames[:, 35:, 45:] == 0).all()
    mask = np.zeros(before.shape, dtype=bool)
    mask[1, 3:7, 2:12] = True
    mask[:, 35:, 45:] = True
    assert np.array_equal(before[~mask], cleaned.frames[~mask])
    assert plan_manual(cine, ()).action is PixelAction.UNTOUCHED


def test_a_reviewer_locates_text_the_scan_did_not_read(cine: Dataset) -> None:
    signals = ("BurnedInAnnotation YES",)
    assert plan_cleaning(cine, finding(signals=signals), []).held is Reason.TEXT_NOT_LOCATED
    box = ManualBox(None, Rect(0, 0, 50, 6))
    plan = plan_cleaning(cine, finding(signals=signals), [], manual=[box])
    assert plan.action is PixelAction.CLEANED and plan.by_hand == 1
    assert plan.frame_areas == ((Rect(0, 0, 50, 6),),) * 3


def test_a_reviewer_box_over_much_text_is_not_held_back(cine: Dataset) -> None:
    # OCR read text over half of frame 0: held back, unless a reviewer boxed it.
    words = (FoundWord("NAME", (0, 0, 50, 22), 90.0, "frame 0"),)
    held = plan_cleaning(cine, finding(words, ("Modality SC",)), [], margin=0)
    assert held.held is Reason.TOO_MUCH_TEXT
    box = ManualBox(0, Rect(0, 0, 50, 24))
    plan = plan_cleaning(cine, finding(words, ("Modality SC",)), [], margin=0, manual=[box])
    assert plan.action is PixelAction.CLEANED
    assert plan.frame_areas[0] == (Rect(0, 0, 50, 22), Rect(0, 0, 50, 24))
    assert plan.frame_areas[1:] == ((), ())
