"""End to end with the real tesseract: burned-in text is found, matched to its header, reported."""

from __future__ import annotations

import copy
import json
import stat
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import RLELossless

from pipeline.errors import CurationError
from pipeline.pixels.ocr import TesseractEngine
from pipeline.pixels.phi import PhiKind
from pipeline.pixels.scan import (
    FoundWord,
    ScanFinding,
    ScanStatus,
    is_evidence,
    scan_dataset,
    write_findings,
)
from pipeline.private_store import PrivateStore
from pipeline.reasons import Outcome, Reason
from pipeline.samples import Subject, make_subjects, mr_series, other_objects
from pipeline.steps.scan_file import scan_tree

from .images import REFERENCE, burn, printed_name, text_mask, with_pixels

SCHEMA = Path(__file__).resolve().parents[2] / "data_contracts" / "findings.schema.json"
LABEL = "input 0123456789ab"


@pytest.fixture(scope="module")
def subject() -> Subject:
    return make_subjects(3, seed=11)[2]


@pytest.fixture(scope="module")
def mr(subject: Subject) -> list[Dataset]:
    return mr_series(subject, n_slices=2, rows=256, cols=256)


def _burned(ds: Dataset, subject: Subject) -> Dataset:
    """Name top left and MRN bottom left, 10 px capitals at the 12-bit maximum, as scanners do."""
    pixels = burn(ds.pixel_array, printed_name(subject.phi.patient_name), x=4, y=3, height=10,
                  value=4095)  # fmt: skip
    pixels = burn(pixels, subject.phi.patient_id, x=4, y=236, height=10, value=4095)
    return with_pixels(ds, pixels)


def _matched(finding: ScanFinding) -> dict[PhiKind, set[str]]:
    found: dict[PhiKind, set[str]] = {}
    for match in finding.phi_matches:
        found.setdefault(match.kind, set()).add(match.image)
    return found


def test_name_burned_into_an_mr_slice_is_found_and_matched(
    mr: list[Dataset], subject: Subject, engine: TesseractEngine
) -> None:
    finding = scan_dataset(_burned(mr[1], subject), LABEL, engine)
    assert finding.flagged and finding.status is ScanStatus.FLAGGED
    assert finding.header_signals == ()  # the header does not say so: only the pixels do
    matched = _matched(finding)
    assert matched[PhiKind.PATIENT_NAME_PART] == {"frame 0"}
    assert matched[PhiKind.PATIENT_ID] == {"frame 0"}
    name_words = [m for m in finding.phi_matches if m.kind is PhiKind.PATIENT_NAME_PART]
    assert all(m.box[1] < 20 for m in name_words)  # boxes are where the name was drawn


@pytest.mark.parametrize("value", [400, 1100])  # below the phantom interior, above air
def test_dark_text_over_bright_anatomy_is_found_and_matched(
    mr: list[Dataset], subject: Subject, engine: TesseractEngine, value: int
) -> None:
    """The top-hat alone loses it: the scan also reads the dark-text map."""
    ds = mr[1]
    pixels = burn(ds.pixel_array, subject.phi.patient_id, x=90, y=110, height=12, value=value)
    finding = scan_dataset(with_pixels(ds, pixels), LABEL, engine)
    assert finding.flagged
    assert PhiKind.PATIENT_ID in _matched(finding)
    match = next(m for m in finding.phi_matches if m.kind is PhiKind.PATIENT_ID)
    assert abs(match.box[0] - 90) <= 4 and abs(match.box[1] - 110) <= 6


def test_plain_phantom_slice_is_skipped_and_clear(
    mr: list[Dataset], engine: TesseractEngine
) -> None:
    finding = scan_dataset(mr[0], LABEL, engine)
    assert not finding.flagged and finding.status is ScanStatus.CLEAR
    assert finding.words == () and finding.images_scanned == 0
    assert finding.ocr_skipped_by_prefilter == 1


@pytest.mark.parametrize("kind", ["secondary_capture", "ultrasound"])
def test_sample_objects_with_burned_in_name_and_mrn(
    subject: Subject, engine: TesseractEngine, kind: str
) -> None:
    ds = other_objects(subject)[kind]
    finding = scan_dataset(ds, LABEL, engine)
    assert finding.flagged
    assert "BurnedInAnnotation YES" in finding.header_signals
    matched = _matched(finding)
    assert PhiKind.PATIENT_NAME_PART in matched and PhiKind.PATIENT_ID in matched
    if kind == "secondary_capture":
        assert PhiKind.BIRTH_DATE in matched
        assert "ConversionType present" in finding.header_signals
    else:
        assert "modality US" in finding.header_signals


def test_text_in_an_overlay_plane_is_found(
    mr: list[Dataset], subject: Subject, engine: TesseractEngine
) -> None:
    ds = copy.deepcopy(mr[0])
    plane = text_mask((256, 256), printed_name(subject.phi.patient_name), x=6, y=200, height=9)
    packed = np.packbits((plane > 0.5).ravel().astype(np.uint8), bitorder="little").tobytes()
    for element, vr, value in ((0x0010, "US", 256), (0x0011, "US", 256), (0x0040, "CS", "G"),
                               (0x0050, "SS", [1, 1]), (0x0100, "US", 1), (0x0102, "US", 0),
                               (0x3000, "OW", packed)):  # fmt: skip
        ds.add_new(0x6000 << 16 | element, vr, value)
    finding = scan_dataset(ds, LABEL, engine)
    assert finding.flagged
    assert [(o.image, o.set_pixels > 100) for o in finding.overlays] == [("overlay 6000", True)]
    assert {w.image for w in finding.words} == {"overlay 6000"}  # the frame itself is plain
    assert _matched(finding)[PhiKind.PATIENT_NAME_PART] == {"overlay 6000"}


@pytest.mark.reference
@pytest.mark.skipif(not REFERENCE.is_dir(), reason="../shared/reference is not present")
def test_ge_xa_high_bit_overlay_names_the_patient(engine: TesseractEngine, tmp_path: Path) -> None:
    file = REFERENCE / "XA_GE_JPEG_02_with_Overlays.dcm"
    _, (finding,) = scan_tree(file, engine, PrivateStore(tmp_path / "private"))
    assert finding.error is None and finding.flagged
    planes = {o.image: (o.bit, o.set_pixels) for o in finding.overlays}
    assert planes["overlay 6010"] == (13, 3210)
    assert sum(count for _, count in planes.values()) == 3210
    name_matches = {m.text.strip(",") for m in finding.phi_matches
                    if m.kind is PhiKind.PATIENT_NAME_PART and m.image == "overlay 6010"}  # fmt: skip
    assert name_matches == {"MAZHAR", "ISMAEL"}


def _corrupt_rle(ds: Dataset) -> Dataset:
    out = copy.deepcopy(ds)
    out.compress(RLELossless)
    fragment = next(generate_frames(out.PixelData, number_of_frames=1))
    out.PixelData = encapsulate([fragment[: len(fragment) // 3]])
    return out


def _wrong_bits(ds: Dataset) -> Dataset:
    out = copy.deepcopy(ds)
    out.BitsAllocated, out.BitsStored, out.HighBit = 8, 8, 7
    return out


def _save(ds: Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def test_tree_goes_on_past_bad_files_and_writes_valid_findings(
    tmp_path: Path, mr: list[Dataset], subject: Subject, engine: TesseractEngine
) -> None:
    source = tmp_path / "source"
    _save(_corrupt_rle(mr[0]), source / "a_corrupt_rle.dcm")
    _save(_wrong_bits(mr[0]), source / "b_wrong_bits.dcm")
    (source / "c_notes.txt").write_text("not DICOM")
    _save(mr[0], source / "d_plain.dcm")
    _save(other_objects(subject)["secondary_capture"], source / "e" / "capture.dcm")
    summary, findings = scan_tree(source, engine, PrivateStore(tmp_path / "private"), jobs=2)
    assert summary.outcomes == {Outcome.QUARANTINED: 3, Outcome.SCANNED: 2}
    assert summary.reasons.keys() == {Reason.UNREADABLE}
    assert summary.facts["flagged"] == summary.facts["clear"] == 1
    assert [f.path for f in findings] == [
        "a_corrupt_rle.dcm", "b_wrong_bits.dcm", "c_notes.txt", "d_plain.dcm", "e/capture.dcm",
    ]  # fmt: skip
    assert [f.status for f in findings] == [ScanStatus.ERROR] * 3 + [
        ScanStatus.CLEAR,
        ScanStatus.FLAGGED,
    ]
    corrupt, wrong_bits, notes = findings[:3]
    assert corrupt.error and "RLE Lossless pixel data cannot be decoded" in corrupt.error
    assert wrong_bits.error and "the header does not match the pixels" in wrong_bits.error
    assert notes.error and "not DICOM" in notes.error
    for finding in (corrupt, wrong_bits):
        assert finding.error is not None and finding.error.startswith(f"input {finding.key}: ")
        assert subject.phi.patient_id not in finding.error  # never a header value

    out = tmp_path / "private" / "findings.json"
    write_findings(findings, out)
    records = json.loads(out.read_text(encoding="utf-8"))
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(records)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # it holds PHI
    capture = records[4]
    assert capture["flagged"] and capture["words"]
    assert {"text", "box", "confidence", "image"} <= set(capture["words"][0])
    assert {m["matched"] for m in capture["phi_matches"]} >= {"PatientName part", "PatientID"}


def test_tree_takes_an_engine_by_name_in_each_worker(
    tmp_path: Path, mr: list[Dataset], subject: Subject
) -> None:
    """Workers get the engine by pickling; each loads rapidocr's models itself."""
    source = tmp_path / "source"
    _save(_burned(mr[1], subject), source / "a_burned.dcm")
    _save(mr[0], source / "b_plain.dcm")
    private = PrivateStore(tmp_path / "private")
    _, findings = scan_tree(source, "rapidocr", private, jobs=2)
    assert [f.status for f in findings] == [ScanStatus.FLAGGED, ScanStatus.CLEAR]
    assert PhiKind.PATIENT_ID in _matched(findings[0])
    with pytest.raises(CurationError, match="unknown OCR engine 'ocrad'"):
        scan_tree(source, "ocrad", private)


def test_garbage_in_anatomy_is_kept_but_does_not_flag() -> None:
    """Flagging asks for evidence; the words stay for cleaning to blank."""
    short = FoundWord("ae", (10, 10, 12, 8), 90.0, "frame 0")
    unsure = FoundWord("peeps", (30, 10, 40, 8), 22.0, "frame 0")
    sure = FoundWord("SMITH", (30, 40, 40, 8), 85.0, "frame 0")
    overlay = FoundWord("ae", (10, 10, 12, 8), 5.0, "overlay 6000")
    assert not is_evidence(short, set()) and not is_evidence(unsure, set())
    assert is_evidence(sure, set()) and is_evidence(overlay, set())
    assert is_evidence(unsure, {("frame 0", (28, 8, 60, 12))})  # inside a PHI match
    assert not is_evidence(unsure, {("frame 1", (28, 8, 60, 12))})


def test_a_frame_moved_by_codec_noise_alone_has_not_moved() -> None:
    """A JPEG decoder's static blocks may differ by a level or two between frames (colour
    upsampling next to changed blocks); text appearing differs by far more."""
    from pipeline.pixels.frames import ImageKind, SourceImage
    from pipeline.pixels.scan import _moved

    first = np.full((16, 24, 3), 100, dtype=np.uint8)
    later = first.copy()
    later[2, 3] = (102, 99, 100)  # rounding next to a changed block
    later[10:14, 5:9] = 230  # a label that appears
    reference = SourceImage(ImageKind.FRAME, first, multiframe=True)
    image = SourceImage(ImageKind.FRAME, later, index=1, multiframe=True)
    exact, tolerant = _moved(reference, image), _moved(reference, image, 4)
    assert exact[2, 3] and not tolerant[2, 3]
    assert tolerant[10:14, 5:9].all() and tolerant.sum() == 16
    wide = SourceImage(ImageKind.FRAME, first[..., 0].astype(np.uint16) << 4, multiframe=True)
    moved = _moved(wide, SourceImage(ImageKind.FRAME, (later[..., 0].astype(np.uint16) << 4)), 64)
    assert moved.sum() == 16  # 16-bit samples, a 12-bit noise: compared without wrap-around
