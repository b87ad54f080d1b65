"""Bad input meets a clear error: empty, not DICOM, or cut short anywhere."""

from __future__ import annotations

import io
import random

import pytest

from pipeline.errors import UnreadableInput
from pipeline.read.dicom import quiet_pydicom, read_dicom
from pipeline.samples import make_subjects, mr_series
from tests.reference import reference_marks, reference_path

# The GDCM vendor samples of ../shared/reference/dicom (see its SOURCE.md): a
# missing one is a reported skip, never a silently shorter list of cases.
REFERENCE_FILES = (
    "MR-SIEMENS-DICOM-WithOverlays.dcm",
    "US-GE-4AICL142.dcm",
    "XA_GE_JPEG_02_with_Overlays.dcm",
)


def generated() -> bytes:
    buffer = io.BytesIO()
    mr_series(make_subjects(1)[0], n_slices=1)[0].save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def source(name: str) -> bytes:
    if name == "generated MR":
        return generated()
    return reference_path("dicom", name).read_bytes()


SOURCES = [
    "generated MR",
    *(pytest.param(n, marks=reference_marks("dicom", n)) for n in REFERENCE_FILES),
]


@pytest.mark.parametrize("name", SOURCES)
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.7, 0.99])
def test_a_file_cut_short_anywhere_is_unreadable(name: str, fraction: float) -> None:
    quiet_pydicom()
    data = source(name)
    read_dicom(data, "whole")  # the whole file reads
    with pytest.raises(UnreadableInput, match="input-key"):
        read_dicom(data[: int(len(data) * fraction)], "input-key")


@pytest.mark.parametrize(
    "data",
    # Random bytes from a fixed seed: every xdist worker must collect the same tests.
    [b"", b"hello, this is a note about Mr Smith\n", random.Random(4096).randbytes(4096),
     b"DICM" * 100],
    ids=["empty", "text", "random", "magic-repeated"],
)  # fmt: skip
def test_not_dicom(data: bytes) -> None:
    with pytest.raises(UnreadableInput, match="label"):
        read_dicom(data, "label")


def test_a_bare_dataset_without_preamble_reads() -> None:
    data = generated()
    full = read_dicom(data, "full")
    # Preamble, DICM prefix and file meta group gone: what old exports and some PACS write.
    meta_end = 128 + 4 + 12 + int.from_bytes(data[128 + 4 + 8 : 128 + 4 + 12], "little")
    for label, cut in (("no preamble", data[128 + 4 :]), ("no file meta", data[meta_end:])):
        bare = read_dicom(cut, label)
        assert bare.SOPClassUID == full.SOPClassUID, label
        assert bare.SOPInstanceUID == full.SOPInstanceUID, label
        assert bare.StudyInstanceUID == full.StudyInstanceUID, label
        assert bare.PixelData == full.PixelData, label
        assert bare == full, label  # every other element too
