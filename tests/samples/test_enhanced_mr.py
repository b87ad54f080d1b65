"""Enhanced MR samples carry PHI inside functional groups; check they read back and pass dciodvfy."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.samples import Subject, enhanced_mr, make_subjects, mr_series

from .checks import ENHANCED_MR, dciodvfy_errors, roundtrip


def test_enhanced_mr_reads_back(subjects: list[Subject], tmp_path: Path) -> None:
    ds = roundtrip(enhanced_mr(subjects[0], n_frames=4, rows=24, cols=20), tmp_path / "e.dcm")
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


# -- dciodvfy -------------------------------------------------------------------------------


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
        assert dciodvfy_errors(path) == []
