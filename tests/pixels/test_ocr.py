"""Tesseract reads several images in one call and gives boxes in each image's own pixels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from pipeline.pixels.ocr import OcrEngine, TesseractEngine

from .images import text_mask


def _page(shape: tuple[int, int], text: str, x: int, y: int, height: int) -> np.ndarray:
    """Dark text on white, as :func:`pipeline.pixels.prepare.prepare` makes it."""
    return np.round(255 * (1 - text_mask(shape, text, x=x, y=y, height=height))).astype(np.uint8)


_IMPORT_DEID = """
import json, sys
import pipeline.steps.dicom_file
from pipeline.pixels.ocr import TesseractEngine
engine = TesseractEngine()
before = sorted(m for m in ("pytesseract", "pandas") if m in sys.modules)
engine.version()
print(json.dumps([before, "pytesseract" in sys.modules]))
"""


def test_the_deid_step_imports_pytesseract_only_when_it_reads_pixels() -> None:
    """pytesseract imports pandas (a quarter of a second at every ``mricurate deid``'s
    start): the step loads it only when an engine is first asked to read."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_DEID],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(done.stdout) == [[], True]


def test_is_an_ocr_engine(engine: TesseractEngine) -> None:
    assert isinstance(engine, OcrEngine)
    assert engine.name.startswith("tesseract ")


def test_batched_images_get_their_own_words_and_boxes(engine: TesseractEngine) -> None:
    first = _page((120, 300), "ALPHA 4711", x=40, y=70, height=14)
    second = _page((60, 500), "BRAVO", x=300, y=20, height=20)
    third = np.full((30, 30), 255, dtype=np.uint8)
    words = engine.read([first, second, third])
    assert len(words) == 3
    assert [w.text for w in words[0]] == ["ALPHA", "4711"]
    assert [w.text for w in words[1]] == ["BRAVO"]
    assert words[2] == []
    # Boxes are in the original pixels (scaling and padding undone): they
    # enclose the ink that was drawn, give or take a pixel.
    for word, page in ((words[0][0], first), (words[1][0], second)):
        rows, cols = np.nonzero(page[:, : word.left + word.width + 2] < 128)
        assert abs(word.left - cols.min()) <= 2 and abs(word.top - rows.min()) <= 2
        assert abs(word.top + word.height - rows.max() - 1) <= 2
    bravo = words[1][0]
    assert words[0][0].line == words[0][1].line != bravo.line
    assert all(0 <= w.confidence <= 100 for found in words for w in found)


def test_nothing_to_read(engine: TesseractEngine) -> None:
    assert engine.read([]) == []
