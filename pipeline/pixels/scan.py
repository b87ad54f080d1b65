"""Scan files for burned-in text: one finding per file, written as JSON.

For each input the scan records why its header already says the pixels may
carry text (the same signals that hold a file back in ``deid``), which
words OCR read in which image, and which of them are the file's own PHI.
A file is *flagged* when its header signals burned-in text or when its
pixels give evidence of text (:func:`is_evidence`); a reviewer starts from
the flagged files.

Flagging is not redaction.  Every word an engine read is recorded in
``words``, low confidence included, and cleaning blanks every one of them:
a box that might be text is blanked, never spared for its confidence.  But
OCR of textured anatomy (trabecular bone, a 1024 x 1024 shoulder) reads
dozens of short low-confidence "words" in a slice with no text at all, and
flagging every such slice would bury the files that do carry text.  So a
*plain* file (no header signal) is flagged only on evidence: a word matched
to PHI, a word in an overlay or icon, or a word of at least
:data:`EVIDENCE_CHARACTERS` letters and digits read with confidence at
least :data:`EVIDENCE_CONFIDENCE`.  Its words are kept either way.

Like ``deid``, every input ends in a finding: a file that cannot be read or
decoded gets one with ``error`` set (status ``error``; it was not scanned,
so it is not cleared), and the scan goes on.

The findings hold PHI (the words read, the input paths): they are written
with mode 0600 and belong in the private location, never in a release.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.uid import JPEGBaseline8Bit, JPEGExtended12Bit

from pipeline.atomic import atomic_write_text
from pipeline.dicom.burned_in import burned_in_signals
from pipeline.dicom.profile import SopPolicy, load_sop_policy
from pipeline.errors import InputError
from pipeline.pixels.frames import ImageKind, SourceImage, iter_images
from pipeline.pixels.ocr import OcrEngine, Word
from pipeline.pixels.phi import HeaderTerm, PhiMatch, header_terms, match_words
from pipeline.pixels.prefilter import Box, components, needs_ocr
from pipeline.pixels.prepare import dark_text_map, text_map, text_views
from pipeline.pixels.regions import RegionRules, TextPrior
from pipeline.read.content import sha256_of
from pipeline.read.dicom import DEFAULT_MAX_INFLATED, read_dicom
from pipeline.rulefiles import rules_root

__all__ = [
    "EVIDENCE_CHARACTERS",
    "EVIDENCE_CONFIDENCE",
    "FoundWord",
    "OverlayPlane",
    "ScanFinding",
    "ScanStatus",
    "failed_finding",
    "header_signals",
    "header_vocabulary",
    "is_evidence",
    "relative_path",
    "scan_data",
    "scan_dataset",
    "scan_file",
    "write_findings",
]

# Prepared images are sent to the engine in batches of about this many
# pixels, so a long multi-frame file never holds all its frames at once.
_OCR_BATCH_PIXELS = 16_000_000


class ScanStatus(enum.Enum):
    CLEAR = "clear"  # scanned: no header signal, no text found
    FLAGGED = "flagged"  # a header signal or text in the pixels
    ERROR = "error"  # not scanned (unreadable or undecodable): not cleared either


@dataclass(frozen=True)
class FoundWord:
    """A word read in one image of a file, boxed in that image's pixels."""

    text: str
    box: tuple[int, int, int, int]  # x, y, w, h
    confidence: float
    image: str  # "frame 0", "overlay 6000", "overlay 6010 frame 2", "icon"


@dataclass(frozen=True)
class OverlayPlane:
    """An overlay plane the file declares, and how much it draws."""

    image: str
    group: int
    bit: int | None  # set when the plane lives in unused bits of the pixel data
    set_pixels: int


@dataclass(frozen=True)
class ScanFinding:
    """What the scan found in one input.

    Attributes
    ----------
    path : str
        The input's path relative to SOURCE (PHI: paths can hold names).
    key : str
        Opaque key: the first 12 hex digits of the input's SHA-256 (empty
        when it could not be read).
    flagged : bool
        A header signal, or evidence of text in the pixels (:func:`is_evidence`).
    status : ScanStatus
        ``flagged``, ``clear``, or ``error`` (see ``error``).
    header_signals : tuple of str
        Why the header alone says the pixels may carry text.
    words : tuple of FoundWord
        Everything the engine read, low confidence included (and blanked
        by cleaning whether or not the file is flagged).
    phi_matches : tuple of PhiMatch
        Words recognised as this file's header PHI or as generic PHI.
    images_scanned : int
        Images read by the engine.
    ocr_skipped_by_prefilter : int
        Images the pre-filter judged free of text (not read).
    identical_frames : int
        Frames identical to an earlier one (their words are the earlier
        frame's, repeated under their own label).
    overlays : tuple of OverlayPlane
        Every overlay plane found, empty ones included.
    regions_reused : int
        Regions of later frames whose pixels are those of a region already
        read (static text on a cine): read once, their words repeated
        under each frame's label.
    image_area_masked : int
        Later frames of a cine whose moving pixels inside the image area
        (SequenceOfUltrasoundRegions) were masked, not read: the first
        frame's words there are repeated in them (see :func:`scan_dataset`).
    prior : str
        The header prior (:class:`~pipeline.pixels.regions.TextPrior`) the
        file was scanned under, by name; empty when none.
    vocabulary : frozenset of str or None
        Under a prior, the header's words (:func:`header_vocabulary`) that
        a confident word must be to count as evidence; None otherwise.
        Not written to the findings file.
    error : str or None
        Why the input could not be scanned; names it by its key only.
    """

    path: str
    key: str
    flagged: bool
    status: ScanStatus
    header_signals: tuple[str, ...] = ()
    words: tuple[FoundWord, ...] = ()
    phi_matches: tuple[PhiMatch, ...] = ()
    images_scanned: int = 0
    ocr_skipped_by_prefilter: int = 0
    identical_frames: int = 0
    overlays: tuple[OverlayPlane, ...] = field(default=())
    regions_reused: int = 0
    image_area_masked: int = 0
    prior: str = ""
    vocabulary: frozenset[str] | None = field(default=None, repr=False)
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        """The JSON record (``data_contracts/findings.schema.json``)."""
        return {
            "path": self.path,
            "key": self.key,
            "status": self.status.value,
            "flagged": self.flagged,
            "header_signals": list(self.header_signals),
            "words": [
                {
                    "text": w.text,
                    "box": list(w.box),
                    "confidence": round(w.confidence, 2),
                    "image": w.image,
                }
                for w in self.words
            ],
            "phi_matches": [
                {
                    "word": m.text,
                    "matched": m.kind.value,
                    "from_header": m.kind.from_header,
                    "box": list(m.box),
                    "distance": m.distance,
                    "image": m.image,
                }
                for m in self.phi_matches
            ],
            "overlays": [
                {
                    "image": o.image,
                    "group": f"{o.group:04X}",
                    "bit": o.bit,
                    "set_pixels": o.set_pixels,
                }
                for o in self.overlays
            ],
            "images_scanned": self.images_scanned,
            "ocr_skipped_by_prefilter": self.ocr_skipped_by_prefilter,
            "identical_frames": self.identical_frames,
            "regions_reused": self.regions_reused,
            "image_area_masked": self.image_area_masked,
            "prior": self.prior,
            "error": self.error,
        }


# A word this long (letters and digits) read with this confidence (0-100) is
# evidence of text on its own.  Chosen on bench/ocr.py's 240 images and the
# 1024 x 1024 shoulder: in the default scan (pre-filter on) tesseract 5.3.0
# reads 556 "words" in the shoulder's anatomy, 17 of them 3+ characters at
# >= 50 but none at >= 70; rapidocr reads 3, none at >= 30 (checked by
# tests/pixels/test_textured_anatomy.py).  On the labelled images the rule
# loses at most one legible image with tesseract alone (121/122) and none
# with rapidocr.
EVIDENCE_CHARACTERS = 3
EVIDENCE_CONFIDENCE = 70.0


def is_evidence(
    word: FoundWord,
    phi_boxes: set[tuple[str, tuple[int, int, int, int]]],
    vocabulary: frozenset[str] | None = None,
) -> bool:
    """Whether ``word`` is enough to flag a file whose header says nothing.

    Parameters
    ----------
    word : FoundWord
        A word read in the file.
    phi_boxes : set of (image, box)
        Where words were matched to PHI (header values or generic patterns).
    vocabulary : frozenset of str, optional
        Under a header prior (:attr:`ScanFinding.vocabulary`): the words a
        scanner prints, from the file's own header.  A confident word then
        counts only when it is one of them.

    Returns
    -------
    bool
        True for a word inside a PHI match, a word read in an overlay or an
        icon (graphics planes hold annotations, not anatomy), or a word of
        at least :data:`EVIDENCE_CHARACTERS` letters and digits read with
        confidence at least :data:`EVIDENCE_CONFIDENCE` (and, with a
        ``vocabulary``, in it).  Used only for flagging: every word is
        blanked by cleaning regardless.
    """
    if not word.image.startswith("frame"):
        return True
    if any(image == word.image and _within(word.box, box) for image, box in phi_boxes):
        return True
    letters = sum(c.isalnum() for c in word.text)
    if letters < EVIDENCE_CHARACTERS or word.confidence < EVIDENCE_CONFIDENCE:
        return False
    return vocabulary is None or _compact(word.text) in vocabulary


def _compact(text: str) -> str:
    return "".join(c for c in text.casefold() if c.isalnum())


# Header text a scanner prints on its images: value representations of words.
_WORD_VRS = frozenset({"AE", "CS", "DS", "IS", "LO", "LT", "PN", "SH", "ST", "UT"})


def header_vocabulary(ds: Dataset) -> frozenset[str]:
    """The words of ``ds``'s text elements (3+ letters and digits, case-folded).

    What a scanner prints on an acquisition is its header: the patient's
    name and ID, the protocol and sequence, the series description, the
    institution and station, the orientation.  Under a header prior a word
    read with confidence counts as evidence of text only when it is one of
    these (PHI matches and generic patterns always count): tesseract reads
    "EXASX" at 72 in the shoulder's bone, which no header holds.
    """
    words: set[str] = set()
    for element in ds.iterall():
        if element.VR not in _WORD_VRS or element.value is None:
            continue
        values = element.value if isinstance(element.value, list | tuple) else [element.value]
        for value in values:
            for token in re.split(r"[^0-9A-Za-z\u00C0-\uFFFF]+", str(value)):
                compact = _compact(token)
                if len(compact) >= EVIDENCE_CHARACTERS:
                    words.add(compact)
    return frozenset(words)


def _within(inner: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> bool:
    x, y, w, h = inner
    ox, oy, ow, oh = outer
    return ox <= x and oy <= y and x + w <= ox + ow and y + h <= oy + oh


# ---------------------------------------------------------------------------
# Header signals
# ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _default_policy() -> SopPolicy:
    return load_sop_policy(rules_root() / "dicom" / "sop_classes.yaml")


def header_signals(ds: Dataset, policy: SopPolicy | None = None) -> tuple[str, ...]:
    """Why the header says the pixels may carry burned-in text.

    The same signals as ``deid``'s hold-back (``rules/dicom/sop_classes.yaml``),
    plus SequenceOfUltrasoundRegions: ultrasound screens carry the patient's
    name above the regions.
    """
    signals = burned_in_signals(ds, policy or _default_policy())
    if ds.get("SequenceOfUltrasoundRegions"):
        signals.append("SequenceOfUltrasoundRegions present")
    return tuple(signals)


# ---------------------------------------------------------------------------
# One dataset, one file
# ---------------------------------------------------------------------------


@dataclass
class _Collector:
    """Words and matches of one file as the batches come back from the engine."""

    terms: tuple[HeaderTerm, ...]
    words: dict[str, list[FoundWord]] = field(default_factory=dict)
    matches: dict[str, list[PhiMatch]] = field(default_factory=dict)
    scanned: set[str] = field(default_factory=set)

    pieces: dict[bytes, tuple[list[FoundWord], list[PhiMatch]]] = field(default_factory=dict)

    def add(self, label: str, words: list[Word], offset: tuple[int, int], key: bytes = b"") -> None:
        """Record the words read in one piece of an image, ``offset`` (row, column) from its corner.

        ``key`` names the piece's source pixels, so a later frame with the
        same pixels there gets the same words (:meth:`reuse`).
        """
        self.scanned.add(label)
        row, col = offset
        if offset != (0, 0):
            words = [replace(w, left=max(0, w.left + col), top=max(0, w.top + row)) for w in words]
        found = [FoundWord(w.text, w.box, w.confidence, label) for w in words]
        self.words.setdefault(label, []).extend(found)
        matches = [replace(m, image=label) for m in match_words(words, self.terms)]
        self.matches.setdefault(label, []).extend(matches)
        if key:
            self.pieces[key] = (found, matches)

    def reuse(self, key: bytes, label: str) -> None:
        """The words of the piece read under ``key``, repeated in image ``label``."""
        found, matches = self.pieces.get(key, ([], []))
        self.words.setdefault(label, []).extend(replace(w, image=label) for w in found)
        self.matches.setdefault(label, []).extend(replace(m, image=label) for m in matches)

    def repeat(
        self,
        source: str,
        label: str,
        moved: npt.NDArray[np.bool_],
        area: npt.NDArray[np.bool_] | None,
    ) -> None:
        """Words of ``source`` repeated in ``label``: in the image ``area``, or where nothing moved.

        Text drawn over a cine's moving image area is static (the screen's
        annotations) though the pixels between its letters move: it is
        repeated, and blanked alike, in every frame.  Elsewhere a word is
        repeated where its pixels are unchanged; what changed is read again.
        """

        def still(box: tuple[int, int, int, int]) -> bool:
            x, y, w, h = box
            if area is not None and area.shape == moved.shape and area[y : y + h, x : x + w].any():
                return True
            return not moved[y : y + h, x : x + w].any()

        words = [replace(w, image=label) for w in self.words.get(source, []) if still(w.box)]
        self.words.setdefault(label, []).extend(words)
        matches = [replace(m, image=label) for m in self.matches.get(source, []) if still(m.box)]
        self.matches.setdefault(label, []).extend(matches)

    def copy(self, source: str, label: str) -> None:
        """A frame identical to ``source`` has its words, under its own label."""
        self.words[label] = [replace(w, image=label) for w in self.words.get(source, [])]
        self.matches[label] = [replace(m, image=label) for m in self.matches.get(source, [])]


@dataclass(frozen=True, eq=False)
class _Piece:
    """Part of an image for the engine: the whole image, or a region where text may be."""

    label: str
    offset: tuple[int, int]  # (row, column) of the piece in the image's frame
    pixels: npt.NDArray[np.uint8]
    key: bytes = b""  # digest of the source pixels under the piece (see _keyed)


def _keyed(image: SourceImage, pieces: list[_Piece]) -> list[_Piece]:
    """Each piece named by what the image holds under it: kind, place, size and source pixels.

    Two frames with the same key at a piece show the same pixels there, so
    the same text: the piece is read once (a cine's static annotations).
    The prepared pixels cannot serve: their stretch depends on the whole
    frame, which moves.
    """
    row, col = image.origin
    out = []
    for piece in pieces:
        top, left = piece.offset[0] - row, piece.offset[1] - col
        height, width = piece.pixels.shape[:2]
        source = np.ascontiguousarray(image.pixels[top : top + height, left : left + width])
        digest = hashlib.blake2b(digest_size=16)
        digest.update(
            f"{image.kind.value} {image.group} {piece.offset} {source.shape} {source.dtype}".encode()
        )
        digest.update(source.data)
        out.append(replace(piece, key=digest.digest()))
    return out


def _pieces(
    image: SourceImage, prefilter: bool, *, lines_only: bool = False
) -> list[_Piece] | None:
    """What the engine reads of ``image``: None when the pre-filter finds no text.

    Where the pre-filter found rows of letter-like shapes the engine reads
    just those regions, cropped: tesseract's page layout analysis drops
    small isolated text on a large page (a Siemens overlay's 8 px "Tra") and
    reads anatomy texture as words, and both problems go away on crops.
    Overlays are always read (whole, if no region stands out); so is
    everything when the pre-filter is off or the image is too busy to judge.
    With ``lines_only`` (a header prior, :mod:`.regions`) only text lines
    count, in both maps (:func:`~pipeline.pixels.prefilter.needs_ocr`).

    The pre-filter looks at both polarities: bright text (:func:`text_map`)
    and dark text over bright anatomy (:func:`dark_text_map`); regions found
    in the dark map are read from it, so the engine always sees dark text on
    white.  Without the pre-filter only the bright map is read, whole.
    """
    # Windowing and the full-range view are shared by both maps: made once.
    views = None if image.kind is ImageKind.OVERLAY else text_views(image)
    mapped = text_map(image, views=views)
    prepared = (255 - mapped).astype(np.uint8)
    row, col = image.origin
    whole = [_Piece(image.label, (row, col), prepared)]
    if not prefilter:
        return whole
    strict = lines_only and image.kind is not ImageKind.OVERLAY
    decision = needs_ocr(mapped, lines_only=strict)
    if decision.ocr and decision.regions is None:
        return whole
    pieces: list[_Piece] = []
    if decision.ocr and decision.regions is not None:
        pieces += _crops(image.label, (row, col), prepared, decision.regions)
    if image.kind is not ImageKind.OVERLAY:
        dark = dark_text_map(image, views=views)
        dark_decision = needs_ocr(dark, lines_only=strict)
        # A dark map too busy to localise is anatomy texture: reading all of
        # it would cost a second whole-image read for no text seen.
        if dark_decision.ocr and dark_decision.regions is not None:
            # Also inside a bright region: there the bright map showed the
            # gaps between the dark letters, which tesseract cannot read.
            dark_prepared = (255 - dark).astype(np.uint8)
            pieces += _crops(image.label, (row, col), dark_prepared, dark_decision.regions)
    if pieces:
        return pieces
    return whole if image.kind is ImageKind.OVERLAY else None


def _crops(
    label: str, origin: tuple[int, int], prepared: npt.NDArray[np.uint8], regions: Sequence[Box]
) -> list[_Piece]:
    row, col = origin
    return [
        _Piece(label, (row + y, col + x), prepared[y : y + h, x : x + w])
        for x, y, w, h in _merged(regions)
    ]


def _merged(regions: Sequence[Box]) -> list[Box]:
    """Overlapping regions joined, so no text is read (and reported) twice."""
    boxes = [(x, y, x + w, y + h) for x, y, w, h in regions]
    merged = True
    while merged:
        merged = False
        out: list[tuple[int, int, int, int]] = []
        for box in boxes:
            for i, other in enumerate(out):
                if (
                    box[0] < other[2]
                    and other[0] < box[2]
                    and box[1] < other[3]
                    and other[1] < box[3]
                ):
                    out[i] = (min(box[0], other[0]), min(box[1], other[1]),
                              max(box[2], other[2]), max(box[3], other[3]))  # fmt: skip
                    merged = True
                    break
            else:
                out.append(box)
        boxes = out
    return [
        (x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in sorted(boxes, key=lambda b: (b[1], b[0]))
    ]


def scan_dataset(
    ds: Dataset,
    key_label: str,
    engine: OcrEngine,
    *,
    path: str = "",
    key: str = "",
    policy: SopPolicy | None = None,
    prefilter: bool = True,
    progress: Callable[[], None] | None = None,
    prior: TextPrior | None = None,
) -> ScanFinding:
    """Scan every image of ``ds`` for burned-in text.

    Parameters
    ----------
    ds : pydicom.Dataset
        The file as read by :func:`pipeline.dicom.deidentify.read_dicom`.
    key_label : str
        How errors name the input (``input <key>``): never a path or a value.
    engine : OcrEngine
        Reads the images that pass the pre-filter.
    path, key : str, optional
        Recorded in the finding (see :class:`ScanFinding`).
    policy : SopPolicy, optional
        Burned-in header signals; by default the shipped ``sop_classes.yaml``.
    prefilter : bool, optional
        Skip OCR for images :func:`~pipeline.pixels.prefilter.needs_ocr`
        judges free of text, and show the engine only the regions where it
        found rows of letter-like shapes (see :func:`_pieces`).  Non-empty
        overlay planes are always read.
    progress : callable, optional
        Called after each image and each OCR batch (a long cine is not a stall).
    prior : TextPrior, optional
        The header prior that matches ``ds`` (:meth:`RegionRules.prior_for`):
        only text lines are read (see :mod:`pipeline.pixels.regions`).

    Multi-frame files: a region whose source pixels are those of a region
    already read is not read again (:func:`_keyed`), and a later frame that
    would be read whole is split against the first frame: the first frame's
    words whose pixels are unchanged (or that lie in the ultrasound image
    area) are repeated, the moving pixels of the image area are masked,
    and only the other parts that moved are looked at
    (:func:`_moving_pieces`).  So a
    cine's static text is read once and blanked in every frame, and the
    file is decoded one frame at a time (the first is kept to compare).

    Returns
    -------
    ScanFinding
        ``flagged`` when a header signal is present or a word is evidence of
        text (:func:`is_evidence`).

    Raises
    ------
    UnreadableInput
        The pixel data, an overlay or an icon cannot be decoded.
    """
    signals = header_signals(ds, policy)
    lines_only = prior is not None
    collector = _Collector(header_terms(ds))
    skipped = identical = reused = 0
    overlays: list[OverlayPlane] = []
    duplicates: list[tuple[str, str]] = []
    reuses: list[tuple[bytes, str]] = []
    pending: list[_Piece] = []
    pending_pixels = 0
    known: set[bytes] = set()
    reference: SourceImage | None = None
    area = _image_area(ds)
    noise = 0  # the difference from the first frame that still counts as unchanged
    if _syntax(ds) in _BLOCK_CODECS:
        noise = _codec_noise(ds)
        if area is not None:
            area = _codec_reach(area)
    masked = 0

    def flush() -> None:
        nonlocal pending_pixels
        if pending:
            results = engine.read([piece.pixels for piece in pending])
            for piece, words in zip(pending, results, strict=True):
                collector.add(piece.label, words, piece.offset, piece.key)
            if progress is not None:
                progress()
        pending.clear()
        pending_pixels = 0

    for image in iter_images(ds, key_label):
        if progress is not None:
            progress()
        if image.same_as is not None:
            identical += 1
            duplicates.append((_label_of(image, image.same_as), image.label))
            continue
        if image.kind is ImageKind.OVERLAY:
            count = int(np.count_nonzero(image.pixels))
            overlays.append(OverlayPlane(image.label, image.group or 0, image.bit, count))
            if count == 0:
                continue
        later = image.kind is ImageKind.FRAME and image.multiframe and reference is not None
        if later and not prefilter:
            # Without the pre-filter a frame is read whole, and a later frame
            # read whole is split against the first below: its whole-frame
            # piece would be made (its maps) only to be replaced.
            pieces, whole = [], True
        else:
            found = _pieces(image, prefilter, lines_only=lines_only)
            if found is None:
                skipped += 1
                continue
            pieces, whole = found, later and _is_whole(image, found)
        if whole and reference is not None:
            moved = _moved(reference, image, noise)
            collector.repeat(reference.label, image.label, moved, area)
            reused += 1
            if area is not None and area.shape == moved.shape:
                masked += int(bool((moved & area).any()))
                moved = moved & ~area
            pieces = _moving_pieces(image, moved)
            collector.scanned.add(image.label)
        pieces = _keyed(image, pieces) if image.multiframe else pieces
        for piece in pieces:
            if piece.key and piece.key in known:
                reuses.append((piece.key, piece.label))
                reused += 1
                continue
            if piece.key:
                known.add(piece.key)
            pending.append(piece)
            pending_pixels += piece.pixels.size
        if image.kind is ImageKind.FRAME and image.multiframe and reference is None:
            reference = image
            flush()  # the first frame's words are what later frames repeat
        elif pending_pixels >= _OCR_BATCH_PIXELS:
            flush()
    flush()
    for piece_key, label in reuses:
        collector.reuse(piece_key, label)
    for source, label in duplicates:
        collector.copy(source, label)
    words = tuple(w for found in collector.words.values() for w in found)
    matches = tuple(m for found in collector.matches.values() for m in found)
    phi_boxes = {(m.image, m.box) for m in matches}
    vocabulary = header_vocabulary(ds) if prior is not None else None
    flagged = bool(signals) or any(is_evidence(w, phi_boxes, vocabulary) for w in words)
    return ScanFinding(
        path=path,
        key=key,
        flagged=flagged,
        status=ScanStatus.FLAGGED if flagged else ScanStatus.CLEAR,
        header_signals=signals,
        words=words,
        phi_matches=matches,
        images_scanned=len(collector.scanned),
        ocr_skipped_by_prefilter=skipped,
        identical_frames=identical,
        overlays=tuple(overlays),
        regions_reused=reused,
        image_area_masked=masked,
        prior=prior.name if prior is not None else "",
        vocabulary=vocabulary,
    )


# Lossy block codecs: a frame's change inside the image area changes the
# decoded pixels of every block it touches, and the decoder's smoothing of
# subsampled colour reaches the blocks beside them.  A JPEG MCU is 16 x 16
# pixels at most (4:2:0 subsampling).
_BLOCK_CODECS = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit})
_MCU = 16


#: Levels (of 8-bit samples) by which a JPEG decoder's pixels of a static
#: block may still differ between frames: the colour upsampling's rounding
#: next to blocks that changed (1-2 levels seen, in the cine described at
#: _codec_reach).  Text is far above it; a changing timer or caliper label
#: still moves.
_CODEC_NOISE = 4


def _codec_noise(ds: Dataset) -> int:
    bits = int(ds.get("BitsStored", 8) or 8)
    return _CODEC_NOISE << max(0, bits - 8)


def _syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""


def _codec_reach(area: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """``area`` grown to the JPEG blocks it touches and one ring of blocks around them.

    In a JPEG cine the static text outside the ultrasound image is decoded
    to the same pixels frame after frame, except in the blocks the moving
    image shares with it and, through colour upsampling, their neighbours:
    an 87-frame cine built from the real GE frame (4:2:0, quality 90)
    changed 70,595 pixels outside the area snapped to 16-pixel blocks, 145
    with one more ring, by 1 or 2 levels (:data:`_CODEC_NOISE`).  Read as
    moving, those bands gave 161 OCR reads and 4,325 "words" of codec
    noise, and the cine was held for too much text.
    What lies in this ring is still read in the first frame (whose words
    are repeated in every frame), as inside the image area itself.
    """
    rows, cols = area.shape
    blocks = _block_grid(area, _MCU)
    grown = blocks.copy()
    grown[1:] |= blocks[:-1]
    grown[:-1] |= blocks[1:]
    grown[:, 1:] |= blocks[:, :-1]
    grown[:, :-1] |= blocks[:, 1:]
    reach: npt.NDArray[np.bool_] = np.repeat(np.repeat(grown, _MCU, axis=0), _MCU, axis=1)
    return reach[:rows, :cols]


def _block_grid(mask: npt.NDArray[np.bool_], block: int) -> npt.NDArray[np.bool_]:
    """Per ``block`` x ``block`` tile of ``mask`` (the last ones padded): whether any is set."""
    rows, cols = mask.shape
    grid_rows, grid_cols = -(-rows // block), -(-cols // block)
    padded = np.zeros((grid_rows * block, grid_cols * block), dtype=bool)
    padded[:rows, :cols] = mask
    tiles: npt.NDArray[np.bool_] = np.asarray(
        padded.reshape(grid_rows, block, grid_cols, block).any(axis=(1, 3))
    )
    return tiles


def _image_area(ds: Dataset) -> npt.NDArray[np.bool_] | None:
    """Where SequenceOfUltrasoundRegions says the image is (it moves in a cine), or None."""
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    regions = ds.get("SequenceOfUltrasoundRegions") or []
    if not regions or rows <= 0 or cols <= 0:
        return None
    area = np.zeros((rows, cols), dtype=bool)
    for region in regions:
        try:
            x0, y0 = int(region.RegionLocationMinX0), int(region.RegionLocationMinY0)
            x1, y1 = int(region.RegionLocationMaxX1), int(region.RegionLocationMaxY1)
        except (AttributeError, TypeError, ValueError):
            continue
        area[max(0, y0) : y1 + 1, max(0, x0) : x1 + 1] = True
    return area


def _is_whole(image: SourceImage, pieces: list[_Piece]) -> bool:
    return len(pieces) == 1 and pieces[0].pixels.shape == image.pixels.shape[:2]


# Frames are compared with the first in blocks of this many pixels; a moved
# block and its neighbours make the area looked at again.
_MOVE_BLOCK = 16


def _moved(reference: SourceImage, image: SourceImage, noise: int = 0) -> npt.NDArray[np.bool_]:
    """Per pixel: whether ``image`` differs from ``reference`` there by more than ``noise``
    (in any channel)."""
    if reference.pixels.shape != image.pixels.shape:
        return np.ones(image.pixels.shape[:2], dtype=bool)
    if noise:
        wide = np.int32 if reference.pixels.dtype.itemsize > 1 else np.int16
        differs = np.abs(reference.pixels.astype(wide) - image.pixels.astype(wide)) > noise
    else:
        differs = reference.pixels != image.pixels
    out: npt.NDArray[np.bool_] = differs.any(axis=2) if differs.ndim == 3 else differs
    return out


def _moving_pieces(image: SourceImage, moved: npt.NDArray[np.bool_]) -> list[_Piece]:
    """What of a later frame is read: text lines in the boxes around the pixels that moved.

    The image area of a cine moves every frame, and reading it whole each
    time is what made an 87-frame cine take minutes; burned-in text is
    static and was read in the first frame.  Text that does move (a timer,
    a caliper label) is a line on its own background, which
    :func:`~pipeline.pixels.prefilter.needs_ocr` with ``lines_only`` finds;
    a moved box too small to judge (under 4 blocks) is read whole.
    """
    rows, cols = moved.shape
    block = _MOVE_BLOCK
    blocks = _block_grid(moved, block)
    grid_rows, grid_cols = blocks.shape
    grown = blocks.copy()
    grown[1:] |= blocks[:-1]
    grown[:-1] |= blocks[1:]
    grown[:, 1:] |= grown[:, :-1].copy()
    grown[:, :-1] |= grown[:, 1:].copy()
    if not grown.any():
        return []
    found = components(grown)
    boxes = found if found is not None else [(0, 0, grid_cols, grid_rows)]
    views = text_views(image)
    bright, dark = text_map(image, views=views), dark_text_map(image, views=views)
    pieces: list[_Piece] = []
    row0, col0 = image.origin
    for bx, by, bw, bh in boxes:
        x, y = bx * block, by * block
        w, h = min(cols, (bx + bw) * block) - x, min(rows, (by + bh) * block) - y
        if bw * bh < 4:
            crop = (255 - bright[y : y + h, x : x + w]).astype(np.uint8)
            pieces.append(_Piece(image.label, (row0 + y, col0 + x), crop))
            continue
        for mapped in (bright, dark):
            part = mapped[y : y + h, x : x + w]
            decision = needs_ocr(part, lines_only=True)
            if not decision.ocr or decision.regions is None:
                continue  # no line, or nothing judgeable: texture of the image area
            prepared = (255 - part).astype(np.uint8)
            pieces += _crops(image.label, (row0 + y, col0 + x), prepared, decision.regions)
    return pieces


def _label_of(image: SourceImage, index: int) -> str:
    return replace(image, same_as=None, index=index).label


def scan_file(
    path: Path,
    engine: OcrEngine,
    *,
    source: Path | None = None,
    policy: SopPolicy | None = None,
    prefilter: bool = True,
) -> ScanFinding:
    """Read and scan one file; every failure becomes a finding with ``error`` set.

    Parameters
    ----------
    path : Path
        The input.
    engine : OcrEngine
        See :func:`scan_dataset`.
    source : Path, optional
        SOURCE of the run: the finding's path is relative to it.
    policy, prefilter
        See :func:`scan_dataset`.
    """
    relative = relative_path(path, source)
    if not path.is_file():
        what = "a folder that cannot be listed" if path.is_dir() else "not a regular file"
        return failed_finding(relative, "", f"{what}: nothing to scan")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return failed_finding(
            relative, "", f"unreadable ({type(exc).__name__}); check its permissions"
        )
    key = sha256_of(data)[:12]
    try:
        return scan_data(data, key, relative, engine, policy=policy, prefilter=prefilter)
    except InputError as exc:
        return failed_finding(relative, key, exc.detail)
    except Exception as exc:
        # A bug, or a file shaped in a way nobody foresaw: record it and go on.
        return failed_finding(
            relative, key, f"input {key}: the scan failed ({type(exc).__name__}); report this file"
        )


def scan_data(
    data: bytes,
    key: str,
    relative: str,
    engine: OcrEngine,
    *,
    policy: SopPolicy | None = None,
    prefilter: bool = True,
    max_inflated: int = DEFAULT_MAX_INFLATED,
    progress: Callable[[], None] | None = None,
    rules: RegionRules | None = None,
) -> ScanFinding:
    """Parse and scan one file's bytes, under the header prior of ``rules`` that matches it.

    Raises
    ------
    InputError
        The file cannot be read or decoded; the detail names it by ``key``.
    """
    label = f"input {key}"
    try:
        ds = read_dicom(data, label, max_inflated=max_inflated)
        prior = rules.prior_for(ds) if rules is not None else None
        return scan_dataset(
            ds, label, engine, path=relative, key=key, policy=policy, prefilter=prefilter,
            progress=progress, prior=prior,
        )  # fmt: skip
    except InputError as exc:
        if not exc.detail.startswith(label):
            exc.detail = f"{label}: {exc.detail}"
        raise


def failed_finding(path: str, key: str, error: str) -> ScanFinding:
    """The finding of an input that could not be scanned (status ``error``)."""
    return ScanFinding(path=path, key=key, flagged=False, status=ScanStatus.ERROR, error=error)


def relative_path(path: Path, source: Path | None) -> str:
    """How a finding names its input: relative to SOURCE (PHI: paths hold names)."""
    if source is None:
        return path.name
    base = source if source.is_dir() else source.parent
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        try:
            return path.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            return path.name


def write_findings(findings: Sequence[ScanFinding], path: Path) -> None:
    """Write the findings as a JSON list, atomically, readable by the owner only.

    The records hold PHI (words read from the pixels, input paths): keep the
    file in the private location.
    """
    records = [finding.as_dict() for finding in findings]
    # ASCII escapes: a path that is not UTF-8 is kept as its surrogate escapes
    # (\udcXX), which JSON readers give back and os.fsencode turns into its bytes.
    text = json.dumps(records, ensure_ascii=True, indent=1) + "\n"
    atomic_write_text(path, text, mode=0o600)
