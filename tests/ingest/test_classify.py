"""Inputs are told apart by their bytes, on real files of every kind."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from pipeline.catalog.states import InputKind
from pipeline.ingest.classify import classify, classify_bytes
from tests.reference import reference_path


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("MR_small.dcm", InputKind.DICOM),
        ("CT_small.dcm", InputKind.DICOM),
        ("image_dfl.dcm", InputKind.DICOM),  # deflated
        ("JPEG2000.dcm", InputKind.DICOM),
        ("rtplan.dcm", InputKind.DICOM),
        ("dicomdirtests/DICOMDIR", InputKind.DICOMDIR),
    ],
)
def test_pydicom_files(name: str, kind: InputKind) -> None:
    path = get_testdata_file(name)
    assert path is not None
    assert classify(Path(path)) is kind


def test_dicom_without_its_preamble(tmp_path: Path) -> None:
    """Older exports write the data set without the 128-byte preamble and DICM."""
    path = get_testdata_file("MR_small.dcm")
    assert path is not None
    bare = tmp_path / "bare"
    bare.write_bytes(Path(path).read_bytes()[132:])  # starts at the (0002,0000) group
    assert classify(bare) is InputKind.DICOM


@pytest.mark.parametrize("name", ["gre.dat", "epi.dat"])
def test_real_twix_files(name: str) -> None:
    assert classify(reference_path("twix", name)) is InputKind.TWIX


def test_generated_vb17_and_vd_twix_and_hdf5(tmp_path: Path) -> None:
    import h5py

    from pipeline.samples.twix import SyntheticMeasurement, write_vb17_twix, write_vd_twix

    m = SyntheticMeasurement(channels=2, samples=32, lines=4, slices=1)
    write_vd_twix(tmp_path / "vd.dat", [m])
    write_vb17_twix(tmp_path / "vb.dat", m)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["dataset/xml"] = b"<ismrmrdHeader/>"
    assert classify(tmp_path / "vd.dat") is InputKind.TWIX
    assert classify(tmp_path / "vb.dat") is InputKind.TWIX
    assert classify(tmp_path / "x.h5") is InputKind.ISMRMRD


@pytest.mark.parametrize(
    "head", [b"", b"hello world, not medical", b"\x00" * 4096, b"%PDF-1.7\n", b"PK\x03\x04"]
)
def test_anything_else_is_other(head: bytes) -> None:
    assert classify_bytes(head) is InputKind.OTHER


def test_a_file_that_cannot_be_read_is_other(tmp_path: Path) -> None:
    assert classify(tmp_path / "missing") is InputKind.OTHER
