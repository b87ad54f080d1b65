"""OCR engines behind one small interface, and tesseract as the first of them.

The scan needs words with boxes in the original image's pixel coordinates
and a confidence; how an engine gets there (scaling, padding, batching) is
its own business.  :class:`OcrEngine` is that contract, so a second engine
(rapidocr, a cloud service) can be swapped in and compared on the same
findings.

:class:`TesseractEngine` calls the ``tesseract`` program through pytesseract.
Each call starts a process that loads its model (~70 ms), so the images of
one file are tiled into one tall canvas with white bands between them, read
in one call, and the words split back by their vertical position.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from PIL import Image

from pipeline.errors import CurationError, InputError
from pipeline.pixels.prefilter import letter_height
from pipeline.pixels.prepare import Enlarged, enlarge
from pipeline.reasons import Reason

__all__ = ["OcrEngine", "TesseractEngine", "Word"]

Grey = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Word:
    """One word an engine read, boxed in the original image's pixels.

    Attributes
    ----------
    text : str
        As read, not normalised.
    left, top, width, height : int
        The box in the pixel coordinates of the image passed to the engine.
    confidence : float
        The engine's 0-100 confidence.  Kept, never used to drop a word: a
        low-confidence box is still text, and burned-in text is what we look
        for, legible or not.
    line : int
        Words with the same number were read as one line of the same image
        (dates and IDs are often split into several words).
    """

    text: str
    left: int
    top: int
    width: int
    height: int
    confidence: float
    line: int = 0

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.width, self.height)


@runtime_checkable
class OcrEngine(Protocol):
    """What the scan needs from an OCR engine."""

    @property
    def name(self) -> str:
        """Engine and version, recorded with the findings."""
        ...

    def read(self, images: list[Grey]) -> list[list[Word]]:
        """Read each image (8-bit, dark text on light, as :func:`.prepare.prepare` makes them).

        Returns one list of words per image, boxes in that image's pixels.
        """
        ...


# White band between tiles: taller than any line, so no line spans two tiles.
_SEPARATOR = 48
# Tesseract and Leptonica handle large pages, but memory and time grow with
# them; a tall file (hundreds of frames) is read in several canvases.
_MAX_CANVAS_HEIGHT = 16000
_MAX_CANVAS_PIXELS = 24_000_000
# Images larger than this (after enlarging) get a tesseract call of their own.
_SOLO_PIXELS = 300_000


def _pytesseract() -> ModuleType:
    """pytesseract, imported on first use: it imports pandas (a quarter of a second),
    which a run that reads no pixels (``deid`` without ``--clean-pixels``) never needs."""
    import pytesseract  # type: ignore[import-untyped]

    module: ModuleType = pytesseract
    return module


@dataclass(frozen=True)
class TesseractEngine:
    """Tesseract 4/5 (LSTM) in sparse-text mode.

    Parameters
    ----------
    language : str
        Tesseract language(s), e.g. ``"eng"`` or ``"eng+deu"``.
    psm : int
        Page segmentation mode; 11 ("sparse text") finds scattered
        annotations instead of looking for a page of paragraphs.
    timeout : float
        Seconds per tesseract call before the input is reported as failed.
    upscale_below : int
        Images with no measurable letters are doubled when their longer side
        is shorter than this (see :meth:`scale_for`).
    """

    language: str = "eng"
    psm: int = 11
    timeout: float = 120.0
    upscale_below: int = 512

    @property
    def name(self) -> str:
        return f"tesseract {self.version()} ({self.language}, psm {self.psm})"

    @staticmethod
    def version() -> str:
        """The installed tesseract's version, or :class:`CurationError` if there is none."""
        pytesseract = _pytesseract()
        try:
            return str(pytesseract.get_tesseract_version())
        except (pytesseract.TesseractNotFoundError, OSError):
            raise CurationError(
                "tesseract is not installed or not on PATH: install it (Debian: apt-get install "
                "tesseract-ocr, or `make install`) before running the pixel scan"
            ) from None

    def read(self, images: list[Grey]) -> list[list[Word]]:
        """Read all ``images`` in as few tesseract calls as their size allows."""
        enlarged = [enlarge(image, scale=self.scale_for(image)) for image in images]
        results: list[list[Word]] = [[] for _ in images]
        lines: dict[tuple[int, int], int] = {}
        for number, batch in enumerate(_batches(enlarged)):
            canvas, offsets = _tile([enlarged[i] for i in batch])
            for word, (top, bottom) in self._words(canvas):
                slot = _slot(offsets, (top + bottom) // 2)
                index, offset = batch[slot], offsets[slot][0]
                x, y, w, h = enlarged[index].to_original(
                    word.left, word.top - offset, word.width, word.height
                )
                if w == 0 or h == 0:
                    continue  # read in the white margin: nothing of the image
                line = lines.setdefault((number, word.line), len(lines))
                results[index].append(Word(word.text, x, y, w, h, word.confidence, line))
        return results

    def scale_for(self, image: Grey) -> int:
        """2 when ``image``'s letters are under ~14 px high (or unmeasurable in a small image), else 1.

        Letter height is measured on the image itself (rows of letter-like
        shapes, see :func:`.prefilter.letter_height`); without letters to
        measure, images smaller than :attr:`upscale_below` are doubled.
        """
        height = letter_height((255 - image).astype(np.uint8))
        if height is None:
            scale = 2 if max(image.shape) < self.upscale_below else 1
        else:
            scale = 1 if height >= 14 else 2
        # Three times made no letter more legible in our tests, and a tile
        # much larger than its neighbours on the canvas upset tesseract's
        # layout analysis of theirs.
        return 1 if image.size * scale * scale > _MAX_CANVAS_PIXELS // 2 else scale

    def _words(self, canvas: Grey) -> list[tuple[Word, tuple[int, int]]]:
        """Run tesseract once; words with their canvas boxes and vertical extent."""
        # One thread per process: the scan runs one process per core already,
        # and OpenMP threads in each would only contend.
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        pytesseract = _pytesseract()
        try:
            data = pytesseract.image_to_data(
                Image.fromarray(canvas),
                lang=self.language,
                config=f"--psm {self.psm}",
                output_type=pytesseract.Output.DICT,
                timeout=self.timeout,
            )
        except (pytesseract.TesseractNotFoundError, FileNotFoundError):
            self.version()  # raises the clear message
            raise
        except RuntimeError as exc:
            if "timeout" in str(exc).lower():
                raise InputError(
                    f"OCR did not finish within {self.timeout:.0f} s; scan this file alone with a "
                    "longer timeout, or review it by eye",
                    Reason.STALLED,
                ) from None
            raise
        words: list[tuple[Word, tuple[int, int]]] = []
        lines: dict[tuple[int, int, int], int] = {}
        for i, text in enumerate(data["text"]):
            text = str(text).strip()
            if int(data["level"][i]) != 5 or not text:
                continue
            left, top = int(data["left"][i]), int(data["top"][i])
            width, height = int(data["width"][i]), int(data["height"][i])
            key = (int(data["block_num"][i]), int(data["par_num"][i]), int(data["line_num"][i]))
            line = lines.setdefault(key, len(lines))
            confidence = max(0.0, float(data["conf"][i]))
            words.append(
                (Word(text, left, top, width, height, confidence, line), (top, top + height))
            )
        return words


def _batches(images: Sequence[Enlarged]) -> list[list[int]]:
    """Group image indices so each canvas stays under the size limits.

    A large image is read alone: tesseract sizes its noise filter by the
    whole page, and a large region of anatomy on the same canvas made it
    drop the small letters of a text crop beside it (a Siemens overlay's
    8 px "Tra" is read on its own and was lost on a shared canvas).
    """
    batches: list[list[int]] = []
    small = [i for i, image in enumerate(images) if image.pixels.size <= _SOLO_PIXELS]
    batches += [[i] for i, image in enumerate(images) if image.pixels.size > _SOLO_PIXELS]
    height = width = 0
    start = len(batches)
    for index in small:
        image = images[index]
        h, w = image.pixels.shape
        new_height = height + h + (_SEPARATOR if height else 0)
        new_width = max(width, w)
        if len(batches) > start and (
            new_height > _MAX_CANVAS_HEIGHT or new_height * new_width > _MAX_CANVAS_PIXELS
        ):
            batches.append([index])
            height, width = h, w
            continue
        if len(batches) == start:
            batches.append([])
        batches[-1].append(index)
        height, width = new_height, new_width
    return batches


def _tile(images: Sequence[Enlarged]) -> tuple[Grey, list[tuple[int, int]]]:
    """Stack images vertically on white; return the canvas and each tile's (top, bottom)."""
    width = max(image.pixels.shape[1] for image in images)
    height = sum(image.pixels.shape[0] for image in images) + _SEPARATOR * (len(images) - 1)
    canvas = np.full((height, width), 255, dtype=np.uint8)
    offsets: list[tuple[int, int]] = []
    y = 0
    for image in images:
        h, w = image.pixels.shape
        canvas[y : y + h, :w] = image.pixels
        offsets.append((y, y + h))
        y += h + _SEPARATOR
    return canvas, offsets


def _slot(offsets: list[tuple[int, int]], y: int) -> int:
    """The tile a word whose middle is at ``y`` belongs to (the nearest, if it is between two)."""
    for slot, (top, bottom) in enumerate(offsets):
        if top <= y < bottom:
            return slot
    return min(
        range(len(offsets)), key=lambda s: min(abs(y - offsets[s][0]), abs(y - offsets[s][1]))
    )
