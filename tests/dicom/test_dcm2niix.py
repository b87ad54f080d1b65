"""Utility as researchers see it: dcm2niix gives the same volumes from our output.

dcm2niix (Debian's, written by none of us) converts the original and the
de-identified series; voxel data, geometry, b-values and b-vectors must be
identical.  Real files first (nibabel's Siemens mosaics with their CSA image
headers, pydicom-data, ../shared/reference), then generated Philips series
whose scaling and diffusion encoding live only in private elements.  A
naive anonymizer that draws a new SeriesInstanceUID per file is run as a
control: dcm2niix then splits one series into many volumes, the breakage
users of such tools report.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import numpy.typing as npt
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from pipeline.dicom.profile import Profile, load_profile
from pipeline.keys import SecretKey
from pipeline.private_store import PrivateStore
from pipeline.samples import (
    diffusion_series,
    make_subjects,
    mr_series,
    philips_dti_series,
    philips_enhanced_dti,
)
from pipeline.steps.dicom_file import deidentify_tree
from tests.reference import ROOT as REFERENCE

pytestmark = [
    pytest.mark.dcm2niix,
    pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix not installed"),
]

KEY = SecretKey(b"\x55" * 32)
NIBABEL_DATA = Path(nib.__file__).parent / "nicom" / "tests" / "data"


@dataclass(frozen=True)
class Volume:
    voxels: npt.NDArray[np.generic]  # scaled as a reader sees them (scl_slope applied)
    affine: npt.NDArray[np.float64]
    bval: list[str]
    bvec: list[str]


def convert(folder: Path, out: Path) -> dict[str, Volume]:
    """Volumes by dcm2niix's name for them (series number and echo)."""
    out.mkdir()
    subprocess.run(
        ["dcm2niix", "-z", "n", "-b", "n", "-f", "%s_%e", "-o", str(out), str(folder)],
        check=True, capture_output=True,
    )  # fmt: skip
    volumes = {}
    for nii in sorted(out.glob("*.nii")):
        image = nib.load(nii)
        bval, bvec = nii.with_suffix(".bval"), nii.with_suffix(".bvec")
        volumes[nii.stem] = Volume(
            np.asanyarray(image.dataobj),
            image.affine,
            bval.read_text().split() if bval.exists() else [],
            bvec.read_text().split() if bvec.exists() else [],
        )
    return volumes


def assert_same_volumes(before: dict[str, Volume], after: dict[str, Volume]) -> None:
    # An overlay dcm2niix saves as "_ROI" goes with the Basic Profile (its
    # bitmap can carry text): every other volume must be there and identical.
    assert sorted(after) == sorted(n for n in before if "_ROI" not in n)
    for name, new in after.items():
        old = before[name]
        assert old.voxels.shape == new.voxels.shape, name
        assert old.voxels.dtype == new.voxels.dtype, name
        assert np.array_equal(old.voxels, new.voxels), name
        assert np.allclose(old.affine, new.affine, atol=1e-4), name
        assert old.bval == new.bval, name
        assert old.bvec == new.bvec, name


def deidentify_groups(
    source: Path, tmp_path: Path, profile: Profile
) -> dict[str, tuple[Path, Path]]:
    """De-identify ``source/<group>/*`` in one run; (original folder, output folder) by group."""
    store = PrivateStore(tmp_path / "private")
    out = tmp_path / "deid"
    summary = deidentify_tree(source, out, KEY, profile, store, keep_burned_in=True)
    groups: dict[str, tuple[Path, Path]] = {}
    for row in store.inputs_for(summary.run_id):
        assert row["outcome"] == "written", (row["input_path"], row["detail"])
        original = Path(str(row["input_path"]))
        series = (out / str(row["output_path"])).parent
        group = original.parent.name
        assert groups.setdefault(group, (original.parent, series)) == (original.parent, series)
    return groups


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
    deidentify_tree(originals, tmp_path / "deid", KEY, research, PrivateStore(tmp_path / "private"))
    before = convert(originals, tmp_path / "nii_orig")
    after = convert(tmp_path / "deid", tmp_path / "nii_deid")
    assert len(before) == 2  # one structural volume, one 4-D diffusion volume
    assert_same_volumes(before, after)
    assert any(v.bval for v in after.values())  # b-values survived de-identification


# Real series: group name -> files.  Each group is one series for dcm2niix.
_NIBABEL = {
    # Siemens DTI mosaic: 48 slices of 36x36 tiled in 256x256, unpacked by the CSA header.
    "siemens_dti_mosaic": ["0.dcm", "1.dcm"],
    # Siemens DWI mosaic, b=0 and b=1000: 48 slices of 128x128 in 896x896.
    "siemens_dwi_mosaic": ["siemens_dwi_0.dcm.gz", "siemens_dwi_1000.dcm.gz"],
    "philips_enhanced_mprage": ["philips_mprage.dcm.gz"],
}
_PYDICOM_DATA = {
    "philips_mr": ["MR2_UNCR.dcm"],
    "enhanced_mr": ["emri_small.dcm"],
    "siemens_mr_with_overlay": ["MR-SIEMENS-DICOM-WithOverlays.dcm"],
}


def _copy(files: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True)
    for path in files:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        (folder / path.name.removesuffix(".gz")).write_bytes(data)


def test_real_siemens_mosaics_and_vendor_files_convert_the_same(
    tmp_path: Path, research: Profile
) -> None:
    """nibabel's Siemens mosaics (CSA image headers), pydicom-data and ../shared/reference."""
    source = tmp_path / "source"
    for group, names in _NIBABEL.items():
        paths = [NIBABEL_DATA / n for n in names]
        if not all(p.exists() for p in paths):
            pytest.skip(f"nibabel's test data lacks {names}")
        _copy(paths, source / group)
    data_store = pytest.importorskip("data_store", reason="pydicom-data is not installed")
    bundled = Path(data_store.__file__).parent / "data"
    for group, names in _PYDICOM_DATA.items():
        _copy([bundled / n for n in names], source / group)
    heads = REFERENCE / "heads" / "t1_fl2d_sag_hfs"
    if heads.is_dir():  # ../shared/reference: a real Siemens head with CSA headers
        _copy(sorted(heads.glob("*.dcm")), source / "reference_siemens_t1")
    groups = deidentify_groups(source, tmp_path, research)
    assert len(groups) >= len(_NIBABEL) + len(_PYDICOM_DATA)
    mosaics = 0
    for group, (original, deidentified) in sorted(groups.items()):
        before = convert(original, tmp_path / f"nii_{group}_orig")
        after = convert(deidentified, tmp_path / f"nii_{group}_deid")
        assert before, group
        assert_same_volumes(before, after)
        if group.endswith("_mosaic"):
            (volume,) = after.values()
            assert volume.voxels.shape[2] == 48, group  # the mosaic was unpacked into slices
            mosaics += 1
    assert mosaics == 2
    (dwi,) = convert(groups["siemens_dwi_mosaic"][1], tmp_path / "dwi").values()
    assert dwi.voxels.shape == (128, 128, 48, 2)  # b=0 and b=1000, one volume each


def test_generated_philips_scaling_and_diffusion_convert_the_same(
    tmp_path: Path, research: Profile
) -> None:
    """Philips scale slope (floating-point voxels) and private b-values survive; without
    Retain Safe Private (safe-harbor) they would not."""
    subject = make_subjects(1)[0]
    source = tmp_path / "source"
    classic = source / "philips_classic_dti"
    classic.mkdir(parents=True)
    for index, ds in enumerate(philips_dti_series(subject)):
        ds.save_as(classic / f"IM{index:04d}", enforce_file_format=True)
    (source / "philips_enhanced_dti").mkdir()
    philips_enhanced_dti(subject).save_as(
        source / "philips_enhanced_dti" / "EN0001", enforce_file_format=True
    )
    groups = deidentify_groups(source, tmp_path, research)
    for _, deidentified in groups.values():  # what the kept private elements sit beside goes
        for path in deidentified.iterdir():
            written = path.read_bytes().upper()
            for value in subject.phi.values():
                assert value.upper().encode("latin-1") not in written, value
    for group, (original, deidentified) in groups.items():
        before = convert(original, tmp_path / f"nii_{group}_orig")
        after = convert(deidentified, tmp_path / f"nii_{group}_deid")
        (volume,) = before.values()
        assert volume.voxels.shape == (32, 32, 3, 4), group
        assert volume.voxels.dtype.kind == "f"  # dcm2niix applied the Philips scale slope
        assert volume.bval == ["0", "1000", "1000", "1000"], group
        assert_same_volumes(before, after)
    # The control: a profile without the option loses what the option keeps.
    harbor = deidentify_groups(source, tmp_path / "harbor", load_profile("safe-harbor"))
    lost = convert(harbor["philips_classic_dti"][1], tmp_path / "nii_harbor")
    kept = convert(groups["philips_classic_dti"][1], tmp_path / "nii_kept")
    (lost_volume,), (kept_volume,) = lost.values(), kept.values()
    assert not np.array_equal(lost_volume.voxels, kept_volume.voxels)
    assert lost_volume.bval != kept_volume.bval


def _naive(ds: Dataset) -> Dataset:
    ds.SeriesInstanceUID = generate_uid()  # what a careless anonymizer does
    return ds


def test_per_file_series_uids_split_the_series(originals: Path, tmp_path: Path) -> None:
    naive = tmp_path / "naive"
    naive.mkdir()
    for path in sorted(originals.iterdir()):
        _naive(dcmread(path)).save_as(naive / path.name)
    assert len(convert(naive, tmp_path / "nii_naive")) > len(convert(originals, tmp_path / "o"))
