"""Which series are touched, how a bad series is refused, and the rules' loader (no registration)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from pipeline.deface.heads import HeadVerdict, classify_series
from pipeline.deface.rules import load_deface_rules
from pipeline.deface.series import SeriesOutcome, deface_series
from pipeline.deface.volume import AssemblyError, AssemblyProblem, assemble
from pipeline.errors import RuleError
from pipeline.samples.classic_mr import mr_series
from pipeline.samples.enhanced_mr import enhanced_mr
from pipeline.samples.exams import subject_region
from pipeline.samples.subjects import make_subjects

RULES = load_deface_rules()


def _subject(body_part: str):  # type: ignore[no-untyped-def]
    return next(s for s in make_subjects(4) if subject_region(s).body_part == body_part)


def _write(tmp_path: Path, series: list[pydicom.Dataset]) -> list[Path]:
    paths = []
    for k, ds in enumerate(series):
        path = tmp_path / f"{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def test_the_knee_of_the_generated_sample_is_never_touched(tmp_path: Path) -> None:
    knee = mr_series(_subject("KNEE"), n_slices=40, rows=64, cols=64)
    paths = _write(tmp_path, knee)
    before = {p: p.read_bytes() for p in paths}
    result = deface_series(paths, RULES)
    assert result.outcome is SeriesOutcome.NOT_A_HEAD
    assert result.verdict is HeadVerdict.NOT_HEAD
    assert before == {p: p.read_bytes() for p in paths}


def test_a_few_brain_slices_do_not_reach_the_face() -> None:
    brain = mr_series(_subject("BRAIN"), n_slices=4, rows=32, cols=32)
    assert classify_series(brain, RULES.head).verdict is HeadVerdict.TOO_FEW_IMAGES


@pytest.mark.parametrize(
    "name", ["MR_small.dcm", "emri_small.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm", "CT_small.dcm"]
)
def test_real_non_head_files_are_not_head_volumes(name: str) -> None:
    ds = pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True)
    assert classify_series([ds], RULES.head).verdict is not HeadVerdict.HEAD


def test_gaps_and_mixed_orientations_are_refused_with_their_reason() -> None:
    brain = mr_series(_subject("BRAIN"), n_slices=6, rows=16, cols=16)
    gappy = [ds for k, ds in enumerate(brain) if k != 3]
    with pytest.raises(AssemblyError) as gap:
        assemble(gappy)
    assert gap.value.problem is AssemblyProblem.GAPS
    turned = mr_series(_subject("BRAIN"), n_slices=6, rows=16, cols=16)
    turned[2].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    with pytest.raises(AssemblyError) as mixed:
        assemble(turned)
    assert mixed.value.problem is AssemblyProblem.MIXED_ORIENTATION


def test_an_enhanced_object_assembles_every_frame_in_order() -> None:
    ds = enhanced_mr(_subject("BRAIN"), n_frames=5)
    volume = assemble([ds])
    assert volume.voxels.shape[0] == 5
    assert sorted(f.frame for f in volume.frames) == list(range(5))
    normal = volume.affine[:3, 2]
    first = float(normal @ volume.affine[:3, 3])  # the first slice is the lowest along the normal
    positions = [
        float(normal @ [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        for item in ds.PerFrameFunctionalGroupsSequence
    ]
    assert first == pytest.approx(min(positions))


def test_a_head_that_cannot_be_assembled_goes_to_review(tmp_path: Path) -> None:
    brain = mr_series(_subject("BRAIN"), n_slices=14, rows=16, cols=16)
    brain[5].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    result = deface_series(_write(tmp_path, brain), RULES)
    assert result.outcome is SeriesOutcome.FAILED
    assert result.problem == AssemblyProblem.MIXED_ORIENTATION.value


def test_a_typo_in_the_rules_names_file_and_line(tmp_path: Path) -> None:
    text = Path(RULES.path).read_text().replace("action: remove", "action: erase")
    bad = tmp_path / "head.yaml"
    bad.write_text(text)
    with pytest.raises(RuleError, match=r"head\.yaml:\d+: 'action' must be one of: remove, blur"):
        load_deface_rules(bad)
    bad.write_text(Path(RULES.path).read_text().replace("min_slices:", "min_slice:"))
    with pytest.raises(RuleError, match="min_slice"):
        load_deface_rules(bad)
