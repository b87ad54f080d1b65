from __future__ import annotations

import shutil

import pytest

from pipeline.pixels.ocr import TesseractEngine
from pipeline.read.dicom import quiet_pydicom


@pytest.fixture(scope="session")
def engine() -> TesseractEngine:
    """The real tesseract (the Makefile installs tesseract-ocr); skipped where it is absent."""
    if shutil.which("tesseract") is None:
        pytest.skip("tesseract is not installed (Debian: apt-get install tesseract-ocr)")
    quiet_pydicom()
    return TesseractEngine()
