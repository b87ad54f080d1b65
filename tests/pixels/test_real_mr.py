"""Real MR under the header priors of rules/pixels: no false hold, burned-in text still blanked.

The files are real (pydicom's bundled files, pydicom-data, ../shared/reference);
each case says which held back before the priors (bench/ocr.py --real has
the figures).  The multi-frame case is a cine built from the real GE
ultrasound frame: its text static, its image area moving.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels.processing import convert_color_space
from pydicom.uid import ExplicitVRLittleEndian

from pipeline.dicom.profile import Profile, load_profile
from pipeline.errors import RuleError
from pipeline.pixels.blank import PixelAction, PixelCleaning, PixelPlan
from pipeline.pixels.ocr import TesseractEngine, Word
from pipeline.pixels.phi import PhiKind
from pipeline.pixels.regions import RegionRules, load_region_rules
from pipeline.pixels.scan import FoundWord, ScanFinding, header_vocabulary, is_evidence
from pipeline.read.dicom import read_dicom
from pipeline.samples.burned_text import as_jpeg_baseline
from pipeline.steps import dicom_file
from pipeline.steps.dicom_file import plan_pixels
from tests.reference import reference_path

from .images import burn, printed_name, with_pixels


@dataclass
class Counting:
    """The real engine, counting the images it is given."""

    inner: TesseractEngine
    images: int = 0
    sizes: list[tuple[int, ...]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.inner.name

    def read(self, images: list[npt.NDArray[np.uint8]]) -> list[list[Word]]:
        self.images += len(images)
        self.sizes += [image.shape for image in images]
        return self.inner.read(images)


@pytest.fixture(scope="module")
def rules() -> RegionRules:
    return load_region_rules()


@pytest.fixture(scope="module")
def profile() -> Profile:
    return load_profile("research")


def _plan(
    ds: Dataset, engine: object, rules: RegionRules, profile: Profile
) -> tuple[PixelPlan, ScanFinding]:
    """plan_pixels as deid --clean-pixels runs it, and the finding it was made from."""
    seen: list[ScanFinding] = []
    scan = dicom_file.scan_dataset

    def keep(*args: object, **kwargs: object) -> ScanFinding:
        finding = scan(*args, **kwargs)  # type: ignore[arg-type]
        seen.append(finding)
        return finding

    cleaning = PixelCleaning(engine, rules)  # type: ignore[arg-type]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dicom_file, "scan_dataset", keep)
        plan = plan_pixels(ds, "input test", cleaning, profile)
    return plan, seen[-1]


def _data_store(name: str) -> Path:
    data_store = pytest.importorskip("data_store", reason="pydicom-data is not installed")
    return Path(data_store.__file__).parent / "data" / name


# Each held back before the priors: a DERIVED\SECONDARY signal read whole
# and its anatomy read as "text over 27-100% of the frame" (or no text at
# all, for the 16 x 16 projection).
HELD_BEFORE = [
    pytest.param(("reference", "dicom", "MR-SIEMENS-DICOM-WithOverlays.dcm"), id="siemens-mpr"),
    pytest.param(("pydicom", "examples_overlay.dcm"), id="siemens-overlay-example"),
    pytest.param(("pydicom", "dicomdirtests/98892003/MR700/4528"), id="philips-projection"),
    pytest.param(("pydicom", "dicomdirtests/98892003/MR700/4467"), id="philips-projection-empty"),
]


def _real(where: tuple[str, ...]) -> Dataset:
    if where[0] == "reference":
        path = reference_path(*where[1:])
    else:
        found = get_testdata_file(where[1])
        assert found is not None, f"pydicom's bundled file {where[1]} is missing"
        path = Path(found)
    return read_dicom(path.read_bytes(), "input test")


@pytest.mark.parametrize("where", HELD_BEFORE)
def test_real_mr_reformats_that_were_held_are_cleaned_under_their_prior(
    where: tuple[str, ...], engine: TesseractEngine, rules: RegionRules, profile: Profile
) -> None:
    ds = _real(where)
    plan, finding = _plan(ds, engine, rules, profile)
    assert finding.header_signals  # DERIVED\SECONDARY: the signal is still reported
    assert finding.prior == "MR reformat from a scanner console (MPR, MIP, projection)"
    assert plan.action is PixelAction.CLEANED, plan.reason
    assert f"prior: {finding.prior}" in plan.rules
    assert plan.remove_overlays


def test_the_siemens_overlay_text_is_still_read(
    engine: TesseractEngine, rules: RegionRules, profile: Profile
) -> None:
    ds = _real(("reference", "dicom", "MR-SIEMENS-DICOM-WithOverlays.dcm"))
    _, finding = _plan(ds, engine, rules, profile)
    overlay = [w.text for w in finding.words if w.image.startswith("overlay")]
    assert any("Tra" in text for text in overlay), overlay


@pytest.mark.parametrize("name", ["MR2_UNCI.dcm", "MR2_UNCR.dcm"])
def test_the_shoulder_is_neither_held_nor_blanked(
    name: str, engine: TesseractEngine, rules: RegionRules, profile: Profile
) -> None:
    # DERIVED\PRIMARY (UNCI): before, one "word" of anatomy was evidence and
    # all 561 boxes of the frame were blanked over the image.  ORIGINAL (UNCR):
    # read in text-line crops, tesseract reads "EXASX" at 72 in the bone, which
    # no header holds (header_vocabulary), so it is no evidence.
    ds = read_dicom(_data_store(name).read_bytes(), "input test")
    counting = Counting(engine)
    plan, finding = _plan(ds, counting, rules, profile)
    assert finding.prior == "MR acquisition from a scanner"
    assert plan.action is PixelAction.UNTOUCHED and plan.words_blanked == 0
    # Only text lines were read, never the whole 1024 x 1024 frame.
    assert counting.sizes and all(size != (1024, 1024) for size in counting.sizes)


def test_a_name_burned_into_a_real_head_slice_is_found_and_blanked(
    engine: TesseractEngine, rules: RegionRules, profile: Profile
) -> None:
    path = sorted(reference_path("heads", "t1_fl2d_sag_hfs").glob("*.dcm"))[17]
    ds = read_dicom(path.read_bytes(), "input test")
    ds.PatientName = "KOWALSKI^MARTA"
    pixels = ds.pixel_array
    top = int(pixels.max())
    pixels = burn(pixels, printed_name(str(ds.PatientName)), x=6, y=4, height=10, value=top)
    pixels = burn(pixels, "KOWALSKI", x=90, y=120, height=12, value=top)  # over the anatomy
    plan, finding = _plan(with_pixels(ds, pixels), engine, rules, profile)
    assert finding.prior == "MR acquisition from a scanner"
    assert any(m.kind is PhiKind.PATIENT_NAME_PART for m in finding.phi_matches)
    assert plan.action is PixelAction.CLEANED
    areas = plan.frame_areas[0]

    def covered(x: int, y: int) -> bool:
        return any(a.x <= x < a.x + a.width and a.y <= y < a.y + a.height for a in areas)

    assert covered(10, 9), areas  # the corner name
    assert covered(100, 126), areas  # the name over the anatomy


FRAMES = 12


@pytest.fixture(scope="module")
def cine() -> Dataset:
    """The real GE ultrasound frame as a cine: text static, the image area moving."""
    ds = dcmread(reference_path("dicom", "US-GE-4AICL142.dcm"))
    rgb = convert_color_space(ds.pixel_array, "YBR_FULL", "RGB")
    region = ds.SequenceOfUltrasoundRegions[1]
    x0, y0 = int(region.RegionLocationMinX0), int(region.RegionLocationMinY0)
    x1, y1 = int(region.RegionLocationMaxX1), int(region.RegionLocationMaxY1)
    frames = np.empty((FRAMES, *rgb.shape), dtype=np.uint8)
    noise = np.random.default_rng(3)
    for k in range(FRAMES):
        frame = rgb.copy()
        area = np.roll(frame[y0:y1, x0:x1].astype(np.int16), 3 * k, axis=0)
        area += noise.integers(-6, 7, area.shape[:2], dtype=np.int16)[..., None]
        frame[y0:y1, x0:x1] = area.clip(0, 255).astype(np.uint8)
        frames[k] = frame
    ds.PixelData = frames.tobytes()
    ds.NumberOfFrames = FRAMES
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return read_dicom(buffer.getvalue(), "input test")


@pytest.fixture(scope="module")
def jpeg_cine(cine: Dataset) -> Dataset:
    """The same cine as a JPEG Baseline ultrasound cine stores it (4:2:0, quality 90, Pillow):
    the codec's blocks the moving image touches change the static pixels around it too."""
    buffer = io.BytesIO()
    as_jpeg_baseline(cine).save_as(buffer, enforce_file_format=True)
    return read_dicom(buffer.getvalue(), "input test")


@pytest.mark.parametrize("which", ["cine", "jpeg_cine"])
def test_a_cine_is_read_once_and_every_frame_blanked_alike(
    which: str,
    request: pytest.FixtureRequest,
    engine: TesseractEngine,
    rules: RegionRules,
    profile: Profile,
) -> None:
    cine = request.getfixturevalue(which)
    counting = Counting(engine)
    plan, finding = _plan(cine, counting, rules, profile)
    assert counting.images == 1  # the first frame, whole (modality US: no pre-filter)
    assert finding.image_area_masked == FRAMES - 1
    assert plan.action is PixelAction.CLEANED, plan.reason
    assert len(plan.frame_areas) == FRAMES
    first = plan.frame_areas[0]
    assert first  # the header bar's text was found...
    assert all(areas == first for areas in plan.frame_areas)  # ...and is blanked in every frame
    words = {w.image for w in finding.words}
    assert words == {f"frame {k}" for k in range(FRAMES)}


def test_under_a_prior_a_confident_word_counts_only_when_the_header_holds_it() -> None:
    ds = Dataset()
    ds.SeriesDescription = "t1_fl2d_sag"
    ds.PatientName = "KOWALSKI^MARTA"
    vocabulary = header_vocabulary(ds)
    assert {"fl2d", "sag", "kowalski", "marta"} <= vocabulary
    noise = FoundWord("EXASX", (0, 0, 40, 12), 72.0, "frame 0")
    printed = FoundWord("Kowalski,", (0, 20, 60, 12), 75.0, "frame 0")
    assert is_evidence(noise, set())  # without a prior: 5 letters at 72
    assert not is_evidence(noise, set(), vocabulary)
    assert is_evidence(printed, set(), vocabulary)
    assert is_evidence(noise, {("frame 0", (0, 0, 50, 20))}, vocabulary)  # a PHI match


def test_a_prior_is_validated_like_a_rule(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(
        "priors:\n  - name: ours\n    when: {Modality: MR}\n    text: paragraphs\n"
    )
    with pytest.raises(RuleError, match=r"site.yaml:2.*unknown text 'paragraphs'"):
        load_region_rules(tmp_path)
    (tmp_path / "site.yaml").write_text(
        "priors:\n  - name: ours\n    when: {Modality: MR, BurnedInAnnotation: {not: 'YES'}}\n"
        "    text: lines\n"
    )
    rules = load_region_rules(tmp_path)
    mr = Dataset()
    mr.Modality = "MR"
    assert rules.prior_for(mr) is not None  # BurnedInAnnotation absent
    mr.BurnedInAnnotation = "YES"
    assert rules.prior_for(mr) is None


@pytest.mark.parametrize(
    ("image_type", "prior"),
    [
        (["ORIGINAL", "PRIMARY", "M", "ND"], "MR acquisition from a scanner"),
        (
            ["DERIVED", "SECONDARY", "MPR"],
            "MR reformat from a scanner console (MPR, MIP, projection)",
        ),
        (["DERIVED", "SECONDARY", "SCREEN SAVE"], None),
        (["DERIVED", "SECONDARY", "OTHER", "CAPTURE"], None),
        (["DERIVED", "SECONDARY", "DOSE_INFO", "REPORT"], None),
    ],
)
def test_a_console_s_own_screen_saves_get_no_prior(
    image_type: list[str], prior: str | None
) -> None:
    """A screen save in an MR object is read whole, as any capture: it names the patient."""
    ds = Dataset()
    ds.Modality, ds.Manufacturer, ds.ImageType = "MR", "SIEMENS", image_type
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    found = load_region_rules().prior_for(ds)
    assert (found.name if found else None) == prior
