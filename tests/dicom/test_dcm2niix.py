"""Utility as researchers see it: dcm2niix gives the same volumes from our output.

dcm2niix (Debian's, written by none of us) converts the original and the
de-identified series; voxel data, geometry and b-values must be identical.
A naive anonymizer that draws a new SeriesInstanceUID per file is run as a
control: dcm2niix then splits one series into many volumes, the breakage
users of such tools report.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from pipeline.dicom.profile import Profile
from pipeline.keys import SecretKey
from pipeline.private_store import PrivateStore
from pipeline.samples import diffusion_series, make_subjects, mr_series
from pipeline.steps.dicom_file import deidentify_tree

pytestmark = [
    pytest.mark.dcm2niix,
    pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix not installed"),
]


def convert(folder: Path, out: Path) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """Volumes by series number: (voxels, affine, bval text)."""
    out.mkdir()
    subprocess.run(
        ["dcm2niix", "-z", "n", "-b", "n", "-f", "%s", "-o", str(out), str(folder)],
        check=True, capture_output=True,
    )  # fmt: skip
    volumes = {}
    for nii in sorted(out.glob("*.nii")):
        image = nib.load(nii)
        bval = nii.with_suffix(".bval")
        volumes[nii.stem] = (
            np.asanyarray(image.dataobj),
            image.affine,
            bval.read_text().split() if bval.exists() else "",
        )
    return volumes


@pytest.fixture
def originals(tmp_path: Path) -> Path:
    subject = make_subjects(1)[0]
    folder = tmp_path / "orig"
    folder.mkdir()
    series = mr_series(subject, n_slices=6, rows=48, cols=48, series_number=3)
    series += diffusion_series(subject, bvalues=(0, 1000, 1000, 1000), vendor="SIEMENS")
    for index, ds in enumerate(series):
        ds.save_as(folder / f"IM{index:04d}", enforce_file_format=True)
    return folder


def test_same_volumes_geometry_and_bvalues(
    originals: Path, tmp_path: Path, research: Profile
) -> None:
    deidentify_tree(
        originals, tmp_path / "deid", SecretKey(b"\x55" * 32), research,
        PrivateStore(tmp_path / "private"),
    )  # fmt: skip
    before = convert(originals, tmp_path / "nii_orig")
    after = convert(tmp_path / "deid", tmp_path / "nii_deid")
    assert len(before) == 2  # one structural volume, one 4-D diffusion volume
    assert sorted(before) == sorted(after)
    for name, (voxels, affine, bvals) in before.items():
        new_voxels, new_affine, new_bvals = after[name]
        assert np.array_equal(voxels, new_voxels), name
        assert np.allclose(affine, new_affine, atol=1e-4), name
        assert bvals == new_bvals, name
    assert any(bvals for _, _, bvals in after.values())  # b-values survived de-identification


def test_per_file_series_uids_split_the_series(originals: Path, tmp_path: Path) -> None:
    naive = tmp_path / "naive"
    naive.mkdir()
    for path in sorted(originals.iterdir()):
        ds = dcmread(path)
        ds.SeriesInstanceUID = generate_uid()  # what a careless anonymizer does
        ds.save_as(naive / path.name)
    assert len(convert(naive, tmp_path / "nii_naive")) > len(convert(originals, tmp_path / "o"))
