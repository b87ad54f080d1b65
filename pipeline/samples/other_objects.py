"""The non-MR objects an MR export also contains: screenshots, documents, reports, oddities.

PHI in these lives where header rules do not reach: burned into pixels,
inside an encapsulated PDF, in structured-report text, or under a private
SOP class a pipeline must refuse rather than pass through.  Burned-in text
uses a built-in bitmap font, so the pixels are the same on every machine and
an OCR engine can still read them.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID

from pipeline.samples.classic_mr import mr_series
from pipeline.samples.exams import SIEMENS, Vendor, subject_region
from pipeline.samples.headers import (
    Series,
    add_equipment,
    add_patient,
    add_pixel_module,
    add_series,
    add_study,
    code_item,
    format_da,
    format_dt,
    format_tm,
    item,
    new_dataset,
    new_series,
    sample_uid,
    sequence,
)
from pipeline.samples.subjects import Subject, study_moment

__all__ = ["PRIVATE_SOP_CLASS", "other_objects"]

SECONDARY_CAPTURE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7")
ENCAPSULATED_PDF_STORAGE = UID("1.2.840.10008.5.1.4.1.1.104.1")
BASIC_TEXT_SR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.88.11")
US_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")
# Siemens "CSA Non-Image Storage": private, so a pipeline must decide what to do with it.
PRIVATE_SOP_CLASS = UID("1.3.12.2.1107.5.9.1")

# Latin-1 letters that NFKD does not decompose into a base letter and an accent.
_UNDECOMPOSABLE = str.maketrans({"Ø": "O", "ø": "o", "Æ": "AE", "æ": "ae", "ß": "ss", "Ð": "D"})


def _ascii_fold(text: str) -> str:
    """``"SØRENSEN^ZOË"`` -> ``"SORENSEN^ZOE"``: how scanner overlays print names."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_UNDECOMPOSABLE))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


# 5×7 capitals and digits, so burned-in text is real pixels an OCR engine can read.
_GLYPHS: dict[str, tuple[str, ...]] = {
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "##..#", "##..#", "#.#.#", "#..##", "#..##", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
    "0": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    ":": (".....", "..#..", "..#..", ".....", "..#..", "..#..", "....."),
    "/": (".....", "....#", "...#.", "..#..", ".#...", "#....", "....."),
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    "'": ("..#..", "..#..", ".#...", ".....", ".....", ".....", "....."),
    " ": (".....",) * 7,
}


def _burn_text(
    image: npt.NDArray[np.uint8], text: str, top: int, left: int, scale: int, value: int
) -> None:
    """Draw ``text`` (accents folded, upper case) into ``image`` in place.

    Glyphs are scaled 5×7 bitmaps with softened edges: tesseract reads
    blurred blocks far more reliably than hard pixel staircases.
    """
    chars = _ascii_fold(text).upper()
    pad = scale
    mask = np.zeros((7 * scale + 2 * pad, 7 * scale * len(chars) + 2 * pad))
    block = np.ones((scale, scale))
    for index, char in enumerate(chars):
        glyph = np.array([[c == "#" for c in row] for row in _GLYPHS.get(char, _GLYPHS[" "])])
        column = pad + 7 * scale * index
        mask[pad : pad + 7 * scale, column : column + 5 * scale] = np.kron(glyph, block)
    for _ in range(2):
        mask = (np.roll(mask, 1, 0) + mask + np.roll(mask, -1, 0)) / 3.0
        mask = (np.roll(mask, 1, 1) + mask + np.roll(mask, -1, 1)) / 3.0
    top, left = top - pad, left - pad
    height = min(mask.shape[0], image.shape[0] - top)
    width = min(mask.shape[1], image.shape[1] - left)
    if height <= 0 or width <= 0:
        return
    region = image[top : top + height, left : left + width].astype(np.float64)
    alpha = mask[:height, :width]
    blended = region * (1.0 - alpha) + value * alpha
    image[top : top + height, left : left + width] = np.round(blended).astype(np.uint8)


def _display_name(name: str) -> str:
    return " ".join(part for part in name.split("^") if part)


def _secondary_capture(series: Series, sop_uid: str, moment: datetime) -> Dataset:
    subject, phi = series.subject, series.subject.phi
    ds = new_dataset(SECONDARY_CAPTURE_STORAGE, sop_uid, moment)
    ds.ImageType = ["DERIVED", "SECONDARY"]
    add_patient(ds, subject, series.patient_name)
    add_study(ds, series)
    add_series(ds, series, "OT")
    add_equipment(ds, subject, SIEMENS)
    ds.ConversionType = "WSD"
    ds.SecondaryCaptureDeviceManufacturer = "ACME Screen Grabber"
    ds.DateOfSecondaryCapture = format_da(moment)
    ds.TimeOfSecondaryCapture = format_tm(moment)
    ds.InstanceNumber = "1"
    ds.PatientOrientation = ""
    ds.ContentDate = format_da(moment)
    ds.ContentTime = format_tm(moment)
    ds.BurnedInAnnotation = "YES"
    ds.ImageComments = f"Screenshot for {_display_name(series.patient_name)}"
    rows, cols = 96, 480
    ramp = np.linspace(20, 70, cols, dtype=np.float64)[None, :]
    image = np.repeat(ramp, rows, axis=0).astype(np.uint8)
    _burn_text(image, _display_name(series.patient_name), 6, 6, 3, 250)
    _burn_text(image, phi.patient_id, 36, 6, 3, 250)
    birth = phi.birth_date
    _burn_text(image, f"DOB {birth[:4]}-{birth[4:6]}-{birth[6:]}", 66, 6, 3, 250)
    add_pixel_module(ds, rows, cols, bits=8)
    ds.PixelData = image.tobytes()
    return ds


def _tiny_pdf(lines: Sequence[str]) -> bytes:
    """A valid one-page PDF with ``lines`` as text (Latin-1, as PDFDocEncoding allows)."""
    text = " ".join(
        f"({line.replace(chr(92), '').replace('(', '').replace(')', '')}) Tj 0 -16 Td"
        for line in lines
    )
    stream = f"BT /F1 12 Tf 72 720 Td {text} ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def _encapsulated_pdf(series: Series, sop_uid: str, moment: datetime) -> Dataset:
    subject, phi = series.subject, series.subject.phi
    ds = new_dataset(ENCAPSULATED_PDF_STORAGE, sop_uid, moment)
    add_patient(ds, subject, series.patient_name)
    add_study(ds, series)
    add_series(ds, series, "DOC")
    add_equipment(ds, subject, SIEMENS)
    ds.ConversionType = "WSD"
    ds.InstanceNumber = "1"
    ds.ContentDate = format_da(moment)
    ds.ContentTime = format_tm(moment)
    ds.AcquisitionDateTime = format_dt(moment)
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = f"Referral {_display_name(series.patient_name)}"
    ds.ConceptNameCodeSequence = sequence(code_item("18748-4", "LN", "Diagnostic imaging study"))
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    pdf = _tiny_pdf(
        [
            f"Patient: {series.patient_name.replace('^', ' ').strip()}",
            f"MRN: {phi.patient_id}  DOB: {phi.birth_date}",
            f"Referrer: {phi.referring_physician.replace('^', ' ').strip()}",
            f"{phi.institution_name}, {phi.institution_address}",
        ]
    )
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")
    return ds


def _basic_sr(series: Series, sop_uid: str, moment: datetime) -> Dataset:
    subject, phi = series.subject, series.subject.phi
    ds = new_dataset(BASIC_TEXT_SR_STORAGE, sop_uid, moment)
    add_patient(ds, subject, series.patient_name)
    add_study(ds, series)
    add_series(ds, series, "SR")
    ds.ReferencedPerformedProcedureStepSequence = DicomSequence([])
    add_equipment(ds, subject, SIEMENS)
    ds.InstanceNumber = "1"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ContentDate = format_da(moment)
    ds.ContentTime = format_tm(moment)
    ds.PerformedProcedureCodeSequence = DicomSequence([])
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = sequence(code_item("18748-4", "LN", "Diagnostic imaging report"))
    ds.ContinuityOfContent = "SEPARATE"
    observer = item(
        RelationshipType="HAS OBS CONTEXT",
        ValueType="PNAME",
        ConceptNameCodeSequence=sequence(code_item("121008", "DCM", "Person Observer Name")),
        PersonName=phi.referring_physician,
    )
    finding = item(
        RelationshipType="CONTAINS",
        ValueType="TEXT",
        ConceptNameCodeSequence=sequence(code_item("121071", "DCM", "Finding")),
        TextValue=(
            f"{_display_name(series.patient_name)} ({phi.patient_id}, born {phi.birth_date}), "
            f"referred by {_display_name(phi.referring_physician)}: no acute findings. "
            f"Compared with prior exam at {phi.institution_name}."
        ),
    )
    ds.ContentSequence = sequence(observer, finding)
    return ds


def _ultrasound(series: Series, sop_uid: str, moment: datetime) -> Dataset:
    subject, phi = series.subject, series.subject.phi
    ds = new_dataset(US_IMAGE_STORAGE, sop_uid, moment)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL", "0001"]
    add_patient(ds, subject, series.patient_name)
    add_study(ds, series)
    add_series(ds, series, "US")
    add_equipment(ds, subject, Vendor("ACME Ultrasound", "SonoFake 9", "1.2", 0, 0, ""))
    ds.InstanceNumber = "1"
    ds.PatientOrientation = ""
    ds.ContentDate = format_da(moment)
    ds.ContentTime = format_tm(moment)
    ds.BurnedInAnnotation = "YES"
    ds.LossyImageCompression = "00"
    rows, cols = 240, 320
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    # The fan starts below the two text lines, as on a scanner's screen.
    radius = np.hypot(y - 20.0, x - cols / 2)
    angle = np.abs(np.arctan2(x - cols / 2, y - 20.0))
    sector = (radius > 40) & (radius < rows - 26) & (angle < 0.6)
    rng = np.random.default_rng(_stable_int(sop_uid))
    speckle = rng.gamma(2.0, 40.0, size=(rows, cols)) * (1.0 - radius / (rows * 1.5))
    gray = np.where(sector, np.clip(speckle, 0, 255), 0).astype(np.uint8)
    _burn_text(gray, _display_name(series.patient_name), 3, 3, 2, 255)
    _burn_text(gray, phi.patient_id, 22, 3, 2, 255)
    rgb = np.stack([gray, gray, gray], axis=-1)
    rgb[sector & (np.abs(x - cols / 2) < 6) & (radius > 90) & (radius < 120)] = (200, 40, 40)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = rgb.tobytes()
    return ds


def _stable_int(text: str) -> int:
    """A stable integer from text (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def other_objects(
    subject: Subject, *, seed: int = 0, study_uid: str | None = None
) -> dict[str, Dataset]:
    """Non-MR objects that turn up in MR exports and that a pipeline must handle or refuse.

    Parameters
    ----------
    subject : Subject
        Whose PHI to plant.
    seed : int, optional
        Drives UIDs.
    study_uid : str, optional
        Put the objects into an existing study.

    Returns
    -------
    dict of str to pydicom.Dataset
        ``"secondary_capture"``: 8-bit screenshot with name, MRN and birth date
        burned into the pixels; ``"encapsulated_pdf"``: a referral PDF naming
        the patient; ``"basic_sr"``: Basic Text SR with the name in a TEXT and
        a PNAME item; ``"private_sop"``: an MR image under Siemens' private
        CSA Non-Image SOP class; ``"ultrasound"``: RGB US image with the name
        burned in.
    """
    moment = study_moment(subject) + timedelta(minutes=55)
    builders = {
        "secondary_capture": (_secondary_capture, 90, "Screen capture"),
        "encapsulated_pdf": (_encapsulated_pdf, 91, "Referral letter"),
        "basic_sr": (_basic_sr, 92, "Radiology report"),
        "private_sop": (None, 99, ""),
        "ultrasound": (_ultrasound, 93, "US survey"),
    }
    objects: dict[str, Dataset] = {}
    for key, (build, number, description) in builders.items():
        if build is None:
            # A scanner's non-image object: MR content under a SOP class no standard knows.
            private = mr_series(
                subject,
                n_slices=1,
                rows=16,
                cols=16,
                seed=seed,
                study_uid=study_uid,
                series_number=number,
                description_suffix=" CSA NON-IMAGE",
            )[0]
            private.SOPClassUID = PRIVATE_SOP_CLASS
            private.file_meta.MediaStorageSOPClassUID = PRIVATE_SOP_CLASS
            objects[key] = private
            continue
        series = new_series(
            subject,
            seed=seed,
            study_uid=study_uid,
            series_number=number,
            description=description,
            protocol=subject_region(subject).protocols[0],
            vendor=SIEMENS,
            kind=key,
        )
        objects[key] = build(series, sample_uid("image", series.series_uid, 0), moment)
    return objects
