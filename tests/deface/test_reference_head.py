"""The real head (../shared/reference/heads, a Siemens 2D T1 FLASH with a face), defaced once.

One module-scoped fixture copies the 35 files, defaces them in place
(``deface_series``, as the ingest stage does) and keeps the volume before
and the masks; every test then checks one promise: outside the mask
nothing changed, the face is gone, the brain region is untouched, dcm2niix
reads the same geometry, dciodvfy finds nothing new.  The projections are
written to /tmp/mricurate-deface/ for a person to look at.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from PIL import Image

from pipeline.deface.face import Defaced
from pipeline.deface.rules import DefaceRules, load_deface_rules
from pipeline.deface.series import SeriesOutcome, SeriesResult, deface_series
from pipeline.deface.volume import Volume, assemble
from pipeline.deface.write import CLEAN_RECOGNIZABLE_VISUAL_FEATURES
from tests.reference import reference_marks, reference_path

# One registration for the module: its tests run on one xdist worker (make test: loadgroup).
pytestmark = [
    *reference_marks("heads", "t1_fl2d_sag_hfs"),
    pytest.mark.xdist_group("deface-reference"),
]

VIEWS = Path("/tmp/mricurate-deface")


@dataclass(frozen=True)
class Run:
    before: Path
    after: Path
    volume: Volume
    defaced: Defaced
    result: SeriesResult
    rules: DefaceRules


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    source = reference_path("heads", "t1_fl2d_sag_hfs")
    root = tmp_path_factory.mktemp("head")
    before, after = root / "before", root / "after"
    shutil.copytree(source, before, ignore=shutil.ignore_patterns("*.txt", "*.md"))
    shutil.copytree(before, after)
    rules = load_deface_rules()
    result = deface_series(sorted(after.glob("*.dcm")), rules)
    assert result.volume is not None and result.defaced is not None, result.detail
    # The volume the series made is the one the untouched copy makes.
    volume = assemble([pydicom.dcmread(p) for p in sorted(before.glob("*.dcm"))])
    assert np.array_equal(volume.voxels, result.volume.voxels)
    return Run(before, after, volume, result.defaced, result, rules)


def _after(run: Run) -> Volume:
    return assemble([pydicom.dcmread(p) for p in sorted(run.after.glob("*.dcm"))])


def test_the_series_is_a_head_volume_and_passes_the_quality_check(run: Run) -> None:
    assert run.result.outcome is SeriesOutcome.DEFACED, run.result.detail
    assert run.result.quality is not None and run.result.quality.passed
    assert run.result.changed_voxels > 50_000


def test_outside_the_mask_every_voxel_is_bit_identical(run: Run) -> None:
    after = _after(run).voxels
    face = run.defaced.face
    assert after.dtype == run.volume.voxels.dtype
    assert np.array_equal(after[~face], run.volume.voxels[~face])
    assert np.array_equal(after, run.defaced.voxels)  # the written file is what was computed


def test_the_face_region_holds_no_voxel_above_the_background(run: Run) -> None:
    before, after, face = run.volume.voxels, _after(run).voxels, run.defaced.face
    background = np.percentile(before, 50)  # half the volume is air around the head
    assert np.count_nonzero(before[face] > background) > 20_000  # there was a face
    assert np.count_nonzero(after[face] > background) == 0


def test_the_brain_region_warped_back_is_untouched(run: Run) -> None:
    brain = run.defaced.brain
    assert np.count_nonzero(brain) > 100_000
    assert not np.any(brain & run.defaced.face)
    assert np.array_equal(_after(run).voxels[brain], run.volume.voxels[brain])


def test_only_pixel_data_and_the_marks_changed(run: Run) -> None:
    for path in sorted(run.before.glob("*.dcm")):
        old, new = pydicom.dcmread(path), pydicom.dcmread(run.after / path.name)
        assert new.RecognizableVisualFeatures == "NO"
        codes = [item.CodeValue for item in new.DeidentificationMethodCodeSequence]
        assert codes[-1] == CLEAN_RECOGNIZABLE_VISUAL_FEATURES.value
        changed = {e.keyword for e in new if e.tag not in old or old[e.tag] != e}
        changed |= {e.keyword for e in old if e.tag not in new}
        assert changed <= {
            "PixelData", "RecognizableVisualFeatures", "DeidentificationMethodCodeSequence",
        }  # fmt: skip
        assert new.file_meta.TransferSyntaxUID == old.file_meta.TransferSyntaxUID


def test_a_second_pass_leaves_the_series_as_it_is(run: Run) -> None:
    stamps = {p.name: p.stat().st_mtime_ns for p in run.after.glob("*.dcm")}
    again = deface_series(sorted(run.after.glob("*.dcm")), run.rules)
    assert again.outcome is SeriesOutcome.ALREADY_DEFACED
    assert stamps == {p.name: p.stat().st_mtime_ns for p in run.after.glob("*.dcm")}


def _views(voxels: npt.NDArray[np.generic], spacing: tuple[float, float, float]) -> np.ndarray:
    """A lateral maximum-intensity projection and a frontal depth rendering of the skin."""
    data = voxels.astype(np.float32)  # (slices L-R, rows S->I, cols A->P)
    side = data.max(axis=0)
    skin = data > np.percentile(data, 70)
    first = np.where(skin.any(axis=2), skin.argmax(axis=2), data.shape[2])  # from the front
    front = (1.0 - first / data.shape[2]) ** 2 * 255
    front_img = Image.fromarray(front.T.astype(np.uint8)).resize(
        (round(data.shape[0] * spacing[2] / spacing[0]), data.shape[1])
    )
    side_img = Image.fromarray((255 * side / side.max()).astype(np.uint8))
    width = side_img.width + front_img.width
    canvas = Image.new("L", (width, side_img.height))
    canvas.paste(side_img, (0, 0))
    canvas.paste(front_img, (side_img.width, 0))
    return np.asarray(canvas)


def test_projections_before_and_after_are_saved_for_a_person(run: Run) -> None:
    VIEWS.mkdir(parents=True, exist_ok=True)
    before = _views(run.volume.voxels, run.volume.spacing)
    after = _views(_after(run).voxels, run.volume.spacing)
    target = VIEWS / "reference_head_before_after.png"
    Image.fromarray(np.concatenate([before, after], axis=0)).save(target)
    assert target.stat().st_size > 10_000
    # The frontal rendering: where the nose and lips were, the skin is now further back.
    assert after.mean() < before.mean()


@pytest.mark.dcm2niix
def test_dcm2niix_reads_the_same_affine_and_the_same_voxels_outside_the_mask(
    run: Run, tmp_path: Path
) -> None:
    nibabel = pytest.importorskip("nibabel")
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix is not installed (make install)")
    images = {}
    for name, folder in (("before", run.before), ("after", run.after)):
        out = tmp_path / name
        out.mkdir()
        subprocess.run(
            ["dcm2niix", "-z", "n", "-f", "v", "-o", str(out), str(folder)],
            check=True, capture_output=True,
        )  # fmt: skip
        images[name] = nibabel.load(out / "v.nii")
    assert np.allclose(images["before"].affine, images["after"].affine)
    old = np.asarray(images["before"].dataobj)
    new = np.asarray(images["after"].dataobj)
    changed = old != new
    assert changed.sum() == run.result.changed_voxels  # exactly the voxels defacing changed


def _errors(path: Path) -> list[str]:
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.dciodvfy
def test_dciodvfy_finds_no_new_error(run: Run) -> None:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy is not installed (make install)")
    for name in sorted(p.name for p in run.before.glob("*.dcm"))[::10]:
        assert _errors(run.after / name) == _errors(run.before / name)
