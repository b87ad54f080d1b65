"""Bad input meets a clear error: empty, not DICOM, or cut short anywhere."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from pipeline.errors import UnreadableInput
from pipeline.read.dicom import quiet_pydicom, read_dicom
from pipeline.samples import make_subjects, mr_series

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "dicom"


def generated() -> bytes:
    buffer = io.BytesIO()
    mr_series(make_subjects(1)[0], n_slices=1)[0].save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def sources() -> dict[str, bytes]:
    found = {"generated MR": generated()}
    if REFERENCE.is_dir():
        found |= {p.name: p.read_bytes() for p in sorted(REFERENCE.glob("*.dcm"))}
    return found


@pytest.mark.parametrize("name", sorted(sources()))
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.7, 0.99])
def test_a_file_cut_short_anywhere_is_unreadable(name: str, fraction: float) -> None:
    quiet_pydicom()
    data = sources()[name]
    read_dicom(data, "whole")  # the whole file reads
    with pytest.raises(UnreadableInput, match="input-key"):
        read_dicom(data[: int(len(data) * fraction)], "input-key")


@pytest.mark.parametrize(
    "data", [b"", b"hello, this is a note about Mr Smith\n", os.urandom(4096), b"DICM" * 100]
)
def test_not_dicom(data: bytes) -> None:
    with pytest.raises(UnreadableInput, match="label"):
        read_dicom(data, "label")


def test_a_bare_dataset_without_preamble_reads() -> None:
    data = generated()
    assert read_dicom(data[128 + 4 :], "bare") is not None  # DICM prefix and preamble gone
