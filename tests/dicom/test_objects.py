"""Particular objects: Enhanced MR functional groups, vendor diffusion values, compressed pixels."""

from __future__ import annotations

import datetime as dt
import io
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from pipeline.dicom.deidentify import deidentify_dataset
from pipeline.dicom.profile import Profile
from pipeline.identity.uids import UidMapper
from pipeline.keys import SecretKey
from pipeline.read.dicom import read_dicom
from pipeline.samples import diffusion_series, enhanced_mr, make_subjects
from tests.reference import needs_reference, reference_path

KEY = SecretKey(b"\x33" * 32)


def deid(ds: Dataset, profile: Profile) -> Dataset:
    """De-identify and round-trip through bytes, as a reader of the release would see it."""
    deidentify_dataset(ds, KEY, profile, UidMapper(KEY))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return dcmread(io.BytesIO(buffer.getvalue()))


def days_between(before: str, after: str) -> int:
    parse = lambda v: dt.datetime.strptime(v[:8], "%Y%m%d")  # noqa: E731
    return (parse(after) - parse(before)).days


def test_enhanced_mr_functional_groups_stay_valid(research: Profile) -> None:
    original = enhanced_mr(make_subjects(1)[0], n_frames=3)
    before = dcmread(io.BytesIO(_bytes(original)))
    out = deid(original, research)
    shift = days_between(before.StudyDate, out.StudyDate)
    assert shift < 0
    assert len(out.PerFrameFunctionalGroupsSequence) == len(before.PerFrameFunctionalGroupsSequence)
    for old, new in zip(
        before.PerFrameFunctionalGroupsSequence, out.PerFrameFunctionalGroupsSequence, strict=True
    ):
        old_fc, new_fc = old.FrameContentSequence[0], new.FrameContentSequence[0]
        assert (
            days_between(old_fc.FrameAcquisitionDateTime, new_fc.FrameAcquisitionDateTime) == shift
        )
        assert new_fc.FrameAcquisitionDateTime[8:] == old_fc.FrameAcquisitionDateTime[8:]
        assert days_between(old_fc.FrameReferenceDateTime, new_fc.FrameReferenceDateTime) == shift
        assert new_fc.DimensionIndexValues == old_fc.DimensionIndexValues
        assert new.PlanePositionSequence[0].ImagePositionPatient == (
            old.PlanePositionSequence[0].ImagePositionPatient
        )
    shared_old, shared_new = (
        before.SharedFunctionalGroupsSequence[0],
        out.SharedFunctionalGroupsSequence[0],
    )
    assert shared_new.PixelMeasuresSequence == shared_old.PixelMeasuresSequence
    old_dim = before.DimensionOrganizationSequence[0].DimensionOrganizationUID
    assert out.DimensionOrganizationSequence[0].DimensionOrganizationUID == KEY.uid(old_dim)
    assert all(
        item.DimensionOrganizationUID == KEY.uid(old_dim) for item in out.DimensionIndexSequence
    )
    if "ReferencedImageSequence" in shared_old:
        ref_old = shared_old.ReferencedImageSequence[0].ReferencedSOPInstanceUID
        ref_new = shared_new.ReferencedImageSequence[0].ReferencedSOPInstanceUID
        assert ref_new == KEY.uid(ref_old)


@pytest.mark.dciodvfy
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed")
def test_enhanced_mr_output_has_no_dciodvfy_error(research: Profile, tmp_path: Path) -> None:
    out = deid(enhanced_mr(make_subjects(1)[0], n_frames=3), research)
    path = tmp_path / "enhanced.dcm"
    path.write_bytes(_bytes(out))
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    errors = [x for x in (result.stdout + result.stderr).splitlines() if x.startswith("Error")]
    assert errors == []


def test_real_enhanced_mr_from_pydicom_data(research: Profile) -> None:
    data_store = pytest.importorskip("data_store", reason="pydicom-data is not installed")
    path = Path(data_store.__file__).parent / "data" / "emri_small.dcm"
    before = dcmread(path)
    out = deid(read_dicom(path.read_bytes(), "emri"), research)
    assert out.NumberOfFrames == before.NumberOfFrames
    assert out.PixelData == before.PixelData
    assert out.SOPInstanceUID == KEY.uid(before.SOPInstanceUID)
    assert out.SOPClassUID == before.SOPClassUID


@pytest.mark.parametrize("vendor", ["SIEMENS", "GE"])
def test_vendor_diffusion_values_are_carried_to_standard_attributes(
    vendor: str, research: Profile
) -> None:
    bvalues = (0, 1000, 1000, 1000)
    series = diffusion_series(make_subjects(2)[1], bvalues=bvalues, vendor=vendor)
    outs = [deid(ds, research) for ds in series]
    assert [o.DiffusionBValue for o in outs] == [float(b) for b in bvalues]
    for o in outs[1:]:
        direction = [float(v) for v in o.DiffusionGradientOrientation]
        assert abs(sum(v * v for v in direction) - 1.0) < 1e-3
        assert o.DiffusionDirectionality == "DIRECTIONAL"
    assert outs[0].DiffusionDirectionality == "NONE"
    # Only safe private elements stay (rules/dicom/safe_private.yaml); the CSA
    # image header is the rebuilt one, and the series header is gone.
    for o in outs:
        for slot in _private_slots(o):
            assert slot in research.safe_private, slot
        assert (0x0029, "SIEMENS CSA HEADER", 0x20) not in _private_slots(o)


def test_siemens_csa_header_alone_is_enough(research: Profile) -> None:
    ds = diffusion_series(make_subjects(1)[0], bvalues=(800,), vendor="SIEMENS")[0]
    block = ds.private_block(0x0019, "SIEMENS MR HEADER")
    for offset in (0x0C, 0x0D, 0x0E):
        tag = block.get_tag(offset)
        if tag in ds:
            del ds[tag]
    assert deid(ds, research).DiffusionBValue == 800.0


@needs_reference("dicom", "XA_GE_JPEG_02_with_Overlays.dcm")
def test_compressed_pixels_and_transfer_syntax_are_untouched(research: Profile) -> None:
    path = reference_path("dicom", "XA_GE_JPEG_02_with_Overlays.dcm")
    before = dcmread(path)
    out = deid(read_dicom(path.read_bytes(), "xa"), research)
    assert out.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
    assert out.file_meta.TransferSyntaxUID.is_compressed
    assert out.PixelData == before.PixelData


def _private_slots(ds: Dataset) -> set[tuple[int, str, int]]:
    """(group, creator, offset) of every private element at the top level of ``ds``."""
    creators = {
        (t.group, t.element): str(ds[t].value).strip().upper()
        for t in ds.keys()
        if t.group & 1 and 0x10 <= t.element <= 0xFF
    }
    return {
        (t.group, creators[(t.group, t.element >> 8)], t.element & 0xFF)
        for t in ds.keys()
        if t.group & 1 and t.element > 0xFF
    }


def _bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_structured_report_passes_only_with_clean_structured_content(
    research: Profile, tmp_path: Path
) -> None:
    from pipeline.dicom.deidentify import classify
    from pipeline.dicom.profile import load_profile
    from pipeline.errors import UnsupportedObject
    from pipeline.rulefiles import rules_root
    from pipeline.samples import other_objects

    subject = make_subjects(1)[0]
    report = other_objects(subject)["basic_sr"]
    with pytest.raises(UnsupportedObject):
        classify(report, research, keep_burned_in=False)
    site = tmp_path / "sr.yaml"
    option = rules_root() / "dicom" / "options" / "clean_structured_content.yaml"
    site.write_text(f"include: [research.yaml, {option}]\n")
    profile = load_profile(site)
    classify(report, profile, keep_burned_in=False)
    out = deid(report, profile)
    written = _bytes(out).upper()
    for value in subject.phi.values():
        assert value.upper().encode("latin-1", "ignore") not in written
    assert "113104" in {i.CodeValue for i in out.DeidentificationMethodCodeSequence}


@needs_reference("dicom", "US-GE-4AICL142.dcm")
def test_embedded_dataset_and_private_pixels_of_ge_ultrasound_go(research: Profile) -> None:
    path = reference_path("dicom", "US-GE-4AICL142.dcm")
    before = dcmread(path)
    assert 0x60031010 in before and any(t.group == 0x7FE1 for t in before.keys())
    out = deid(read_dicom(path.read_bytes(), "us"), research)
    assert not any(t.group in (0x6003, 0x7FE1) for t in out.keys())
    assert out.PixelData == before.PixelData
