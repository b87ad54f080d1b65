"""RapidOCR (PP-OCRv6 on onnxruntime) as a second OCR engine, offline.

Why a second engine: tesseract is built for pages of print; it misses text
over anatomy and faint text, which a detector trained on scene text (DB
detection, then CTC recognition of each detected line) finds.  The two fail
on different images, so ``both`` (:mod:`.engines`) reads with each.

Offline by construction: rapidocr downloads a model whenever a model path
is not given, so every model is passed by explicit path to the files
bundled in the wheel (:func:`bundled_models`), and the engine refuses to
start when one is missing instead of letting the library fetch it.  The
recogniser's character list is stored inside the ONNX model, so no
dictionary file is needed either.

Never gated on confidence: ``text_score`` is 0 and the detector's box
threshold low; every detected box is returned with its score as the
word's confidence.  Whether a low-confidence box is enough to *flag* a
plain slice is the scan's decision (:mod:`.scan`), never the engine's, and
blanking covers every box regardless.

Boxes: rapidocr detects lines and, with ``return_word_box``, places each
word (split at spaces) inside its line from the recogniser's character
positions.  Those word boxes are returned, grown to the full line height,
so each word keeps its own box for matching and blanking; a line whose
words cannot be placed is returned as one word with the line's box.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.errors import CurationError
from pipeline.pixels.ocr import Word
from pipeline.pixels.prefilter import letter_height
from pipeline.pixels.prepare import Enlarged, enlarge

__all__ = ["ModelFiles", "RapidOcrEngine", "bundled_models", "load_seconds"]

Grey = npt.NDArray[np.uint8]

# Letters this tall (px) or more are read at their own size; smaller ones
# are enlarged towards it (at most 3x), as for tesseract, so an 8 px bitmap
# font has more than one pixel per stroke.  Not tuned further.
_MIN_LETTER = 16
# The detector's input side limit: images are never enlarged by rapidocr
# itself (its default enlarges every image to 736 px on its short side,
# 8x the work for a 256 px slice), only shrunk when larger than this.
_MAX_SIDE = 2048


@dataclass(frozen=True)
class ModelFiles:
    """The three ONNX models: detection, direction classification, recognition."""

    det: Path
    cls: Path
    rec: Path

    def missing(self) -> list[Path]:
        return [p for p in (self.det, self.cls, self.rec) if not p.is_file()]


def bundled_models() -> ModelFiles:
    """The models shipped inside the rapidocr wheel (PP-OCRv6 small, v2.0 mobile classifier)."""
    import rapidocr

    root = Path(rapidocr.__file__).resolve().parent / "models"
    return ModelFiles(
        det=root / "PP-OCRv6_det_small.onnx",
        cls=root / "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
        rec=root / "PP-OCRv6_rec_small.onnx",
    )


# One loaded model set per process and configuration: loading takes about a
# second, so it happens on first use in each worker, never per file.
_loaded: dict[tuple[object, ...], Any] = {}
_lock = threading.Lock()
_load_seconds: dict[tuple[object, ...], float] = {}


def load_seconds() -> float:
    """Seconds this process has spent loading rapidocr models (for the bench)."""
    return sum(_load_seconds.values())


@dataclass(frozen=True)
class RapidOcrEngine:
    """RapidOCR with the bundled PP-OCRv6 models, thresholds low, one thread.

    Parameters
    ----------
    det_thresh : float
        Binarisation level of the detector's probability map (rapidocr's
        default 0.3); lower keeps faint strokes.
    box_thresh : float
        Mean probability a detected box needs to be kept (default 0.5):
        low, so faint text is not dropped before it is read.
    unclip_ratio : float
        How far detected boxes are grown around the strokes; the default
        1.6 gives boxes that cover the letters with a small margin.
    threads : int
        onnxruntime intra-op threads.  1: the scan runs one process per
        core, and threads inside each would only contend.
    use_cls : bool
        Run the 0/180 degree classifier on each line.  Off by default:
        burned-in text is drawn upright, and the classifier costs one more
        model call per line.
    models : ModelFiles, optional
        By default :func:`bundled_models`.
    """

    det_thresh: float = 0.2
    box_thresh: float = 0.3
    unclip_ratio: float = 1.6
    threads: int = 1
    use_cls: bool = False
    models: ModelFiles | None = None

    @property
    def name(self) -> str:
        self._model()  # fails early and clearly when a model is missing
        import onnxruntime
        from rapidocr._version import __version__

        return f"rapidocr {__version__} (PP-OCRv6 small, onnxruntime {onnxruntime.__version__})"

    def read(self, images: list[Grey]) -> list[list[Word]]:
        """Read each image separately (the detector sees one image at a time)."""
        if not images:
            return []
        model = self._model()
        return [self._read_one(model, image) for image in images]

    def scale_for(self, image: Grey) -> int:
        """How much to enlarge ``image`` so its letters are about :data:`_MIN_LETTER` px or more."""
        height = letter_height((255 - image).astype(np.uint8))
        if height is None:
            scale = 2 if max(image.shape) < 512 else 1
        else:
            scale = max(1, min(3, int(np.ceil(_MIN_LETTER / max(height, 1.0)))))
        while scale > 1 and max(image.shape) * scale > _MAX_SIDE:
            scale -= 1
        return scale

    def _read_one(self, model: Any, image: Grey) -> list[Word]:
        if image.size == 0 or int(image.min()) == int(image.max()):
            return []  # blank: nothing to detect
        enlarged = enlarge(image, scale=self.scale_for(image))
        result = model(enlarged.pixels, return_word_box=True)
        boxes = getattr(result, "boxes", None)
        texts = getattr(result, "txts", None)
        if boxes is None or texts is None or len(boxes) == 0:
            return []
        scores = getattr(result, "scores", None) or (0.0,) * len(texts)
        placed = getattr(result, "word_results", None) or ()
        words: list[Word] = []
        for line, (quad, text, score) in enumerate(zip(boxes, texts, scores, strict=False)):
            line_box = _rect(quad)
            parts = placed[line] if line < len(placed) else ()
            words += _words(enlarged, line, line_box, str(text), float(score), parts)
        return words

    def _model(self) -> Any:
        models = self.models or bundled_models()
        key = (models, self.det_thresh, self.box_thresh, self.unclip_ratio, self.threads,
               self.use_cls)  # fmt: skip
        model = _loaded.get(key)
        if model is not None:
            return model
        with _lock:
            if key in _loaded:
                return _loaded[key]
            missing = models.missing()
            if missing:
                raise CurationError(
                    f"rapidocr model file(s) missing: {', '.join(p.name for p in missing)}; "
                    "reinstall the pinned rapidocr wheel (it bundles them) or choose "
                    "--ocr-engine tesseract"
                )
            started = time.perf_counter()
            _loaded[key] = _build(models, self)
            _load_seconds[key] = time.perf_counter() - started
            return _loaded[key]


def _build(models: ModelFiles, engine: RapidOcrEngine) -> Any:
    """A RapidOCR instance on explicit model paths: nothing is looked up or downloaded."""
    os.environ.setdefault("OMP_NUM_THREADS", str(engine.threads))
    from rapidocr import RapidOCR

    threads = max(1, engine.threads)
    params: dict[str, object] = {
        "Global.log_level": "error",
        "Global.text_score": 0.0,
        "Global.use_cls": engine.use_cls,
        "Global.return_word_box": True,
        # Never rapidocr's own folder: a path given for every model means the
        # root is never searched, and a wrong one fails instead of downloading.
        "Global.model_root_dir": str(models.det.parent),
        "Global.max_side_len": _MAX_SIDE,
        "Det.model_path": str(models.det),
        "Cls.model_path": str(models.cls),
        "Rec.model_path": str(models.rec),
        "Det.limit_type": "max",
        "Det.limit_side_len": _MAX_SIDE,
        "Det.thresh": engine.det_thresh,
        "Det.box_thresh": engine.box_thresh,
        "Det.unclip_ratio": engine.unclip_ratio,
        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    }
    return RapidOCR(params=params)


def _rect(quad: Any) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) around a quadrilateral (rapidocr's boxes are 4 corner points)."""
    points = np.asarray(quad, dtype=np.float64).reshape(-1, 2)
    return (float(points[:, 0].min()), float(points[:, 1].min()),
            float(points[:, 0].max()), float(points[:, 1].max()))  # fmt: skip


def _words(
    enlarged: Enlarged,
    line: int,
    line_box: tuple[float, float, float, float],
    text: str,
    score: float,
    parts: Sequence[Any],
) -> list[Word]:
    """The words of one detected line, boxed in the original image's pixels.

    Word boxes from rapidocr span only the recognised characters' columns;
    they are given the line's full height, so a word's box covers its
    letters' ascenders and descenders as the line box does.
    """
    x0, y0, x1, y1 = line_box
    found: list[tuple[str, float, float, float]] = []  # text, score, left, right
    for part in parts:
        try:
            word_text, word_score, quad = part
        except (TypeError, ValueError):
            continue
        word_text = str(word_text).strip()
        if not word_text or quad is None:
            continue
        left, _, right, _ = _rect(quad)
        found.append((word_text, float(word_score), max(x0, left), min(x1, right)))
    if " ".join(t for t, *_ in found).split() != text.split():
        # Placement lost or merged words: keep the line whole, under one box.
        found = [(text.strip(), score, x0, x1)] if text.strip() else []
    words: list[Word] = []
    for word_text, word_score, left, right in found:
        x, y, w, h = enlarged.to_original(
            int(np.floor(left)), int(np.floor(y0)),
            int(np.ceil(right - np.floor(left))), int(np.ceil(y1 - np.floor(y0))),
        )  # fmt: skip
        if w == 0 or h == 0:
            continue  # in the white margin only
        words.append(Word(word_text, x, y, w, h, 100.0 * max(0.0, word_score), line))
    return words
