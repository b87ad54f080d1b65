"""Textured anatomy makes OCR read "words", and none of them is evidence of text.

The README's figure: pydicom-data's 1024 x 1024 MR shoulder (no text at all)
gives Tesseract 556 words in the default scan (Tesseract 5.3.0, pre-filter
on), none of 3+ letters and digits read with confidence >= 70, so it is not
flagged; RapidOCR reads a handful, none at >= 30 (pipeline/pixels/scan.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from pipeline.pixels.ocr import TesseractEngine
from pipeline.pixels.rapid import RapidOcrEngine
from pipeline.pixels.scan import (
    EVIDENCE_CHARACTERS,
    EVIDENCE_CONFIDENCE,
    ScanStatus,
    is_evidence,
    scan_dataset,
)
from pipeline.read.dicom import quiet_pydicom, read_dicom

# Measured with Tesseract 5.3.0 (Debian bookworm); another release reads a
# few more or fewer, so the test allows 10% either way.
TESSERACT_WORDS = 556


@pytest.fixture(scope="module")
def shoulder() -> Dataset:
    data_store = pytest.importorskip("data_store", reason="pydicom-data is not installed")
    path = Path(data_store.__file__).parent / "data" / "MR2_UNCR.dcm"
    quiet_pydicom()
    ds = read_dicom(path.read_bytes(), "shoulder")
    assert (ds.Rows, ds.Columns) == (1024, 1024)
    return ds


def test_tesseract_reads_hundreds_of_words_in_the_shoulder_none_of_them_evidence(
    engine: TesseractEngine, shoulder: Dataset
) -> None:
    finding = scan_dataset(shoulder, "shoulder", engine)
    assert finding.header_signals == () and finding.images_scanned == 1
    assert abs(len(finding.words) - TESSERACT_WORDS) <= TESSERACT_WORDS // 10, len(finding.words)
    long = [w for w in finding.words if sum(c.isalnum() for c in w.text) >= EVIDENCE_CHARACTERS]
    assert long  # words of 3+ letters and digits are read...
    assert max(w.confidence for w in long) < EVIDENCE_CONFIDENCE  # ...none that confident
    assert not any(is_evidence(w, set()) for w in finding.words)
    assert finding.status is ScanStatus.CLEAR and not finding.flagged


def test_rapidocr_reads_a_few_words_in_the_shoulder_none_at_30(shoulder: Dataset) -> None:
    finding = scan_dataset(shoulder, "shoulder", RapidOcrEngine())
    assert 1 <= len(finding.words) <= 10, finding.words
    assert all(w.confidence < 30 for w in finding.words)
    assert finding.status is ScanStatus.CLEAR and not finding.flagged
