"""A decompression bomb is quarantined as too large, by the inflate cap or by the worker's memory ceiling."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, MRImageStorage

from pipeline.batch.runner import RunOptions
from pipeline.dicom.profile import load_profile
from pipeline.private_store import PrivateStore
from pipeline.reasons import Outcome, Reason
from pipeline.steps.dicom_file import deidentify_tree
from tests.batch.faults import KEY, corpus

_MiB = 1 << 20


def deflate_bomb(path: Path, inflated: int) -> None:
    """A valid deflated DICOM file whose dataset inflates to ``inflated`` bytes (mostly zeros).

    Built as a stream so that the test never holds the inflated bytes itself.
    """
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.10.9999.42"
    written = io.BytesIO()
    ds.save_as(written, enforce_file_format=True)
    # Preamble, DICM and the meta group, whose length (0002,0000) is at byte 140.
    (group_length,) = struct.unpack_from("<I", written.getvalue(), 140)
    head = written.getvalue()[: 144 + group_length]
    small = Dataset()
    small.SOPClassUID = MRImageStorage
    small.SOPInstanceUID = "1.2.826.0.1.3680043.10.9999.42"
    small.PatientName = "Bomb^Bert"
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, small)
    pixels = inflated - len(body.getvalue()) - 12
    element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, pixels)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with path.open("wb") as out:
        out.write(head)
        out.write(compressor.compress(body.getvalue() + element))
        block = bytes(8 * _MiB)
        for _ in range(pixels // len(block)):
            out.write(compressor.compress(block))
        out.write(compressor.compress(bytes(pixels % len(block))))
        out.write(compressor.flush())


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = corpus(tmp_path_factory.mktemp("limits") / "in", 6)
    deflate_bomb(folder / "series000" / "bomb.dcm", 512 * _MiB)
    return folder


def test_the_bomb_is_small_on_disk(source: Path) -> None:
    assert (source / "series000" / "bomb.dcm").stat().st_size < 2 * _MiB  # 512 MiB inflated


def test_a_deflated_dataset_past_the_inflate_cap_is_too_large(source: Path, tmp_path: Path) -> None:
    summary = deidentify_tree(
        source, tmp_path / "out", KEY, load_profile("research"), PrivateStore(tmp_path / "p"),
        options=RunOptions(jobs=1, max_inflated_bytes=64 * _MiB),
    )  # fmt: skip
    assert summary.outcomes == {Outcome.WRITTEN: 6, Outcome.QUARANTINED: 1}
    assert list(summary.reasons) == [Reason.TOO_LARGE]


def test_past_the_memory_ceiling_the_input_is_too_large_not_the_machine_s_problem(
    source: Path, tmp_path: Path
) -> None:
    """The cap allows it; inflating it whole (pydicom does) passes the worker's ceiling."""
    status = Path("/proc/self/status").read_text()
    size = int(next(line for line in status.splitlines() if line.startswith("VmSize")).split()[1])
    ceiling = size * 1024 + 256 * _MiB  # what a forked worker has, and a quarter GiB more
    summary = deidentify_tree(
        source, tmp_path / "out", KEY, load_profile("research"), PrivateStore(tmp_path / "p"),
        options=RunOptions(jobs=1, max_inflated_bytes=2048 * _MiB, memory_bytes=ceiling),
    )  # fmt: skip
    assert summary.outcomes == {Outcome.WRITTEN: 6, Outcome.QUARANTINED: 1}
    assert list(summary.reasons) == [Reason.TOO_LARGE]
