"""Blanking: what is planned from a finding and rules, and that only those pixels change."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from pipeline.pixels.blank import (
    DEFAULT_MARGIN,
    PixelAction,
    blank_pixels,
    fill_value,
    plan_cleaning,
)
from pipeline.pixels.phi import PhiKind, PhiMatch
from pipeline.pixels.regions import Condition, MatchOp, Rect, RegionRule
from pipeline.pixels.scan import FoundWord, OverlayPlane, ScanFinding, ScanStatus
from pipeline.reasons import Reason
from pipeline.samples import make_subjects, mr_series

from .images import with_pixels


def _finding(
    words: tuple[FoundWord, ...] = (),
    signals: tuple[str, ...] = (),
    phi: tuple[PhiMatch, ...] = (),
    overlays: tuple[OverlayPlane, ...] = (),
) -> ScanFinding:
    flagged = bool(words or signals)
    return ScanFinding(
        path="x", key="k", flagged=flagged,
        status=ScanStatus.FLAGGED if flagged else ScanStatus.CLEAR,
        header_signals=signals, words=words, phi_matches=phi, overlays=overlays,
    )  # fmt: skip


def _rule(blank: tuple[Rect, ...] = (), keep: tuple[Rect, ...] = ()) -> RegionRule:
    return RegionRule(
        "test rule", "test.yaml:1", (Condition(0x00080060, "Modality", MatchOp.EQUALS, "MR"),),
        blank=blank, keep=keep,
    )  # fmt: skip


@pytest.fixture(scope="module")
def mr() -> Dataset:
    """A 12-bit MONOCHROME2 slice with no pixel at 0 (so a fill of 0 is visible everywhere)."""
    ds = mr_series(make_subjects(1, seed=3)[0], n_slices=1, rows=64, cols=80)[0]
    return with_pixels(ds, (ds.pixel_array.astype(np.uint16) % 4000) + 7)


def _unchanged_outside(before: np.ndarray, after: np.ndarray, areas: list[Rect]) -> None:
    mask = np.zeros(before.shape[:2], dtype=bool)
    for a in areas:
        mask[a.y : a.y + a.height, a.x : a.x + a.width] = True
    assert np.array_equal(before[~mask], after[~mask])


def test_rule_blanks_exactly_its_rectangle(mr: Dataset) -> None:
    plan = plan_cleaning(mr, _finding(), [_rule(blank=(Rect(5, 3, 20, 10),))])
    assert plan.action is PixelAction.CLEANED and plan.rewrite_pixels
    assert plan.frame_areas == ((Rect(5, 3, 20, 10),),)
    cleaned = blank_pixels(mr, plan, "input x")
    before, after = mr.pixel_array, cleaned.frames[0]
    assert after.dtype == before.dtype and after.shape == before.shape
    assert (after[3:13, 5:25] == 0).all()
    _unchanged_outside(before, after, [Rect(5, 3, 20, 10)])
    assert cleaned.changed == 200


def test_every_ocr_box_is_blanked_with_a_margin_whatever_its_confidence(mr: Dataset) -> None:
    words = (
        FoundWord("JOHN", (10, 10, 12, 6), 1.0, "frame 0"),  # a misread, nearly no confidence
        FoundWord("Tra", (0, 0, 5, 5), 96.0, "overlay 6000"),  # overlays are removed, not blanked
    )
    plan = plan_cleaning(mr, _finding(words, signals=("Modality SC",)), [], margin=2)
    assert plan.action is PixelAction.CLEANED and plan.remove_overlays
    assert plan.frame_areas == ((Rect(8, 8, 16, 10),),)
    assert plan.words_blanked == 1


def test_words_in_an_image_without_evidence_are_anatomy_not_text(mr: Dataset) -> None:
    """No header signal, no evidence of text in that image: the engine's guesses stay."""
    garbage = tuple(FoundWord("~i", (4 * n, 4 * n, 6, 6), 12.0, "frame 0") for n in range(10))
    overlay = FoundWord("Tra", (0, 0, 5, 5), 96.0, "overlay 6000")
    for words in (garbage, (*garbage, overlay)):  # overlay text flags the overlay only
        plan = plan_cleaning(mr, _finding(words), [])
        assert plan.words_blanked == 0 and not any(plan.frame_areas)
    # Evidence in the frame, or a header signal, makes every word of it text.
    name = FoundWord("MULLER", (40, 40, 20, 6), 88.0, "frame 0")
    assert plan_cleaning(mr, _finding((*garbage, name)), []).words_blanked == 11
    assert plan_cleaning(mr, _finding(garbage, signals=("SC",)), []).words_blanked == 10


def test_keep_areas_spare_words_unless_they_are_phi(mr: Dataset) -> None:
    scale = FoundWord("10cm", (60, 20, 10, 6), 90.0, "frame 0")
    name = FoundWord("DOE", (60, 40, 10, 6), 90.0, "frame 0")
    straddling = FoundWord("L", (55, 50, 10, 6), 90.0, "frame 0")  # not wholly inside
    phi = (PhiMatch("DOE", PhiKind.PATIENT_NAME_PART, name.box, image="frame 0"),)
    keep = Rect(58, 0, 22, 64)
    plan = plan_cleaning(mr, _finding((scale, name, straddling), phi=phi), [_rule(keep=(keep,))])
    assert plan.words_kept == 1 and plan.words_blanked == 2
    boxes = plan.frame_areas[0]
    assert Rect(58, 38, 14, 10) in boxes and Rect(53, 48, 14, 10) in boxes
    assert not any(b.x == 58 and b.y == 18 for b in boxes)


def test_what_is_held_back_and_what_is_untouched(mr: Dataset) -> None:
    signal = ("BurnedInAnnotation YES",)
    held = plan_cleaning(mr, _finding(signals=signal), [])
    assert held.action is PixelAction.HELD and "read none" in held.reason
    # The same signal explained by a rule: cleaned.
    assert plan_cleaning(mr, _finding(signals=signal), [_rule((Rect(0, 0, 5, 5),))]).reason == ""
    # OCR boxes over a quarter of the frame (the shipped default): held, not blanked
    # into uselessness.  The 64 x 80 frame has 5120 pixels, a quarter 1280; each box
    # grows by the default margin of 2 on every side.
    assert (mr.Rows, mr.Columns, DEFAULT_MARGIN) == (64, 80, 2)
    quarter = (FoundWord("x", (2, 2, 36, 28), 5.0, "frame 0"),)  # 40 x 32 = 1280: 25.0%
    assert plan_cleaning(mr, _finding(quarter, signal), []).action is PixelAction.CLEANED
    big = (FoundWord("x", (2, 2, 17, 57), 5.0, "frame 0"),)  # 21 x 61 = 1281: just over
    too_much = plan_cleaning(mr, _finding(big, signal), [])
    assert too_much.action is PixelAction.HELD and "of frame 0" in too_much.reason
    assert "more than 25%" in too_much.reason and too_much.held is Reason.TOO_MUCH_TEXT
    # ...unless a rule already blanks that area (a screen whose layout is known).
    ruled = plan_cleaning(mr, _finding(big, signal), [_rule((Rect(0, 0, 24, 64),))])
    assert ruled.action is PixelAction.CLEANED
    assert plan_cleaning(mr, _finding(), []).action is PixelAction.UNTOUCHED
    # Overlay bits set in the pixel data: cleaned (masked), even without text.
    plane = OverlayPlane("overlay 6000", 0x6000, 13, 50)
    masked = plan_cleaning(mr, _finding(overlays=(plane,)), [])
    assert masked.action is PixelAction.CLEANED and masked.rewrite_pixels


def test_monochrome1_is_filled_with_its_maximum(mr: Dataset) -> None:
    inverted = with_pixels(mr, mr.pixel_array)
    inverted.PhotometricInterpretation = "MONOCHROME1"
    plan = plan_cleaning(inverted, _finding(), [_rule((Rect(0, 0, 8, 8),))])
    after = blank_pixels(inverted, plan, "input x").frames[0]
    assert (after[:8, :8] == 4095).all()  # BitsStored 12
    _unchanged_outside(inverted.pixel_array, after, [Rect(0, 0, 8, 8)])


def test_fill_values_by_photometric(mr: Dataset) -> None:
    assert fill_value(mr, "MONOCHROME2", np.dtype(np.uint16)) == 0
    assert fill_value(mr, "RGB", np.dtype(np.uint8)) == 0
    signed = with_pixels(mr, mr.pixel_array.astype(np.int16))
    signed.PixelRepresentation = 1
    assert fill_value(signed, "MONOCHROME2", np.dtype(np.int16)) == -2048
    assert fill_value(signed, "MONOCHROME1", np.dtype(np.int16)) == 2047


def test_palette_colour_fills_the_index_of_its_darkest_entry() -> None:
    ds = Dataset()
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 4, 6, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PhotometricInterpretation = "PALETTE COLOR"
    lut = np.full(4, 0xFFFF, dtype=np.uint16)
    lut[2] = 0x0100  # index 2 is (nearly) black; index 0 is white
    for colour in ("Red", "Green", "Blue"):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [4, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", lut.tobytes())
    ds.PixelData = bytes([0, 1, 3] * 8)
    assert fill_value(ds, "PALETTE COLOR", np.dtype(np.uint8)) == 2


def test_every_frame_of_a_multiframe_image_is_blanked(mr: Dataset) -> None:
    frames = np.stack([mr.pixel_array, mr.pixel_array // 2 + 1, mr.pixel_array])
    multi = with_pixels(mr, frames)
    multi.NumberOfFrames = 3
    word = (FoundWord("ID", (30, 30, 6, 6), 50.0, "frame 1"),)
    signal = ("Modality US",)
    plan = plan_cleaning(multi, _finding(word, signal), [_rule((Rect(0, 0, 4, 4),))], margin=0)
    assert [len(a) for a in plan.frame_areas] == [1, 2, 1]
    after = blank_pixels(multi, plan, "input x").frames
    assert all((after[i][:4, :4] == 0).all() for i in range(3))
    assert (after[1][30:36, 30:36] == 0).all() and (after[0][30:36, 30:36] != 0).all()
    _unchanged_outside(frames[2], after[2], [Rect(0, 0, 4, 4)])
