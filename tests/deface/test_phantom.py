"""Generated heads whose truth is known (pipeline/samples/head_volume.py), defaced once each.

Series of the template head moved by a known pose, as a scanner sends them:
a classic 3D sagittal series of a prone patient and one enhanced MR object
of 2D axial slices of a patient on their left side, both with the face
removed (two registrations, the module's ~6 s), and the first again with
its face blurred instead (the same warped mask, written back the same way).
Each test checks one promise against the truth the phantom carries: where
its face and brain are, which stored value each voxel had.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from PIL import Image

from pipeline.deface.face import remove_face
from pipeline.deface.rules import DefaceAction, load_deface_rules
from pipeline.deface.series import SeriesOutcome, SeriesResult, deface_series, replace_file
from pipeline.deface.volume import Volume, assemble
from pipeline.deface.write import write_back
from pipeline.samples.head_volume import (
    HeadGrid,
    HeadPhantom,
    HeadPose,
    PatientPosition,
    SlicePlane,
    brain_subject,
    head_datasets,
    make_head,
    write_head_series,
)

# Two registrations for the module: its tests run on one xdist worker (make test: loadgroup).
pytestmark = pytest.mark.xdist_group("deface-phantom")

VIEWS = Path("/tmp/mricurate-deface")


@dataclass(frozen=True)
class Case:
    name: str
    phantom: HeadPhantom
    before: Path
    after: Path
    result: SeriesResult
    action: DefaceAction
    voxels_after: npt.NDArray[np.generic]  # the volume the written files assemble to

    @property
    def background(self) -> float:
        return 5 * self.phantom.noise  # |N(0, 6)| exceeds 30 in one voxel of ~10^6


REMOVED = {
    "classic-3d-sagittal-prone": (
        HeadGrid(SlicePlane.SAGITTAL, rows=128, cols=128, slices=72,
                 position=PatientPosition.HFP),
        HeadPose((8.0, 4.0, -6.0), (5.0, -3.0, 8.0)), False,
    ),
    "enhanced-2d-axial-decubitus": (
        HeadGrid(SlicePlane.AXIAL, rows=128, cols=112, slices=40, slice_mm=4.5,
                 position=PatientPosition.HFDL),
        HeadPose((-6.0, 0.0, 10.0), (0.0, 4.0, -5.0)), True,
    ),
}  # fmt: skip
BLURRED = "classic-3d-sagittal-prone-blurred"
CASES = [*REMOVED, BLURRED]


def _assembled(folder: Path) -> Volume:
    return assemble([pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))])


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    rules = load_deface_rules()
    subject = brain_subject()
    done = {}
    for number, (name, (grid, pose, enhanced)) in enumerate(REMOVED.items()):
        phantom = make_head(grid, pose, seed=number)
        root = tmp_path_factory.mktemp(name)
        datasets = head_datasets(subject, phantom, enhanced=enhanced, seed=number)
        write_head_series(root / "before", datasets)
        shutil.copytree(root / "before", root / "after")
        result = deface_series(sorted((root / "after").glob("*.dcm")), rules)
        voxels = _assembled(root / "after").voxels
        done[name] = Case(name, phantom, root / "before", root / "after", result,
                          DefaceAction.REMOVE, voxels)  # fmt: skip
    # The blur: the first series' warped face, blurred, written back as the stage writes.
    first = done[next(iter(REMOVED))]
    assert first.result.defaced is not None and first.result.volume is not None
    after = first.before.parent / "blurred"
    shutil.copytree(first.before, after)
    paths = sorted(after.glob("*.dcm"))
    datasets = [pydicom.dcmread(p) for p in paths]
    volume = assemble(datasets)
    blurred = remove_face(volume, first.result.defaced.face, DefaceAction.BLUR, rules.blur_sigma_mm)
    write_back(datasets, volume, blurred)
    for ds, path in zip(datasets, paths, strict=True):
        replace_file(path, ds)
    changed = int(np.count_nonzero(blurred != volume.voxels))
    result = dataclasses.replace(first.result, changed_voxels=changed)
    done[BLURRED] = Case(BLURRED, first.phantom, first.before, after, result, DefaceAction.BLUR,
                         _assembled(after).voxels)  # fmt: skip
    return done


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest, cases: dict[str, Case]) -> Case:
    return cases[request.param]


def test_the_phantom_assembles_to_its_own_voxels_and_geometry(case: Case) -> None:
    volume = assemble([pydicom.dcmread(p) for p in sorted(case.before.glob("*.dcm"))])
    assert np.array_equal(volume.voxels, case.phantom.voxels)
    assert np.allclose(volume.affine, case.phantom.affine, atol=1e-3)
    assert np.count_nonzero(case.phantom.face & (case.phantom.voxels > case.background)) > 10_000


def test_registration_finds_the_known_face(case: Case) -> None:
    result = case.result
    assert result.outcome is SeriesOutcome.DEFACED, result.detail
    assert result.defaced is not None and result.quality is not None and result.quality.passed
    face, truth = result.defaced.face, case.phantom.face
    dice = 2 * np.count_nonzero(face & truth) / (np.count_nonzero(face) + np.count_nonzero(truth))
    assert dice > 0.97, f"{case.name}: the warped face overlaps the true face by {dice:.3f}"


def test_outside_the_warped_mask_every_voxel_is_bit_identical(case: Case) -> None:
    assert case.result.defaced is not None
    after, face = case.voxels_after, case.result.defaced.face
    assert after.dtype == case.phantom.voxels.dtype
    assert np.array_equal(after[~face], case.phantom.voxels[~face])
    assert np.count_nonzero(after != case.phantom.voxels) == case.result.changed_voxels > 0


def test_the_face_is_gone_or_blurred(case: Case) -> None:
    assert case.result.defaced is not None
    before = case.phantom.voxels.astype(np.float64)
    after = case.voxels_after.astype(np.float64)
    face, truth = case.result.defaced.face, case.phantom.face
    tissue = before > case.background
    if case.action is DefaceAction.REMOVE:
        assert np.count_nonzero(after[face] > case.background) == 0
        kept = np.count_nonzero(after[truth & tissue] > case.background)
        assert kept <= 0.005 * np.count_nonzero(truth & tissue), "the true face is gone"
    else:
        # Blurred: the features (what differs from the neighbourhood's mean) are gone,
        # the outline of the head stays.
        inner = face & _eroded(face)
        assert _detail(after)[inner].std() < 0.2 * _detail(before)[inner].std()
        assert np.count_nonzero(after[face] > case.background) > 0.5 * np.count_nonzero(
            tissue[face]
        )


def _eroded(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    out = mask.copy()
    for axis in range(3):
        out &= np.roll(mask, 1, axis) & np.roll(mask, -1, axis)
    return out


def _detail(data: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each voxel less the mean of its six neighbours."""
    mean = sum(np.roll(data, s, a) for a in range(3) for s in (1, -1)) / 6
    detail: npt.NDArray[np.float64] = data - mean
    return detail


def test_the_brain_is_untouched(case: Case) -> None:
    assert case.result.defaced is not None
    after = case.voxels_after
    for brain in (case.phantom.brain, case.result.defaced.brain):
        assert np.count_nonzero(brain) > 5_000
        assert np.array_equal(after[brain], case.phantom.voxels[brain])
    assert not np.any(case.result.defaced.face & case.phantom.brain)


def test_only_pixel_data_and_the_marks_changed(case: Case) -> None:
    for path in sorted(case.before.glob("*.dcm"))[::8]:
        old, new = pydicom.dcmread(path), pydicom.dcmread(case.after / path.name)
        assert new.RecognizableVisualFeatures == "NO"
        changed = {e.keyword for e in new if e.tag not in old or old[e.tag] != e}
        changed |= {e.keyword for e in old if e.tag not in new}
        assert changed <= {
            "PixelData", "RecognizableVisualFeatures", "DeidentificationMethodCodeSequence",
        }  # fmt: skip
        assert new.PatientPosition == case.phantom.grid.position.code


def test_projections_before_and_after_are_saved_for_a_person(cases: dict[str, Case]) -> None:
    VIEWS.mkdir(parents=True, exist_ok=True)
    for case in cases.values():
        before, after = (_side(v, case.phantom) for v in (case.phantom.voxels, case.voxels_after))
        target = VIEWS / f"phantom_{case.name}.png"
        Image.fromarray(np.concatenate([before, after], axis=1)).resize(
            (2 * 2 * before.shape[1], 2 * before.shape[0])
        ).save(target)
        assert target.stat().st_size > 2_000
        # Seen from the side, the profile (nose, lips, chin) is gone: less is bright.
        assert np.count_nonzero(after > 64) < np.count_nonzero(before > 64)


def _side(voxels: npt.NDArray[np.generic], phantom: HeadPhantom) -> npt.NDArray[np.uint8]:
    """A maximum-intensity projection along L-R (the profile), whatever the slicing."""
    axis = int(np.argmax(np.abs(phantom.affine[0, :3])))  # the array axis (x, y, z) along L-R
    mip = np.asarray(voxels, dtype=np.float32).max(axis=2 - axis)
    image: npt.NDArray[np.uint8] = (255 * mip / max(1.0, float(mip.max()))).astype(np.uint8)
    return image


@pytest.mark.dcm2niix
@pytest.mark.parametrize("name", list(REMOVED))
def test_dcm2niix_reads_the_true_geometry_before_and_after(
    cases: dict[str, Case], name: str, tmp_path: Path
) -> None:
    nibabel = pytest.importorskip("nibabel")
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix is not installed (make install)")
    case = cases[name]
    images = {}
    for label, folder in (("before", case.before), ("after", case.after)):
        out = tmp_path / label
        out.mkdir()
        subprocess.run(
            ["dcm2niix", "-z", "n", "-f", "v", "-o", str(out), str(folder)],
            check=True, capture_output=True,
        )  # fmt: skip
        images[label] = nibabel.load(out / "v.nii")
    assert np.allclose(images["before"].affine, images["after"].affine)
    # Every NIfTI voxel lands, through its affine (RAS), on the phantom voxel that holds its value.
    data = np.asarray(images["before"].dataobj)
    index = np.indices(data.shape).reshape(3, -1)
    ras = images["before"].affine @ np.vstack([index, np.ones(index.shape[1])])
    lps = ras * np.array([[-1], [-1], [1], [1]])
    ijk = np.rint(np.linalg.inv(case.phantom.affine) @ lps).astype(int)  # (col, row, slice)
    assert np.array_equal(case.phantom.voxels[ijk[2], ijk[1], ijk[0]], data.reshape(-1))
    changed = np.asarray(images["after"].dataobj) != data
    assert np.count_nonzero(changed) == case.result.changed_voxels


def _errors(path: Path) -> list[str]:
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.dciodvfy
def test_dciodvfy_finds_no_new_error(cases: dict[str, Case]) -> None:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy is not installed (make install)")
    for name in REMOVED:
        case = cases[name]
        for path in sorted(case.before.glob("*.dcm"))[::24]:  # the enhanced object: its one file
            assert _errors(case.after / path.name) == _errors(path) == [], (name, path.name)
