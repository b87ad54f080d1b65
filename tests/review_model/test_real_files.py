"""The item model on real files: pydicom-data MR, compressed and RGB files, the reference ultrasound."""

from __future__ import annotations

import copy
import io
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from pipeline.catalog import BoxSource
from pipeline.pixels.engines import make_engine
from pipeline.review import ReviewError, frame_window, render_frame
from pipeline.review.boxes import scan_boxes
from pipeline.workspace import init_workspace
from tests.reference import reference_path


def shown(path: Path, frame: int = 0, **window: tuple[float, float]) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(render_frame(path, frame, **window))))


def data_file(name: str) -> Path:
    found = get_testdata_file(name)
    if found is None:
        pytest.skip(f"{name} is not in pydicom's or pydicom-data's test files")
    return Path(str(found))


def test_an_mr_is_shown_through_its_window_or_percentiles(tmp_path: Path) -> None:
    path = data_file("MR_small.dcm")
    ds = pydicom.dcmread(path)
    grey = shown(path)
    assert grey.shape == (ds.Rows, ds.Columns) and grey.dtype == np.uint8
    assert grey.min() < 60 and grey.max() == 255  # the range is used, not a grey smear
    # A narrow window saturates more; the file's own window is used when it has one.
    centre = float(np.median(ds.pixel_array))
    narrow = shown(path, window=(centre, 20.0))
    assert (narrow == 255).mean() > (grey == 255).mean()
    windowed = copy.deepcopy(ds)
    windowed.WindowCenter, windowed.WindowWidth = centre, 20.0
    windowed.save_as(tmp_path / "windowed.dcm")
    assert frame_window(windowed, 0) == (centre, 20.0)
    assert np.array_equal(shown(tmp_path / "windowed.dcm"), narrow)
    # MONOCHROME1: low values white.
    inverted = copy.deepcopy(ds)
    inverted.PhotometricInterpretation = "MONOCHROME1"
    inverted.save_as(tmp_path / "mono1.dcm")
    assert np.array_equal(shown(tmp_path / "mono1.dcm"), 255 - grey)


@pytest.mark.parametrize(
    ("name", "frame"),
    [
        ("MR_small_jpeg_ls_lossless.dcm", 0),  # JPEG-LS
        ("emri_small_RLE.dcm", 7),  # RLE, 10 frames: one decoded
        ("JPEG2000.dcm", 0),
    ],
)
def test_compressed_frames_are_decoded_one_at_a_time(name: str, frame: int) -> None:
    path = data_file(name)
    ds = pydicom.dcmread(path)
    grey = shown(path, frame)
    assert grey.shape == (ds.Rows, ds.Columns) and grey.std() > 10
    if int(ds.get("NumberOfFrames", 1)) > 1:
        assert not np.array_equal(grey, shown(path, 0))  # frame 7 is not frame 0


@pytest.mark.parametrize("name", ["SC_rgb_jpeg_dcmtk.dcm", "SC_ybr_full_uncompressed.dcm"])
def test_colour_is_shown_as_rgb(name: str) -> None:
    path = data_file(name)
    rgb = shown(path)
    reference = pydicom.dcmread(path).pixel_array  # pydicom converts YBR to RGB
    assert rgb.shape == (*reference.shape[:2], 3)
    assert np.abs(rgb.astype(int) - reference.astype(int)).max() <= 1


def test_the_reference_ultrasound_frame_and_boxes(tmp_path: Path) -> None:
    """GE ultrasound in JPEG Baseline with regions: shown in colour; its OCR words and why."""
    if shutil.which("tesseract") is None:
        pytest.skip("tesseract is not installed (Debian: apt-get install tesseract-ocr)")
    path = reference_path("dicom", "US-GE-4AICL142.dcm")
    ds = pydicom.dcmread(path)
    rgb = shown(path)
    assert rgb.shape == (ds.Rows, ds.Columns, 3)
    with pytest.raises(ReviewError, match="no frame 3"):
        render_frame(path, 3, key="0123456789ab")
    workspace = init_workspace(tmp_path / "w")
    engine = make_engine("tesseract")
    boxes = scan_boxes(workspace, path.read_bytes(), "0123456789ab", engine)
    words = [b for b in boxes if b.source is BoxSource.OCR]
    assert words and all(b.text and b.why and b.engine == engine.name for b in words)
    # Its header signals burned-in text (ultrasound regions): every word is text to blank.
    assert all("header signals burned-in text" in b.why for b in words if not b.matched)
    # Its first region starts at row 0: the header-bar rule matches but has no bar to
    # blank.  With the region lower, the bar above it is a REGION box on every frame.
    lower = copy.deepcopy(ds)
    lower.SequenceOfUltrasoundRegions[0].RegionLocationMinY0 = 40
    for region in lower.SequenceOfUltrasoundRegions[1:]:
        region.RegionLocationMinY0 = max(40, int(region.RegionLocationMinY0))
    buffer = io.BytesIO()
    lower.save_as(buffer)
    bars = [
        b
        for b in scan_boxes(workspace, buffer.getvalue(), "0123456789ab", engine)
        if b.source is BoxSource.REGION
    ]
    assert [(b.frame, b.image, b.x, b.y, b.width, b.height) for b in bars] == [
        (None, "every frame", 0, 0, ds.Columns, 40)
    ]
    assert bars[0].matched == "Ultrasound header bar above the first region"
    assert "region rule" in bars[0].why and bars[0].as_redaction().frame is None
