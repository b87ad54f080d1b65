"""Cleaned pixels written frame by frame: the bytes of the whole-array path, a few frames in memory.

``deid --clean-pixels`` used to decode a cine whole, store it as one Pixel
Data value and write the file into one buffer: three copies of the decoded
cine (911 MB for an 87-frame ultrasound).  :func:`apply_pixel_plan` now
returns a :class:`~pipeline.pixels.encode.PixelStream` that the step writes
after the rest of the data set, one decoded and blanked frame at a time.
The file must be exactly what the whole-array path writes.
"""

from __future__ import annotations

import copy
import hashlib
import io
import itertools
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian

from pipeline.atomic import write_temp
from pipeline.dicom.deidentify import deidentify_dataset
from pipeline.dicom.profile import load_profile
from pipeline.errors import UnreadableInput
from pipeline.identity.uids import UidMapper
from pipeline.keys import SecretKey
from pipeline.pixels.blank import ManualBox, PixelAction, plan_manual
from pipeline.pixels.encode import PixelStream
from pipeline.pixels.regions import Rect
from pipeline.read.dicom import quiet_pydicom
from pipeline.samples import make_subjects, mr_series
from pipeline.steps.dicom_file import apply_pixel_plan
from tests.reference import needs_reference, reference_path

from .images import with_pixels

KEY = SecretKey(b"\x07" * 32)
_BOXES = (ManualBox(None, Rect(1, 2, 9, 5)), ManualBox(0, Rect(20, 10, 30, 8)))


def _cine(frames: int, rows: int, cols: int, *, rgb: bool = False) -> Dataset:
    ds = mr_series(make_subjects(1, seed=9)[0], n_slices=1, rows=rows, cols=cols)[0]
    rng = np.random.default_rng(frames)
    if rgb:
        pixels = rng.integers(1, 255, (frames, rows, cols, 3), dtype=np.uint8)
    else:
        pixels = rng.integers(1, 4000, (frames, rows, cols), dtype=np.uint16)
    ds = with_pixels(ds, pixels)
    ds.NumberOfFrames = frames
    if rgb:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds["PixelData"].VR = "OB"
    return _reread(ds)


def _reread(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def _both(original: Dataset, *, deid: bool = True) -> tuple[bytes, bytes, PixelStream | None]:
    """The file as the whole-array path writes it, as the streamed path does, and the stream.

    Both de-identified first (``deid``), as the step does before cleaning.
    """
    plan = plan_manual(original, _BOXES)
    assert plan.action is PixelAction.CLEANED
    whole, streamed = copy.deepcopy(original), copy.deepcopy(original)
    if deid:
        profile = load_profile("research")
        for ds in (whole, streamed):
            deidentify_dataset(ds, KEY, profile, UidMapper(KEY))
    assert apply_pixel_plan(whole, original, plan, "input x", stream=False) is None
    buffer = io.BytesIO()
    whole.save_as(buffer, enforce_file_format=True)
    pixels = apply_pixel_plan(streamed, original, plan, "input x")
    head = io.BytesIO()
    streamed.save_as(head, enforce_file_format=True)
    tail = b""
    if pixels is not None:
        assert "PixelData" not in streamed
        implicit = streamed.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
        tail = b"".join(pixels.pieces(implicit))
    return buffer.getvalue(), head.getvalue() + tail, pixels


def _bundled(name: str) -> Dataset:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom's test file {name} is not installed")
    return pydicom.dcmread(path)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _cine(5, 48, 64),
        lambda: _cine(3, 31, 33, rgb=True),  # odd length: the value is padded
        lambda: _bundled("emri_small.dcm"),  # real MR, 10 frames, 16 bits
        lambda: _bundled("SC_rgb_rle_2frame.dcm"),  # RLE colour: written natively
        lambda: _bundled("emri_small_jpeg_2k_lossless.dcm"),
        lambda: _bundled("MR-SIEMENS-DICOM-WithOverlays.dcm"),  # overlays removed too
    ],
    ids=["cine-16bit", "cine-rgb-odd", "emri_small", "rgb-rle", "j2k-lossless", "mr-overlays"],
)
def test_the_streamed_file_is_the_whole_array_file(make: object) -> None:
    quiet_pydicom()
    whole, streamed, pixels = _both(make())  # type: ignore[operator]
    assert pixels is not None, "these pixels take the streamed path"
    assert streamed == whole


@needs_reference("dicom", "US-GE-4AICL142.dcm")
def test_the_real_ultrasound_streams_as_it_stores() -> None:
    quiet_pydicom()
    original = pydicom.dcmread(reference_path("dicom", "US-GE-4AICL142.dcm"))
    whole, streamed, pixels = _both(original)
    assert pixels is not None and streamed == whole
    # Its GE private elements after the Pixel Data (the profile removes them):
    # where they stay, the pixels are stored whole, as before.
    assert any(tag > 0x7FE00010 for tag in original.keys())
    whole, streamed, pixels = _both(original, deid=False)
    assert pixels is None and streamed == whole


def test_single_bit_frames_are_stored_whole() -> None:
    """Bits are packed across frame boundaries: the whole-array path stores them."""
    quiet_pydicom()
    whole, streamed, pixels = _both(_bundled("liver_1frame.dcm"))
    assert pixels is None and streamed == whole


def test_a_cine_is_written_holding_a_few_frames(tmp_path: Path) -> None:
    """Decoded, blanked and written frame by frame: the write's peak memory is a few frames,
    not the 60-frame cine (and the digest taken on the way is the file's)."""
    quiet_pydicom()
    original = _cine(60, 256, 256)
    frame_bytes = 256 * 256 * 2
    plan = plan_manual(original, _BOXES)
    ds = copy.deepcopy(original)
    pixels = apply_pixel_plan(ds, original, plan, "input x")
    assert pixels is not None
    head = io.BytesIO()
    ds.save_as(head, enforce_file_format=True)
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        path = write_temp(
            tmp_path, itertools.chain([head.getbuffer()], pixels.pieces(False)), digest
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * frame_bytes, f"{peak / frame_bytes:.1f} frames held"
    written = path.read_bytes()
    assert digest.hexdigest() == hashlib.sha256(written).hexdigest()
    assert written == _both(original, deid=False)[0]


def test_pixel_data_short_of_its_frames_fails_and_leaves_no_file(tmp_path: Path) -> None:
    quiet_pydicom()
    original = _cine(4, 32, 32)
    original.PixelData = original.PixelData[: 32 * 32 * 2 * 3]  # three frames of four
    plan = plan_manual(original, _BOXES)
    ds = copy.deepcopy(original)
    with pytest.raises(UnreadableInput, match="input x"):
        pixels = apply_pixel_plan(ds, original, plan, "input x")
        assert pixels is not None
        write_temp(tmp_path, pixels.pieces(False))
    assert list(tmp_path.iterdir()) == []
