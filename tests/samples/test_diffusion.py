"""Diffusion samples keep their b-values only in private elements; check them, and that dcm2niix agrees."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from pipeline.samples import Subject, diffusion_series, make_subjects

from .checks import decode_csa, roundtrip


def _has_keyword(ds: Dataset, keyword: str) -> bool:
    found = False

    def visit(dataset: Dataset, element: pydicom.DataElement) -> None:
        nonlocal found
        found = found or element.keyword == keyword

    ds.walk(visit)
    return found


def test_siemens_diffusion_only_private(subjects: list[Subject], tmp_path: Path) -> None:
    bvalues = (0, 500, 1000, 1000, 2000)
    series = diffusion_series(subjects[0], bvalues=bvalues)
    read = [roundtrip(ds, tmp_path / f"{k}.dcm") for k, ds in enumerate(series)]
    assert len({tuple(ds.ImagePositionPatient) for ds in read}) == 1
    assert [ds.InstanceNumber for ds in read] == [1, 2, 3, 4, 5]
    assert [ds.AcquisitionNumber for ds in read] == [1, 2, 3, 4, 5]
    directions = []
    for ds, bvalue in zip(read, bvalues, strict=True):
        assert not _has_keyword(ds, "DiffusionBValue")
        block = ds.private_block(0x0019, "SIEMENS MR HEADER")
        assert int(block[0x0C].value) == bvalue
        assert block[0x0D].value == ("NONE" if bvalue == 0 else "DIRECTIONAL")
        csa = decode_csa(ds.private_block(0x0029, "SIEMENS CSA HEADER")[0x10].value)
        assert csa["B_value"] == [str(bvalue)]
        if bvalue == 0:
            assert (block.get_tag(0x0E) not in ds) and csa["DiffusionGradientDirection"] == []
            continue
        vector = [float(v) for v in block[0x0E].value]
        assert np.isclose(np.linalg.norm(vector), 1.0)
        assert np.allclose([float(v) for v in csa["DiffusionGradientDirection"]], vector)
        directions.append(tuple(vector))
    assert len(set(directions)) == len(directions)
    b0, high = read[0].pixel_array.astype(float), read[-1].pixel_array.astype(float)
    assert high.mean() < b0.mean(), "signal decays with b"


def test_ge_diffusion_only_private(subjects: list[Subject], tmp_path: Path) -> None:
    series = diffusion_series(subjects[1], vendor="GE", bvalues=(0, 1000, 1000))
    for k, ds in enumerate(series):
        ds = roundtrip(ds, tmp_path / f"{k}.dcm")
        assert ds.Manufacturer == "GE MEDICAL SYSTEMS"
        assert not _has_keyword(ds, "DiffusionBValue")
        assert (0x0029, 0x0010) not in ds, "no Siemens CSA header on a GE image"
        parm = ds.private_block(0x0043, "GEMS_PARM_01")[0x39]
        assert parm.VR == "IS"
        assert [int(v) for v in parm.value] == [(0, 1000, 1000)[k] + 1_000_000_000, 8, 0, 0]
        acq = ds.private_block(0x0019, "GEMS_ACQU_01")
        vector = [float(acq[offset].value) for offset in (0xBB, 0xBC, 0xBD)]
        assert all(acq[offset].VR == "DS" for offset in (0xBB, 0xBC, 0xBD))
        assert np.isclose(np.linalg.norm(vector), 0.0 if k == 0 else 1.0)
        assert ds.private_block(0x0009, "ACME 1.1")[0x02].value == subjects[1].phi.patient_name


def test_unknown_vendor_is_refused(subjects: list[Subject]) -> None:
    with pytest.raises(ValueError, match="vendor"):
        diffusion_series(subjects[0], vendor="PHILIPS")


# -- dcm2niix: an independent reader of the private diffusion encodings --------------------


@pytest.mark.dcm2niix
@pytest.mark.parametrize("vendor", ["SIEMENS", "GE"])
def test_dcm2niix_reads_private_bvalues(vendor: str, tmp_path: Path) -> None:
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix is not installed")
    bvalues = (0, 500, 1000, 2000)
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    out.mkdir()
    subject = make_subjects(1)[0]
    for k, ds in enumerate(diffusion_series(subject, bvalues=bvalues, vendor=vendor)):
        if vendor == "SIEMENS":
            # Leave only the CSA header, so the b-values must come from the binary blob.
            block = ds.private_block(0x0019, "SIEMENS MR HEADER")
            for offset in (0x0C, 0x0D, 0x0E):
                if block.get_tag(offset) in ds:
                    del ds[block.get_tag(offset)]
        ds.save_as(source / f"{k}.dcm", enforce_file_format=True)
    subprocess.run(
        ["dcm2niix", "-o", str(out), "-f", "dwi", str(source)],
        capture_output=True,
        check=True,
    )
    bval = (out / "dwi.bval").read_text().split()
    assert [int(float(v)) for v in bval] == list(bvalues)
    bvec = np.loadtxt(out / "dwi.bvec")
    assert np.allclose(np.linalg.norm(bvec[:, 1:], axis=0), 1.0, atol=1e-3)
