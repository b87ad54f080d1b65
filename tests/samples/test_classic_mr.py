"""Classic MR series are what most other tests de-identify, so check them against pydicom and dciodvfy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from pipeline.samples import Subject, diffusion_series, make_subjects, mr_series

from .checks import MR, dciodvfy_errors, decode_csa, roundtrip


def test_mr_series_reads_back(subjects: list[Subject], tmp_path: Path) -> None:
    subject = subjects[0]
    series = mr_series(subject, n_slices=5, rows=48, cols=40, seed=2)
    read = [roundtrip(ds, tmp_path / f"{k}.dcm") for k, ds in enumerate(series)]
    raw = (tmp_path / "0.dcm").read_bytes()
    assert raw[128:132] == b"DICM"
    for k, ds in enumerate(read):
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.SOPClassUID == MR == ds.file_meta.MediaStorageSOPClassUID
        assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
        assert ds.SpecificCharacterSet == "ISO_IR 100"
        assert ds.PatientName == subject.phi.patient_name
        assert ds.InstanceNumber == k + 1
        assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "M", "ND"]
        assert ds.AcquisitionDateTime.endswith("+0100")
        assert (ds.Rows, ds.Columns, ds.BitsStored) == (48, 40, 12)
    assert len({ds.SOPInstanceUID for ds in read}) == 5
    assert len({ds.SeriesInstanceUID for ds in read}) == 1


def test_mr_geometry_steps_along_normal(subjects: list[Subject]) -> None:
    for number in (1, 2, 3):
        series = mr_series(subjects[1], n_slices=4, series_number=number)
        orientation = np.array(series[0].ImageOrientationPatient, dtype=float)
        normal = np.cross(orientation[:3], orientation[3:])
        positions = np.array([ds.ImagePositionPatient for ds in series], dtype=float)
        steps = np.diff(positions, axis=0)
        spacing = float(series[0].SpacingBetweenSlices)
        assert np.allclose(steps, normal * spacing, atol=1e-3)
        locations = [float(ds.SliceLocation) for ds in series]
        assert np.allclose(np.diff(locations), spacing, atol=1e-3)
        assert float(series[0].SliceThickness) <= spacing


def test_mr_pixels_are_a_smooth_phantom(subjects: list[Subject]) -> None:
    series = mr_series(subjects[0], n_slices=3, rows=64, cols=64)
    images = [ds.pixel_array.astype(float) for ds in series]
    for image in images:
        assert image.max() < 4096
        assert image.std() > 200, "a phantom, not a flat image"
        assert np.abs(np.diff(image, axis=1)).mean() < 0.1 * image.max(), "smooth, not noise"
    assert not np.array_equal(images[0], images[1]), "slices differ"


def test_mr_plants_phi_everywhere(subjects: list[Subject], tmp_path: Path) -> None:
    subject = subjects[0]
    phi = subject.phi
    series = mr_series(subject, n_slices=3)
    ds = roundtrip(series[0], tmp_path / "a.dcm")
    raw = (tmp_path / "a.dcm").read_bytes()
    for value in phi.values():
        assert value.encode("latin-1") in raw, value
    family = phi.patient_name.split("^")[0]
    assert family in ds.StudyDescription
    assert phi.patient_id in ds.ImageComments
    assert ds.OtherPatientIDs == phi.other_patient_ids
    request = ds.RequestAttributesSequence[0]
    assert request.AccessionNumber == request.RequestedProcedureID == phi.accession_number
    assert request.ScheduledProcedureStepID == phi.accession_number
    assert ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID == ds.StudyInstanceUID
    referenced = ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert referenced in {other.SOPInstanceUID for other in series[1:]}

    csa = ds.private_block(0x0029, "SIEMENS CSA HEADER")
    image_header = csa[0x10].value
    assert image_header.startswith(b"SV10")
    assert phi.patient_name.encode("latin-1") in image_header
    assert decode_csa(image_header)["PatientName"] == [phi.patient_name]
    assert csa[0x20].VR == "OB"
    siemens = ds.private_block(0x0019, "SIEMENS MR HEADER")
    assert siemens[0x0C].VR == "IS" and siemens[0x0E].VR == "FD"
    assert not siemens[0x0C].value and not siemens[0x0E].value, "no diffusion values"
    acme = ds.private_block(0x0009, "ACME 1.1")
    assert acme[0x01].VR == "DA" and acme[0x01].value == phi.birth_date
    assert acme[0x02].value == phi.patient_name


def test_mr_series_is_deterministic_and_joins_a_study(
    subjects: list[Subject], tmp_path: Path
) -> None:
    a = mr_series(subjects[2], n_slices=2, seed=5)
    b = mr_series(subjects[2], n_slices=2, seed=5)
    a[0].save_as(tmp_path / "a", enforce_file_format=True)
    b[0].save_as(tmp_path / "b", enforce_file_format=True)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    other = mr_series(subjects[2], n_slices=2, seed=5, series_number=2, study_uid="1.2.3.4")
    assert other[0].StudyInstanceUID == "1.2.3.4"
    assert other[0].SeriesInstanceUID != a[0].SeriesInstanceUID
    again = mr_series(
        subjects[2], n_slices=2, series_number=2, study_uid=a[0].StudyInstanceUID,
        description_suffix=" REPEAT",
    )  # fmt: skip
    assert again[0].StudyDate == a[0].StudyDate
    assert again[0].SeriesDescription.endswith(" REPEAT")


# -- properties -----------------------------------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 1000),
    rows=st.integers(4, 40),
    cols=st.integers(4, 40),
    n_slices=st.integers(1, 4),
)
def test_any_size_writes_and_reads(seed: int, rows: int, cols: int, n_slices: int) -> None:
    subject = make_subjects(1, seed)[0]
    for ds in mr_series(subject, n_slices=n_slices, rows=rows, cols=cols, seed=seed):
        buffer = pydicom.filebase.DicomBytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        back = pydicom.dcmread(pydicom.filebase.DicomBytesIO(buffer.getvalue()))
        assert back.pixel_array.shape == (rows, cols)


# -- dciodvfy -------------------------------------------------------------------------------


def _classic_cases() -> dict[str, list[Dataset]]:
    """Every protocol of both body regions (brain and left knee), plus both diffusion vendors."""
    cases: dict[str, list[Dataset]] = {}
    for subject in make_subjects(8, seed=0):
        for number in (1, 2, 3):
            ds = mr_series(subject, n_slices=2, series_number=number)[0]
            cases.setdefault(f"{ds.BodyPartExamined}-{ds.ProtocolName}", [ds])
    subject = make_subjects(1, seed=0)[0]
    cases["diffusion-siemens"] = diffusion_series(subject, bvalues=(0, 1000))
    cases["diffusion-ge"] = diffusion_series(subject, vendor="GE", bvalues=(0, 1000))
    return cases


def test_classic_cases_cover_both_regions() -> None:
    assert len(_classic_cases()) == 8


@pytest.mark.dciodvfy
@pytest.mark.parametrize("case", sorted(_classic_cases()))
def test_classic_mr_passes_dciodvfy(case: str, tmp_path: Path) -> None:
    for k, ds in enumerate(_classic_cases()[case]):
        path = tmp_path / f"{k}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == []
