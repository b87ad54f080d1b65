"""The synthetic samples are what every other test trusts, so check them against pydicom and dciodvfy."""

from __future__ import annotations

import shutil
import struct
import subprocess
import unicodedata
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian

from pipeline.samples import (
    PlantedPHI,
    Subject,
    diffusion_series,
    encode_csa,
    enhanced_mr,
    make_subjects,
    mr_series,
    name_variant,
    other_objects,
    write_sample_tree,
)

MR = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


def _decode_csa(data: bytes) -> dict[str, list[str]]:
    """Just enough of a CSA2 reader (nibabel's rules) to check the encoder's layout."""
    assert data[:8] == b"SV10\x04\x03\x02\x01"
    n_tags, check = struct.unpack_from("<2I", data, 8)
    assert check == 77
    pos = 16
    tags: dict[str, list[str]] = {}
    for _ in range(n_tags):
        raw_name, vm, _vr, _syngodt, n_items, last = struct.unpack_from("<64si4s3i", data, pos)
        pos += 84
        assert last in (77, 205)
        name = raw_name.split(b"\x00")[0].decode("ascii")
        values: list[str] = []
        for index in range(n_items):
            lengths = struct.unpack_from("<4i", data, pos)
            pos += 16
            length = lengths[1]
            assert lengths[0] == lengths[1] == lengths[3]
            if index >= vm:
                assert length == 0, "items past the value multiplicity must be empty"
            values.append(data[pos : pos + length].split(b"\x00")[0].decode("latin-1"))
            pos += length + (-length % 4)
        tags[name] = values[:vm]
    assert pos == len(data)
    return tags


def _roundtrip(ds: Dataset, path: Path) -> Dataset:
    ds.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def _fold(name: str) -> str:
    """Upper case, accents removed, trailing empty components dropped."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper().rstrip("^")


@pytest.fixture(scope="module")
def subjects() -> list[Subject]:
    return make_subjects(4, seed=3)


# -- subjects -------------------------------------------------------------------------------


def test_subjects_are_deterministic_and_distinct() -> None:
    first = make_subjects(12, seed=7)
    assert first == make_subjects(12, seed=7)
    assert first != make_subjects(12, seed=8)
    for field in ("patient_name", "patient_id", "accession_number"):
        assert len({getattr(s.phi, field) for s in first}) == 12
    assert len({s.phi.patient_name.split("^")[0] for s in first}) == 12


def test_names_exercise_normalisation(subjects: list[Subject]) -> None:
    names = [s.phi.patient_name for s in subjects]
    assert any(n.endswith("^") for n in names)
    assert any(n != n.upper() for n in names)
    assert any(not n.isascii() for n in names)
    for name in names:
        name.encode("latin-1")


def test_values_cover_fields_and_name_parts() -> None:
    phi = PlantedPHI(
        patient_name="MÜLLER^JOSÉ^A",
        patient_id="MRN48213977",
        birth_date="19580314",
        accession_number="RAD1",
        institution_name="Klinikum",
        institution_address="Straße 1",
        referring_physician="WAGNER^HELGA^^DR",
        operator_name="BAUER^SVEN",
        station_name="MRC1",
        device_serial_number="1",
        other_patient_ids="KH1",
    )
    values = phi.values()
    assert {"MÜLLER^JOSÉ^A", "MÜLLER", "JOSÉ", "WAGNER", "HELGA", "SVEN", "19580314"} <= set(values)
    assert "A" not in values and "DR" not in values
    assert len(values) == len(set(values))


def test_age_matches_birth_and_study_date(subjects: list[Subject]) -> None:
    for subject in subjects:
        ds = mr_series(subject, n_slices=1, rows=8, cols=8)[0]
        born, seen = ds.PatientBirthDate, ds.StudyDate
        years = int(seen[:4]) - int(born[:4]) - (seen[4:] < born[4:])
        assert ds.PatientAge == subject.age == f"{years:03d}Y"


def test_name_variant_normalises_equal() -> None:
    assert name_variant("MÜLLER^JOSÉ") == "Müller^José^"
    assert name_variant("dubois^amélie") == "Dubois^Amélie^"
    for name in ("MÜLLER^JOSÉ^A", "Dubois^Anna", "JANSSEN^ZOË^^", "côté^siobhán"):
        variant = name_variant(name)
        assert variant != name
        assert _fold(variant) == _fold(name)


# -- classic MR -----------------------------------------------------------------------------


def test_mr_series_reads_back(subjects: list[Subject], tmp_path: Path) -> None:
    subject = subjects[0]
    series = mr_series(subject, n_slices=5, rows=48, cols=40, seed=2)
    read = [_roundtrip(ds, tmp_path / f"{k}.dcm") for k, ds in enumerate(series)]
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
    ds = _roundtrip(series[0], tmp_path / "a.dcm")
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
    assert _decode_csa(image_header)["PatientName"] == [phi.patient_name]
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


# -- diffusion ------------------------------------------------------------------------------


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
    read = [_roundtrip(ds, tmp_path / f"{k}.dcm") for k, ds in enumerate(series)]
    assert len({tuple(ds.ImagePositionPatient) for ds in read}) == 1
    assert [ds.InstanceNumber for ds in read] == [1, 2, 3, 4, 5]
    assert [ds.AcquisitionNumber for ds in read] == [1, 2, 3, 4, 5]
    directions = []
    for ds, bvalue in zip(read, bvalues, strict=True):
        assert not _has_keyword(ds, "DiffusionBValue")
        block = ds.private_block(0x0019, "SIEMENS MR HEADER")
        assert int(block[0x0C].value) == bvalue
        assert block[0x0D].value == ("NONE" if bvalue == 0 else "DIRECTIONAL")
        csa = _decode_csa(ds.private_block(0x0029, "SIEMENS CSA HEADER")[0x10].value)
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
        ds = _roundtrip(ds, tmp_path / f"{k}.dcm")
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


# -- CSA encoder ----------------------------------------------------------------------------


def test_encode_csa_layout() -> None:
    tags = {
        "B_value": ["1000"],
        "DiffusionGradientDirection": ["0.70710678", "0.00000000", "-0.70710678"],
        "ImaPATModeText": ["p2"],
        "Empty": [],
    }
    data = encode_csa(tags)
    assert len(data) % 4 == 0
    assert _decode_csa(data) == tags
    assert struct.unpack_from("<I", data, 8)[0] == 4


def test_encode_csa_rejects_long_names() -> None:
    with pytest.raises(ValueError, match="63"):
        encode_csa({"X" * 64: ["1"]})


# -- enhanced MR and other objects ----------------------------------------------------------


def test_enhanced_mr_reads_back(subjects: list[Subject], tmp_path: Path) -> None:
    ds = _roundtrip(enhanced_mr(subjects[0], n_frames=4, rows=24, cols=20), tmp_path / "e.dcm")
    assert ds.SOPClassUID == ENHANCED_MR
    assert ds.NumberOfFrames == 4
    assert ds.pixel_array.shape == (4, 24, 20)
    frames = ds.PerFrameFunctionalGroupsSequence
    assert len(frames) == 4
    positions = [f.PlanePositionSequence[0].ImagePositionPatient for f in frames]
    assert len({tuple(p) for p in positions}) == 4
    content = frames[2].FrameContentSequence[0]
    assert list(content.DimensionIndexValues) == [1, 3]
    assert content.FrameAcquisitionDateTime.endswith("+0100")
    shared = ds.SharedFunctionalGroupsSequence[0]
    assert shared.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert len(ds.DimensionIndexSequence) == 2
    assert ds.AcquisitionContextSequence == []
    assert ds.PatientName == subjects[0].phi.patient_name


def test_other_objects(subjects: list[Subject], tmp_path: Path) -> None:
    subject = subjects[0]
    name = subject.phi.patient_name
    objects = other_objects(subject)
    assert list(objects) == [
        "secondary_capture", "encapsulated_pdf", "basic_sr", "private_sop", "ultrasound",
    ]  # fmt: skip
    read = {key: _roundtrip(ds, tmp_path / f"{key}.dcm") for key, ds in objects.items()}

    sc = read["secondary_capture"]
    assert (sc.Modality, sc.ConversionType, sc.BurnedInAnnotation) == ("OT", "WSD", "YES")
    assert sc.BitsAllocated == 8
    text_line, background = sc.pixel_array[8:26], sc.pixel_array[88:]
    assert text_line.max() > 200 > background.max(), "the name is burned into the pixels"

    pdf = read["encapsulated_pdf"]
    document = bytes(pdf.EncapsulatedDocument)
    assert document.startswith(b"%PDF-1.4") and b"%%EOF" in document
    assert name.split("^")[0].encode("latin-1") in document
    assert subject.phi.patient_id.encode() in document

    sr = read["basic_sr"]
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.11"
    items = {item.ValueType: item for item in sr.ContentSequence}
    assert name.split("^")[0] in items["TEXT"].TextValue
    assert items["PNAME"].PersonName == subject.phi.referring_physician

    private = read["private_sop"]
    assert private.SOPClassUID == "1.3.12.2.1107.5.9.1"
    assert private.file_meta.MediaStorageSOPClassUID == "1.3.12.2.1107.5.9.1"

    us = read["ultrasound"]
    assert (us.Modality, us.PhotometricInterpretation, us.SamplesPerPixel) == ("US", "RGB", 3)
    assert us.pixel_array.shape == (us.Rows, us.Columns, 3)


# -- the export tree ------------------------------------------------------------------------


def test_sample_tree(tmp_path: Path) -> None:
    subjects = write_sample_tree(tmp_path, n_subjects=3, slices=3, seed=1)
    assert subjects == make_subjects(3, seed=1)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    for subject in subjects:
        folder = [p for p in tmp_path.iterdir() if subject.phi.patient_id in p.name]
        assert len(folder) == 1, "one folder per subject, named with the MRN"

    datasets: list[Dataset] = []
    bare: list[Path] = []
    for path in files:
        if path.name in ("empty.dcm", "notes.txt", "IM9999", "DICOMDIR") or "truncated" in (
            path.name
        ):
            continue
        if path.read_bytes()[128:132] != b"DICM":
            bare.append(path)
            with pytest.raises(InvalidDicomError):
                pydicom.dcmread(path)
        datasets.append(pydicom.dcmread(path, force=True))
    assert len(bare) == 1
    assert not pydicom.dcmread(bare[0], force=True).file_meta

    by_subject: dict[str, list[Dataset]] = {}
    for ds in datasets:
        by_subject.setdefault(ds.PatientID, []).append(ds)
    first, second, last = (by_subject[s.phi.patient_id] for s in subjects)
    assert {ds.StudyInstanceUID for ds in first if ds.Modality == "MR"} == {
        first[0].StudyInstanceUID
    }
    manufacturers = {ds.Manufacturer for ds in second}
    assert manufacturers == {"SIEMENS", "GE MEDICAL SYSTEMS"}
    assert {str(ds.SOPClassUID) for ds in first} >= {ENHANCED_MR, "1.3.12.2.1107.5.9.1"}
    names = {str(ds.PatientName) for ds in last}
    assert len(names) == 2 and len({_fold(n) for n in names}) == 1

    dicomdir = pydicom.dcmread(next(p for p in files if p.name == "DICOMDIR"))
    assert dicomdir.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.1.3.10"
    record = dicomdir.DirectoryRecordSequence[0]
    assert record.DirectoryRecordType == "PATIENT"
    assert record.PatientName == subjects[0].phi.patient_name

    by_name = {p.name: p for p in files}
    assert by_name["empty.dcm"].stat().st_size == 0
    assert by_name["IM0001_truncated.dcm"].stat().st_size == 300
    assert subjects[0].phi.patient_id in by_name["notes.txt"].read_text(encoding="utf-8")
    assert by_name["IM9999"].stat().st_size > 0


def test_sample_tree_without_bad_files(tmp_path: Path) -> None:
    write_sample_tree(tmp_path, n_subjects=1, slices=2, include_bad=False)
    names = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert not names & {"empty.dcm", "notes.txt", "IM9999", "IM0001_truncated.dcm"}


# -- properties -----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 30))
def test_any_seed_gives_encodable_distinct_subjects(seed: int, n: int) -> None:
    subjects = make_subjects(n, seed)
    assert len({s.phi.patient_id for s in subjects}) == n
    for subject in subjects:
        for value in subject.phi.values():
            value.encode("latin-1")
        assert len(subject.phi.accession_number) <= 16


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


def _dciodvfy_errors(path: Path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    lines = (run.stdout + run.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


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
        assert _dciodvfy_errors(path) == []


def _one_subject_per_region() -> list[Subject]:
    chosen: dict[str, Subject] = {}
    for subject in make_subjects(8, seed=0):
        region = mr_series(subject, n_slices=1, rows=4, cols=4)[0].BodyPartExamined
        chosen.setdefault(region, subject)
    assert sorted(chosen) == ["BRAIN", "KNEE"]
    return list(chosen.values())


@pytest.mark.dciodvfy
@pytest.mark.parametrize("n_frames", [1, 3])
def test_enhanced_mr_passes_dciodvfy(n_frames: int, tmp_path: Path) -> None:
    for subject in _one_subject_per_region():
        path = tmp_path / f"{subject.phi.patient_id}.dcm"
        enhanced_mr(subject, n_frames=n_frames).save_as(path, enforce_file_format=True)
        assert _dciodvfy_errors(path) == []


@pytest.mark.dciodvfy
@pytest.mark.parametrize("key", ["secondary_capture", "encapsulated_pdf", "basic_sr", "ultrasound"])
def test_standard_other_objects_pass_dciodvfy(
    subjects: list[Subject], key: str, tmp_path: Path
) -> None:
    path = tmp_path / f"{key}.dcm"
    other_objects(subjects[0])[key].save_as(path, enforce_file_format=True)
    assert _dciodvfy_errors(path) == []


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
