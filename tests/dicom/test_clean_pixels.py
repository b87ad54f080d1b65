"""``deid --clean-pixels`` end to end with the real tesseract: blank, re-encode, mark, or hold back."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from pipeline.batch.runner import RunSummary
from pipeline.dicom.csa import FACT_REBUILT
from pipeline.dicom.profile import load_profile
from pipeline.keys import SecretKey
from pipeline.pixels.blank import PixelAction, PixelCleaning
from pipeline.pixels.ocr import OcrEngine, TesseractEngine
from pipeline.pixels.phi import PhiKind
from pipeline.pixels.regions import load_region_rules
from pipeline.pixels.scan import ScanFinding, scan_dataset
from pipeline.private_store import PrivateStore
from pipeline.read.dicom import quiet_pydicom, read_dicom
from pipeline.reasons import Reason
from pipeline.samples import Subject, make_subjects, mr_series, other_objects
from pipeline.samples.burned_text import burn, printed_name, with_pixels
from pipeline.steps.dicom_file import deidentify_tree, plan_pixels
from tests.reference import needs_reference, reference_path

from .test_validity import dciodvfy_errors

REFERENCE_FILES = ("XA_GE_JPEG_02_with_Overlays.dcm", "US-GE-4AICL142.dcm")
KEY = SecretKey(b"\x05" * 32)


@pytest.fixture(scope="module")
def cleaning() -> PixelCleaning:
    if shutil.which("tesseract") is None:
        pytest.skip("tesseract is not installed (Debian: apt-get install tesseract-ocr)")
    quiet_pydicom()
    return PixelCleaning(TesseractEngine(), load_region_rules())


@pytest.fixture(scope="module")
def subject() -> Subject:
    return make_subjects(2, seed=21)[1]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, subject: Subject) -> Path:
    """Two plain MR slices, a screen capture with name/MRN/DOB burned in, an ultrasound, a corrupt JPEG."""
    folder = tmp_path_factory.mktemp("source")
    for index, ds in enumerate(mr_series(subject, n_slices=2, rows=64, cols=64)):
        ds.save_as(folder / f"mr{index}.dcm", enforce_file_format=True)
    objects = other_objects(subject)
    # A screen grab of an image: a ramp with the name burned into its top-left corner.
    capture = objects["secondary_capture"]
    ramp = np.repeat(np.linspace(20, 120, 256)[None, :], 160, axis=0).astype(np.uint8)
    name = printed_name(subject.phi.patient_name)
    capture = with_pixels(capture, burn(ramp, name, x=4, y=4, height=12, value=250))
    capture.Rows, capture.Columns = 160, 256
    capture.save_as(folder / "sc.dcm", enforce_file_format=True)
    objects["ultrasound"].save_as(folder / "us.dcm", enforce_file_format=True)
    corrupt = mr_series(subject, n_slices=1, rows=16, cols=16, series_number=7)[0]
    corrupt.PixelData = encapsulate([b"\xff\xd8\xff\xdb" + b"\x00" * 64])  # no end marker
    corrupt.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    corrupt["PixelData"].VR = "OB"
    corrupt.save_as(folder / "corrupt.dcm", enforce_file_format=False)
    return folder


def _run(
    source: Path, out: Path, cleaning: PixelCleaning | None, jobs: int = 1, keep: bool = False
) -> tuple[RunSummary, dict[str, dict[str, object]]]:
    store = PrivateStore(out.parent / f"{out.name}-private")
    summary = deidentify_tree(
        source, out, KEY, load_profile("research"), store, jobs=jobs, cleaning=cleaning,
        keep_burned_in=keep,
    )  # fmt: skip
    rows = {Path(str(r["input_path"])).name: dict(r) for r in store.inputs_for(summary.run_id)}
    return summary, rows


@pytest.fixture(scope="module")
def cleaned_run(
    source: Path, cleaning: PixelCleaning, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, RunSummary, dict[str, dict[str, object]]]:
    out = tmp_path_factory.mktemp("run") / "out"
    summary, rows = _run(source, out, cleaning, jobs=1)
    return out, summary, rows


def test_outcomes_with_and_without_clean_pixels(
    source: Path, cleaned_run: tuple[Path, RunSummary, dict[str, dict[str, object]]], tmp_path: Path
) -> None:
    _, summary, rows = cleaned_run
    outcomes = {name: row["outcome"] for name, row in rows.items()}
    assert outcomes == {
        "mr0.dcm": "written", "mr1.dcm": "written", "sc.dcm": "written", "us.dcm": "written",
        "corrupt.dcm": "quarantined",
    }  # fmt: skip
    assert "end-of-image marker" in str(rows["corrupt.dcm"]["detail"])
    pixel_facts = {k: v for k, v in summary.facts.items() if k.startswith("pixels")}
    assert pixel_facts == {"pixels untouched": 2, "pixels cleaned": 2}
    assert summary.facts[FACT_REBUILT] == 2  # the two MR images' CSA headers (pipeline.dicom.csa)
    assert str(rows["sc.dcm"]["detail"]).startswith("pixels cleaned: ")  # the private account
    assert rows["mr0.dcm"]["detail"] == ""
    # Without --clean-pixels the captures are held back as before.
    _, plain = _run(source, tmp_path / "plain", None)
    assert plain["sc.dcm"]["outcome"] == "held back" and plain["us.dcm"]["outcome"] == "held back"


def test_untouched_files_are_byte_identical_to_a_run_without_cleaning(
    source: Path, cleaned_run: tuple[Path, RunSummary, dict[str, dict[str, object]]], tmp_path: Path
) -> None:
    out, _, rows = cleaned_run
    _, plain = _run(source, tmp_path / "plain", None)
    for name in ("mr0.dcm", "mr1.dcm"):
        cleaned_bytes = (out / str(rows[name]["output_path"])).read_bytes()
        plain_bytes = (tmp_path / "plain" / str(plain[name]["output_path"])).read_bytes()
        assert cleaned_bytes == plain_bytes


def test_burned_in_name_is_blanked_and_no_longer_read(
    source: Path,
    cleaned_run: tuple[Path, RunSummary, dict[str, dict[str, object]]],
    cleaning: PixelCleaning,
    subject: Subject,
) -> None:
    out, _, rows = cleaned_run
    original = pydicom.dcmread(source / "sc.dcm")
    assert printed_name(subject.phi.patient_name).split()[0] in " ".join(
        w.text.upper() for w in scan_dataset(original, "in", cleaning.engine).words
    )
    written = pydicom.dcmread(out / str(rows["sc.dcm"]["output_path"]))
    assert written.BurnedInAnnotation == "NO"
    codes = [item.CodeValue for item in written.DeidentificationMethodCodeSequence]
    assert "113101" in codes and codes.count("113101") == 1
    # OCR on the output: with the header of the input (so PHI would be matched), no word left.
    check = read_dicom((source / "sc.dcm").read_bytes(), "in")
    check.PixelData = written.PixelData
    again = scan_dataset(check, "out", cleaning.engine, prefilter=False)
    assert again.phi_matches == ()
    assert again.words == ()
    # Pixels outside what was blanked are the input's own.
    before, after = original.pixel_array, written.pixel_array
    changed = before != after
    assert changed.any() and (after[changed] == 0).all()
    assert written.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID


def test_cleaned_ultrasound_is_rgb_and_only_the_planned_areas_change(
    source: Path,
    cleaned_run: tuple[Path, RunSummary, dict[str, dict[str, object]]],
    cleaning: PixelCleaning,
) -> None:
    out, _, rows = cleaned_run
    data = (source / "us.dcm").read_bytes()
    plan = plan_pixels(read_dicom(data, "in"), "in", cleaning, load_profile("research"))
    assert plan.action is PixelAction.CLEANED and plan.words_blanked >= 2
    written = pydicom.dcmread(out / str(rows["us.dcm"]["output_path"]))
    before, after = pydicom.dcmread(source / "us.dcm").pixel_array, written.pixel_array
    mask = np.zeros(before.shape[:2], dtype=bool)
    for area in plan.frame_areas[0]:
        mask[area.y : area.y + area.height, area.x : area.x + area.width] = True
    assert (after[mask] == 0).all()
    assert np.array_equal(after[~mask], before[~mask])
    assert (written.PhotometricInterpretation, written.PlanarConfiguration) == ("RGB", 0)


def test_jobs_1_and_2_write_the_same_bytes(
    source: Path,
    cleaned_run: tuple[Path, RunSummary, dict[str, dict[str, object]]],
    cleaning: PixelCleaning,
    tmp_path: Path,
) -> None:
    out, _, rows = cleaned_run
    _, rows2 = _run(source, tmp_path / "two", cleaning, jobs=2)
    for name, row in rows.items():
        assert rows2[name]["outcome"] == row["outcome"]
        if row["output_path"]:
            first = (out / str(row["output_path"])).read_bytes()
            assert first == (tmp_path / "two" / str(rows2[name]["output_path"])).read_bytes()


def test_header_signal_without_located_text_stays_held_back(
    cleaning: PixelCleaning, subject: Subject, tmp_path: Path
) -> None:
    blank_capture = other_objects(subject)["secondary_capture"]
    blank_capture.PixelData = np.full((96, 480), 40, dtype=np.uint8).tobytes()
    folder = tmp_path / "src"
    folder.mkdir()
    blank_capture.save_as(folder / "sc.dcm", enforce_file_format=True)
    summary, rows = _run(folder, tmp_path / "out", cleaning)
    assert rows["sc.dcm"]["outcome"] == "held back"
    assert list(summary.reasons) == [Reason.TEXT_NOT_LOCATED]
    detail = str(rows["sc.dcm"]["detail"])
    assert "read none" in detail and "no pixel region rule" in detail
    assert subject.phi.patient_id not in detail


Run = tuple[Path, RunSummary, dict[str, dict[str, object]]]


@pytest.fixture(scope="module")
def reference_run(cleaning: PixelCleaning, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The GE XA (overlays in the high bits) and GE ultrasound, cleaned in one run."""
    folder = tmp_path_factory.mktemp("reference") / "src"
    folder.mkdir()
    for name in REFERENCE_FILES:
        shutil.copy(reference_path("dicom", name), folder / name)
    out = folder.parent / "out"
    summary, rows = _run(folder, out, cleaning)
    for row in rows.values():
        row["output"] = out / str(row["output_path"])
    return folder, summary, rows


def _read_back(original: Path, written: pydicom.Dataset, engine: OcrEngine) -> ScanFinding:
    """OCR of the written pixels under the input's header: its PHI and overlays would be found."""
    check = read_dicom(original.read_bytes(), "in")
    check.file_meta.TransferSyntaxUID = written.file_meta.TransferSyntaxUID
    for keyword in ("PhotometricInterpretation", "SamplesPerPixel", "PlanarConfiguration"):
        if keyword in written:
            setattr(check, keyword, written[keyword].value)
    check.PixelData = written.PixelData
    check["PixelData"].VR = written["PixelData"].VR
    return scan_dataset(check, "out", engine, prefilter=False)


@needs_reference("dicom")
def test_reference_files(reference_run: Run) -> None:
    _, _, rows = reference_run
    xa_row, us_row = rows["XA_GE_JPEG_02_with_Overlays.dcm"], rows["US-GE-4AICL142.dcm"]
    assert xa_row["outcome"] == "written" and us_row["outcome"] == "written"
    xa = pydicom.dcmread(Path(str(xa_row["output"])))
    assert xa.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert not [t for t in xa.keys() if 0x6000 <= t >> 16 <= 0x601E]  # overlay groups gone
    assert int(xa.pixel_array.max()) < 256  # the bit-13 plane is masked out
    assert xa.BurnedInAnnotation == "NO"
    us = pydicom.dcmread(Path(str(us_row["output"])))
    assert us.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert (us.PhotometricInterpretation, us.SamplesPerPixel, us.PlanarConfiguration) == (
        "RGB", 3, 0,
    )  # fmt: skip
    assert us.pixel_array.shape == (434, 636, 3)


@needs_reference("dicom")
def test_cleaned_reference_files_read_back_with_ocr_show_no_phi(
    reference_run: Run, cleaning: PixelCleaning
) -> None:
    folder, _, rows = reference_run
    engine = cleaning.engine
    # Both headers signal burned-in text, so deid reads them whole, as here.
    inputs = {
        n: scan_dataset(read_dicom((folder / n).read_bytes(), "in"), "in", engine, prefilter=False)
        for n in REFERENCE_FILES
    }
    # What there is to find: the XA's overlay (bit 13 of its pixels) shows name, ID and date.
    xa = inputs["XA_GE_JPEG_02_with_Overlays.dcm"]
    assert {m.kind for m in xa.phi_matches} >= {PhiKind.PATIENT_NAME_PART, PhiKind.PATIENT_ID}
    assert any(w.image.startswith("overlay") for w in xa.words)
    for name, before in inputs.items():
        written = pydicom.dcmread(Path(str(rows[name]["output"])))
        again = _read_back(folder / name, written, engine)
        assert again.phi_matches == (), name
        assert [w for w in again.words if not w.image.startswith("frame")] == [], name
        assert all(o.set_pixels == 0 for o in again.overlays), name
        # Every box read in the input's image, whatever its confidence, is background now.
        assert before.header_signals, name
        pixels = written.pixel_array
        assert [w for w in before.words if w.image == "frame 0"], name
        for word in (w for w in before.words if w.image == "frame 0"):
            x, y, w, h = word.box
            assert (pixels[y : y + h, x : x + w] == 0).all(), (name, word)


@pytest.mark.dciodvfy
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed")
def test_dciodvfy_adds_no_errors_to_cleaned_files(
    source: Path,
    cleaned_run: tuple[Path, RunSummary, dict[str, dict[str, object]]],
    cleaning: PixelCleaning,
    tmp_path: Path,
) -> None:
    out, _, rows = cleaned_run
    pairs = [(source / n, out / str(rows[n]["output_path"])) for n in ("sc.dcm", "us.dcm")]
    regressions = {
        before.name: sorted(dciodvfy_errors(after) - dciodvfy_errors(before))
        for before, after in pairs
    }
    assert not any(regressions.values()), regressions


@pytest.mark.dciodvfy
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed")
@needs_reference("dicom")
def test_dciodvfy_adds_no_errors_to_cleaned_reference_files(reference_run: Run) -> None:
    folder, _, rows = reference_run
    assert [r["outcome"] for r in rows.values()] == ["written"] * len(REFERENCE_FILES)
    regressions = {
        name: sorted(dciodvfy_errors(Path(str(row["output"]))) - dciodvfy_errors(folder / name))
        for name, row in rows.items()
    }
    assert not any(regressions.values()), regressions


def test_every_frame_of_a_multiframe_ultrasound_is_cleaned(
    cleaning: PixelCleaning, subject: Subject, tmp_path: Path
) -> None:
    single = other_objects(subject)["ultrasound"]
    first = single.pixel_array
    second = first.copy()
    second[120:, :] = second[120:, ::-1]  # a different frame, same text rows
    cine = with_pixels(single, np.stack([first, second, first]))  # frame 2 repeats frame 0
    cine.NumberOfFrames = 3
    cine.SOPClassUID = cine.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    cine.FrameIncrementPointer = 0x00181063
    cine.FrameTime = 33.3
    folder = tmp_path / "src"
    folder.mkdir()
    cine.save_as(folder / "cine.dcm", enforce_file_format=True)
    _, rows = _run(folder, tmp_path / "out", cleaning)
    assert rows["cine.dcm"]["outcome"] == "written"
    written = pydicom.dcmread(tmp_path / "out" / str(rows["cine.dcm"]["output_path"]))
    assert written.NumberOfFrames == 3 and written.BurnedInAnnotation == "NO"
    after = written.pixel_array
    plan = plan_pixels(
        read_dicom((folder / "cine.dcm").read_bytes(), "in"), "in", cleaning,
        load_profile("research"),
    )  # fmt: skip
    assert len(plan.frame_areas) == 3
    for index, before in enumerate((first, second, first)):
        mask = np.zeros(before.shape[:2], dtype=bool)
        for area in plan.frame_areas[index]:
            mask[area.y : area.y + area.height, area.x : area.x + area.width] = True
        assert mask[:36, :60].mean() > 0.5  # the name and MRN rows of every frame
        assert (after[index][mask] == 0).all()
        assert np.array_equal(after[index][~mask], before[~mask])
    assert np.array_equal(after[0], after[2])


def test_keep_burned_in_writes_what_cannot_be_cleaned_unmarked(
    cleaning: PixelCleaning, subject: Subject, tmp_path: Path
) -> None:
    capture = other_objects(subject)["secondary_capture"]
    capture.PixelData = np.full((96, 480), 40, dtype=np.uint8).tobytes()
    folder = tmp_path / "src"
    folder.mkdir()
    capture.save_as(folder / "sc.dcm", enforce_file_format=True)
    summary, rows = _run(folder, tmp_path / "out", cleaning, keep=True)
    assert rows["sc.dcm"]["outcome"] == "written"
    pixels = {k: n for k, n in summary.facts.items() if k.startswith("pixels ")}
    assert pixels == {"pixels not cleaned (kept for review)": 1}
    written = pydicom.dcmread(tmp_path / "out" / str(rows["sc.dcm"]["output_path"]))
    assert written.BurnedInAnnotation == "YES"
    codes = [item.CodeValue for item in written.DeidentificationMethodCodeSequence]
    assert "113101" not in codes
