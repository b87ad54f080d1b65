"""Every image a file carries is decoded: frames, overlays (both kinds), icons; failures are clear."""

from __future__ import annotations

import copy
import io

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import RLELossless

from pipeline.errors import UnreadableInput
from pipeline.pixels.frames import ImageKind, SourceImage, iter_images
from pipeline.read.dicom import read_dicom
from pipeline.samples import make_subjects, mr_series
from tests.reference import needs_reference

from .images import REFERENCE, text_mask, with_pixels


@pytest.fixture(scope="module")
def slice_() -> Dataset:
    return mr_series(make_subjects(1)[0], n_slices=1, rows=96, cols=128)[0]


def _images(ds: Dataset) -> list[SourceImage]:
    return list(iter_images(ds, "input 0123456789ab"))


def _roundtrip(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return read_dicom(buffer.getvalue(), "input 0123456789ab")


def test_grey_frame_keeps_stored_values_and_the_header_window(slice_: Dataset) -> None:
    (image,) = _images(slice_)
    assert image.kind is ImageKind.FRAME and image.label == "frame 0"
    assert np.array_equal(image.pixels, slice_.pixel_array)
    assert image.window == pytest.approx((-100.0, 2299.0))  # WindowCenter 1100, Width 2400


def test_ybr_jpeg_and_palette_become_rgb() -> None:
    ybr = pydicom.dcmread(get_testdata_file("SC_rgb_dcmtk_+eb+cy+s2.dcm"))  # JPEG YBR_FULL_422
    (image,) = _images(ybr)
    assert image.is_colour and image.pixels.shape == (100, 100, 3)
    # The top-left quarter of this test image is pure red.
    assert tuple(image.pixels[5, 5]) == pytest.approx((254, 0, 0), abs=3)
    native = pydicom.dcmread(get_testdata_file("SC_ybr_full_uncompressed.dcm"))
    (image,) = _images(native)
    assert tuple(image.pixels[5, 5]) == pytest.approx((255, 0, 0), abs=3)
    palette = pydicom.dcmread(get_testdata_file("examples_palette.dcm"))
    (image,) = _images(palette)
    assert image.is_colour and image.pixels.shape == (350, 800, 3)


def test_monochrome1_is_marked_for_inversion(slice_: Dataset) -> None:
    ds = copy.deepcopy(slice_)
    ds.PhotometricInterpretation = "MONOCHROME1"
    (image,) = _images(ds)
    assert image.monochrome1


def test_identical_frames_are_decoded_once_and_pointed_at(slice_: Dataset) -> None:
    frame = slice_.pixel_array
    other = frame[::-1].copy()
    ds = with_pixels(slice_, np.stack([frame, other, frame, other]))
    ds.NumberOfFrames = 4
    images = _images(ds)
    assert [i.label for i in images] == ["frame 0", "frame 1", "frame 2", "frame 3"]
    assert [i.same_as for i in images] == [None, None, 0, 1]


def _add_overlay(ds: Dataset, group: int, plane: np.ndarray) -> None:
    """An overlay in (60xx,3000), bits packed little-endian as the standard says."""
    rows, cols = plane.shape
    ds.add_new(group << 16 | 0x0010, "US", rows)
    ds.add_new(group << 16 | 0x0011, "US", cols)
    ds.add_new(group << 16 | 0x0040, "CS", "G")
    ds.add_new(group << 16 | 0x0050, "SS", [1, 1])
    ds.add_new(group << 16 | 0x0100, "US", 1)
    ds.add_new(group << 16 | 0x0102, "US", 0)
    packed = np.packbits(plane.ravel().astype(np.uint8), bitorder="little").tobytes()
    ds.add_new(group << 16 | 0x3000, "OW", packed + b"\0" * (len(packed) % 2))


def test_overlay_data_plane_is_decoded(slice_: Dataset) -> None:
    ds = copy.deepcopy(slice_)
    plane = text_mask((96, 128), "HELLO", x=4, y=4, height=12) > 0.5
    _add_overlay(ds, 0x6002, plane)
    images = _images(_roundtrip(ds))
    overlay = next(i for i in images if i.kind is ImageKind.OVERLAY)
    assert overlay.label == "overlay 6002" and overlay.bit is None
    assert np.array_equal(overlay.pixels, plane.astype(np.uint8))


def test_overlay_in_unused_high_bits_is_extracted_and_masked_from_the_image(
    slice_: Dataset,
) -> None:
    """Old GE/Philips style: no OverlayData, the plane is bit 15 of 12-bit pixels."""
    frame = slice_.pixel_array
    plane = text_mask(frame.shape, "MRN 1234", x=60, y=70, height=10) > 0.5
    ds = with_pixels(slice_, frame | (plane.astype(np.uint16) << 15))
    for element, vr, value in ((0x0010, "US", 96), (0x0011, "US", 128), (0x0040, "CS", "G"),
                               (0x0050, "SS", [1, 1]), (0x0100, "US", 16), (0x0102, "US", 15)):  # fmt: skip
        ds.add_new(0x6000 << 16 | element, vr, value)
    images = _images(_roundtrip(ds))
    frame_image = images[0]
    overlay = next(i for i in images if i.kind is ImageKind.OVERLAY)
    assert np.array_equal(frame_image.pixels, frame)  # the overlay bit is not image data
    assert overlay.label == "overlay 6000" and overlay.bit == 15
    assert np.array_equal(overlay.pixels, plane.astype(np.uint8))


@needs_reference("dicom")
def test_ge_xa_high_bit_overlay_plane() -> None:
    path = REFERENCE / "XA_GE_JPEG_02_with_Overlays.dcm"
    ds = read_dicom(path.read_bytes(), "input xa")
    images = _images(ds)
    overlays = {i.group: i for i in images if i.kind is ImageKind.OVERLAY}
    assert sorted(overlays) == list(range(0x6000, 0x600A, 2)) + list(range(0x6010, 0x6016, 2))
    assert {g: int(i.pixels.sum()) for g, i in overlays.items() if i.pixels.any()} == {0x6010: 3210}
    assert overlays[0x6010].bit == 13
    frame = images[0]
    assert frame.kind is ImageKind.FRAME and int(frame.pixels.max()) < 256  # 8 stored bits


def test_icon_image_is_decoded() -> None:
    ds = pydicom.dcmread(get_testdata_file("examples_overlay.dcm"))
    icons = [i for i in _images(ds) if i.kind is ImageKind.ICON]
    assert [i.label for i in icons] == ["icon"]
    assert icons[0].pixels.shape == (64, 64, 3)  # a PALETTE COLOR icon, as RGB


def _rle(ds: Dataset) -> Dataset:
    out = copy.deepcopy(ds)
    out.compress(RLELossless)
    return out


def test_truncated_compressed_pixel_data_is_unreadable(slice_: Dataset) -> None:
    ds = _rle(slice_)
    fragment = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([fragment[: len(fragment) // 3]])
    with pytest.raises(
        UnreadableInput, match=r"^input 0123456789ab: .*RLE Lossless.*cannot be decoded"
    ):
        _images(_roundtrip(ds))


def test_wrong_bits_allocated_is_unreadable(slice_: Dataset) -> None:
    ds = copy.deepcopy(slice_)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    with pytest.raises(UnreadableInput, match=r"holds 24576 bytes .* describe 12288"):
        _images(ds)


def test_transfer_syntax_without_decoder_is_unreadable(slice_: Dataset) -> None:
    ds = _rle(slice_)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder at all
    with pytest.raises(UnreadableInput, match=r"MPEG2 .* which no decoder supports"):
        _images(ds)


def test_jpeg_lossless_fragment_cut_short_is_unreadable() -> None:
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_gdcm.dcm"))
    assert ds.file_meta.TransferSyntaxUID.name.startswith("JPEG Lossless")
    fragment = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([fragment[: len(fragment) // 2]])
    with pytest.raises(UnreadableInput, match="JPEG Lossless"):
        _images(ds)
