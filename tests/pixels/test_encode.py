"""Cleaned pixels are stored natively and exactly; the Image Pixel module matches them."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
)

from pipeline.errors import UnreadableInput
from pipeline.pixels.blank import PixelAction, PixelPlan, blank_pixels
from pipeline.pixels.encode import (
    output_syntax,
    remove_overlays_and_icons,
    store_native,
    store_pixels,
)
from pipeline.samples import make_subjects, mr_series
from tests.reference import needs_reference

from .images import REFERENCE

_NOTHING = PixelPlan(PixelAction.CLEANED, frame_areas=((),), rewrite_pixels=True)


def _round_trip(ds: Dataset, syntax: pydicom.uid.UID) -> Dataset:
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def test_output_syntax() -> None:
    assert output_syntax(ImplicitVRLittleEndian) == ImplicitVRLittleEndian
    assert output_syntax(ExplicitVRLittleEndian) == ExplicitVRLittleEndian
    assert output_syntax(ExplicitVRBigEndian) == ExplicitVRLittleEndian
    assert output_syntax(JPEGBaseline8Bit) == ExplicitVRLittleEndian
    assert output_syntax(RLELossless) == ExplicitVRLittleEndian


def test_rle_source_is_written_native_with_identical_values() -> None:
    ds = mr_series(make_subjects(1, seed=5)[0], n_slices=1, rows=32, cols=48)[0]
    before = ds.pixel_array.copy()
    ds.compress(RLELossless)
    original = pydicom.dcmread(io.BytesIO(_bytes(ds)))
    syntax = store_pixels(ds, blank_pixels(original, _NOTHING, "input x"), RLELossless)
    assert syntax == ExplicitVRLittleEndian
    out = _round_trip(ds, syntax)
    assert out["PixelData"].VR == "OW" and not out["PixelData"].is_undefined_length
    assert np.array_equal(out.pixel_array, before)


def _bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_overlay_groups_and_icons_are_removed() -> None:
    ds = Dataset()
    ds.add_new(0x60000010, "US", 4)
    ds.add_new(0x60100102, "US", 13)
    ds.add_new(0x60010010, "LO", "PRIVATE")  # odd group: private, not an overlay
    ds.IconImageSequence = [Dataset()]
    ds.Rows = 4
    assert remove_overlays_and_icons(ds) == 3
    assert sorted(int(t) for t in ds.keys()) == [0x00280010, 0x60010010]


@needs_reference("dicom")
def test_jpeg_baseline_ybr_422_becomes_rgb_with_the_decoded_values() -> None:
    source = pydicom.dcmread(REFERENCE / "US-GE-4AICL142.dcm")
    decoded = source.pixel_array.copy()
    target = pydicom.dcmread(REFERENCE / "US-GE-4AICL142.dcm")
    syntax = store_pixels(target, blank_pixels(source, _NOTHING, "input x"), JPEGBaseline8Bit)
    out = _round_trip(target, syntax)
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (out.PhotometricInterpretation, out.SamplesPerPixel, out.PlanarConfiguration) == (
        "RGB", 3, 0,
    )  # fmt: skip
    assert (out.BitsAllocated, out.BitsStored, out.HighBit) == (8, 8, 7)
    assert len(out.PixelData) == 434 * 636 * 3
    assert np.array_equal(out.pixel_array, decoded)
    assert out.LossyImageCompression == "01"
    assert out.LossyImageCompressionMethod == "ISO_10918_1"


@needs_reference("dicom")
def test_jpeg_lossless_with_high_bit_overlays_loses_only_the_overlay_bits() -> None:
    path = REFERENCE / "XA_GE_JPEG_02_with_Overlays.dcm"
    source = pydicom.dcmread(path)
    raw = next(pydicom.pixels.iter_pixels(source, correct_unused_bits=False))
    assert int(np.count_nonzero(raw >> 13 & 1)) == 3210  # the overlay plane at bit 13
    target = pydicom.dcmread(path)
    syntax = store_pixels(target, blank_pixels(source, _NOTHING, "input x"), RLELossless)
    out = _round_trip(target, syntax)
    values = out.pixel_array
    assert values.dtype == np.uint16 and int(values.max()) < 256  # BitsStored 8: nothing above
    assert np.array_equal(values, raw & 0xFF)
    assert "LossyImageCompression" not in out or out.LossyImageCompression != "01"


def test_values_that_do_not_fit_bits_allocated_are_the_input_s_fault() -> None:
    ds = mr_series(make_subjects(1, seed=5)[0], n_slices=1, rows=8, cols=8)[0]
    with pytest.raises(UnreadableInput, match="BitsAllocated 16"):
        store_native(ds, np.zeros((8, 8), np.uint8), ExplicitVRLittleEndian)


def test_defaced_voxels_of_a_lossy_source_still_say_it_was_lossy() -> None:
    """Defacing writes through the same call: a JPEG Baseline head keeps its lossy marks."""
    ds = mr_series(make_subjects(1, seed=5)[0], n_slices=1, rows=32, cols=48)[0]
    ds.ExtendedOffsetTable = b"\0" * 8
    voxels = np.arange(32 * 48, dtype=np.uint16).reshape(32, 48)
    source = pydicom.uid.UID(JPEGBaseline8Bit)
    ds.file_meta.TransferSyntaxUID = source
    ds.PixelData = b"\0" * 16  # what the compressed data was does not matter here
    syntax = store_native(ds, voxels, source)
    assert syntax == ExplicitVRLittleEndian
    assert ds.LossyImageCompression == "01"
    assert ds.LossyImageCompressionMethod == "ISO_10918_1"
    assert "ExtendedOffsetTable" not in ds
    out = _round_trip(ds, syntax)
    assert np.array_equal(out.pixel_array, voxels)
