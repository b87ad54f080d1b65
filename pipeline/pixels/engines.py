"""Choosing an OCR engine by name, and ``both``: every word either engine read.

Tesseract and RapidOCR miss different text (tesseract: text over anatomy
and faint text; RapidOCR: some small bitmap fonts and single short words),
so reading with both and keeping the union finds more than either.  The
union is what the scan wants: a word one engine missed is still burned in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from pipeline.errors import CurationError
from pipeline.pixels.ocr import Grey, OcrEngine, TesseractEngine, Word
from pipeline.pixels.rapid import RapidOcrEngine

__all__ = ["DEFAULT_ENGINE", "BothEngine", "EngineName", "make_engine"]


class EngineName(enum.Enum):
    TESSERACT = "tesseract"
    RAPIDOCR = "rapidocr"
    BOTH = "both"


# Chosen on bench/ocr.py's figures (README, "Pixel scan"): see make_engine.
DEFAULT_ENGINE = EngineName.BOTH


@dataclass(frozen=True)
class BothEngine:
    """Tesseract and RapidOCR on the same images; the union of their words.

    A RapidOCR word is left out only when tesseract read the same text
    (letters and digits, case-folded) in a box that overlaps it: the same
    word read twice.  Where the two read one place differently, both
    readings are kept: either may be the one that matches the header, and
    blanking covers both boxes.
    """

    tesseract: TesseractEngine = field(default_factory=TesseractEngine)
    rapid: RapidOcrEngine = field(default_factory=RapidOcrEngine)

    @property
    def name(self) -> str:
        return f"both: {self.tesseract.name} + {self.rapid.name}"

    def read(self, images: list[Grey]) -> list[list[Word]]:
        first = self.tesseract.read(images)
        second = self.rapid.read(images)
        return [union(a, b) for a, b in zip(first, second, strict=True)]


def union(first: list[Word], second: list[Word]) -> list[Word]:
    """``first`` and the words of ``second`` that do not repeat one of ``first``.

    Line numbers of ``second`` are moved past those of ``first`` so lines of
    the two engines never merge in matching.
    """
    shift = max((w.line for w in first), default=-1) + 1
    out = list(first)
    for word in second:
        if any(_same(word, other) for other in first):
            continue
        out.append(replace(word, line=word.line + shift))
    return out


def _same(a: Word, b: Word) -> bool:
    return _compact(a.text) == _compact(b.text) and _overlap(a, b) >= 0.5


def _compact(text: str) -> str:
    return "".join(c for c in text.casefold() if c.isalnum())


def _overlap(a: Word, b: Word) -> float:
    """Intersection over the smaller box's area (1.0 when one holds the other)."""
    w = min(a.left + a.width, b.left + b.width) - max(a.left, b.left)
    h = min(a.top + a.height, b.top + b.height) - max(a.top, b.top)
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min(a.width * a.height, b.width * b.height)
    return (w * h) / smaller if smaller else 0.0


def make_engine(name: str | EngineName, *, language: str = "eng") -> OcrEngine:
    """The engine called ``name``: ``tesseract``, ``rapidocr`` or ``both``.

    Parameters
    ----------
    name : str or EngineName
        Case-insensitive.
    language : str
        Tesseract's language(s) (RapidOCR's model is multilingual Latin).

    Raises
    ------
    CurationError
        An unknown name (the message lists the known ones).
    """
    try:
        chosen = name if isinstance(name, EngineName) else EngineName(str(name).strip().lower())
    except ValueError:
        known = ", ".join(e.value for e in EngineName)
        raise CurationError(f"unknown OCR engine {name!r}: choose one of {known}") from None
    if chosen is EngineName.TESSERACT:
        return TesseractEngine(language=language)
    if chosen is EngineName.RAPIDOCR:
        return RapidOcrEngine()
    return BothEngine(tesseract=TesseractEngine(language=language))
