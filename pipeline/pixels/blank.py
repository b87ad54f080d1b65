"""Blanking burned-in text: decide what to blank in a file, then blank it.

``deid --clean-pixels`` runs the pixel scan on every input and hands its
finding here.  :func:`plan_cleaning` turns the finding and the matching region
rules (:mod:`.regions`) into a :class:`PixelPlan`; :func:`blank_pixels`
applies it to the decoded frames; :mod:`.encode` stores the result.

What is blanked
---------------
- Every rectangle of every matching region rule, in every frame.
- Every box OCR read in a frame, grown by a small margin, whatever its
  confidence and whether or not it matched the header: a misread name is
  still a name.  The only exception is a box that lies wholly inside a rule's
  *keep* rectangle (a scale, orientation letters) and was not recognised as
  the file's PHI.
- Every box a reviewer decided to redact (:class:`ManualBox`), on its frame
  or on every frame, as it is (no margin: the reviewer drew it).  A file
  with such boxes is never held back for text not located or too much
  text: a person looked at it and said where to blank.
- Overlay planes are not blanked but removed: (60xx) groups go from the
  header, and planes kept in the unused high bits of the pixel data are
  masked to 0 (the frames are stored with those bits cleared).  Icon images
  are removed.
The fill is the image's background as displayed: 0 (the lowest stored
value) for MONOCHROME2, the highest stored value for MONOCHROME1, black for
RGB, and for PALETTE COLOR the index whose palette entry is darkest.  No
other pixel value changes.

When a file cannot be cleaned by rule (it is HELD BACK)
-------------------------------------------------------
1. Its header signals burned-in text (BurnedInAnnotation YES, a secondary
   capture class, modality OT/SC/US, DERIVED\\SECONDARY, ConversionType,
   ultrasound regions) but OCR read no word in any of its images and no
   region rule matches it: the text the header announces was not located,
   so nothing says where to blank.  Unless a header prior
   (``rules/pixels/priors.yaml``) matched: the prior says such an image
   carries text only as lines, the scan looked for lines and found none,
   and the signal is explained by the prior (named in the plan's rules).
2. The boxes OCR found outside rule rectangles cover more than
   ``max_text_fraction`` of a frame: either the image is a document or a
   screen (describe its layout with a region rule) or OCR is reading
   anatomy as letters; blanking that much would destroy the image, and
   releasing it unblanked could leak, so a person decides.
A file whose pixels cannot be decoded is not held back but quarantined
(:class:`~pipeline.errors.UnreadableInput`), as the scan reports it.

A file with no header signal, no word read, no matching rule and no overlay
bits set in its pixel data is *untouched*: written exactly as without
``--clean-pixels``.  Only a cleaned file is marked ``BurnedInAnnotation NO``
(all text found is blanked, or kept inside a keep rectangle and not PHI, and
every header signal is explained by a rule or by text found).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import iter_pixels

from pipeline.errors import UnreadableInput
from pipeline.pixels.ocr import OcrEngine
from pipeline.pixels.regions import Rect, RegionRule, RegionRules
from pipeline.pixels.scan import FoundWord, ScanFinding, is_evidence
from pipeline.read.image_pixel import number_of_frames
from pipeline.reasons import Reason

__all__ = [
    "CleanedFrames",
    "CleanedPixels",
    "ManualBox",
    "PixelAction",
    "PixelCleaning",
    "PixelPlan",
    "blank_pixels",
    "fill_value",
    "plan_cleaning",
    "plan_manual",
]

Pixels = npt.NDArray[np.generic]
_Box = tuple[int, int, int, int]

# OCR boxes hug the letters; anti-aliased edges and descenders reach a little further.
DEFAULT_MARGIN = 2
DEFAULT_MAX_TEXT_FRACTION = 0.25


class PixelAction(enum.Enum):
    UNTOUCHED = "untouched"  # nothing to clean: written as without --clean-pixels
    CLEANED = "cleaned"
    HELD = "held back"


@dataclass(frozen=True)
class PixelCleaning:
    """What ``deid --clean-pixels`` needs in every worker.

    Parameters
    ----------
    engine : OcrEngine
        Reads the images (any engine: tesseract, rapidocr, both).  Sent to
        each worker process once, with the other settings.
    rules : RegionRules
        Region rules, loaded and validated before the run.
    prefilter : bool
        Let the scan skip images its pre-filter judges free of text; files
        whose header signals burned-in text are always read whole.
    max_text_fraction : float
        See the module docstring, case 2.
    margin : int
        Pixels added around every OCR box.
    """

    engine: OcrEngine
    rules: RegionRules
    prefilter: bool = True
    max_text_fraction: float = DEFAULT_MAX_TEXT_FRACTION
    margin: int = DEFAULT_MARGIN


@dataclass(frozen=True)
class ManualBox:
    """A rectangle a reviewer decided to blank: on frame ``frame`` (0-based), or every frame.

    In pixels of the stored image; clipped to it when planned.  The ingest
    turns the catalog's redaction boxes into these (this layer never reads
    the catalog).
    """

    frame: int | None
    area: Rect

    def on(self, frame: int) -> bool:
        return self.frame is None or self.frame == frame


@dataclass(frozen=True)
class PixelPlan:
    """What cleaning does to one file.

    Attributes
    ----------
    action : PixelAction
        Untouched, cleaned, or held back (``reason`` says why and what to do,
        ``held`` which :class:`~pipeline.reasons.Reason`; both PHI-free).
    frame_areas : tuple of tuple of Rect
        Per frame, the rectangles to fill (clipped to the image).
    rewrite_pixels : bool
        The pixel data changes (a rectangle to fill, or overlay bits to clear).
    remove_overlays : bool
        Overlay groups (60xx) and icons are removed from the output header.
    rules : tuple of str
        Names of the region rules that matched.
    words_blanked, words_kept : int
        OCR words of frames that are blanked, or left inside keep rectangles.
    by_hand : int
        Boxes a reviewer decided to redact (:class:`ManualBox`).
    """

    action: PixelAction
    reason: str = ""
    held: Reason | None = None
    frame_areas: tuple[tuple[Rect, ...], ...] = ()
    rewrite_pixels: bool = False
    remove_overlays: bool = False
    rules: tuple[str, ...] = ()
    words_blanked: int = 0
    words_kept: int = 0
    by_hand: int = 0


@dataclass(frozen=True, eq=False)
class CleanedPixels:
    """Decoded, cleaned frames ready to be stored natively.

    Attributes
    ----------
    frames : numpy.ndarray
        ``(frames, rows, cols)`` or ``(frames, rows, cols, 3)`` stored values,
        unused high bits cleared (overlay planes gone), colour as RGB.
    photometric : str
        The photometric interpretation of ``frames``.
    changed : int
        Pixels whose value the fill changed (all frames).
    """

    frames: Pixels
    photometric: str
    changed: int = field(default=0)


def _frame_index(label: str) -> int | None:
    """``frame 3`` -> 3; overlays and icons -> None."""
    if not label.startswith("frame "):
        return None
    try:
        return int(label.split()[1])
    except (IndexError, ValueError):
        return None


def _grown(box: _Box, margin: int) -> Rect:
    x, y, w, h = box
    return Rect(x - margin, y - margin, w + 2 * margin, h + 2 * margin)


def _overlaps(a: _Box, b: _Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def plan_cleaning(
    ds: Dataset,
    finding: ScanFinding,
    rules: Sequence[RegionRule],
    *,
    max_text_fraction: float = DEFAULT_MAX_TEXT_FRACTION,
    margin: int = DEFAULT_MARGIN,
    manual: Sequence[ManualBox] = (),
) -> PixelPlan:
    """Decide what to blank in ``ds`` from its scan finding, its matching rules and a reviewer.

    Parameters
    ----------
    ds : pydicom.Dataset
        The original file (Rows, Columns, NumberOfFrames, ultrasound regions).
    finding : ScanFinding
        :func:`pipeline.pixels.scan.scan_dataset` of ``ds``.
    rules : sequence of RegionRule
        The rules that match ``ds`` (:meth:`RegionRules.matching`).
    max_text_fraction, margin
        See :class:`PixelCleaning`.
    manual : sequence of ManualBox
        What a reviewer decided to redact, blanked on top of the rest.

    Returns
    -------
    PixelPlan
        See the module docstring for when a file is held back.
    """
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = number_of_frames(ds) if "PixelData" in ds else 0
    rule_areas = [a for rule in rules for a in rule.blank_areas(ds)]
    keep = [k for rule in rules for k in rule.keep]
    phi_boxes = {(m.image, m.box) for m in finding.phi_matches}
    # Only a flagged image's words are text to blank, and then all of them,
    # whatever their confidence.  An image is flagged by a header signal (which
    # speaks for every frame) or by evidence of text in that image itself
    # (pipeline.pixels.scan.is_evidence).  Elsewhere the engine's words are
    # anatomy read as letters: blanking them would damage the image and
    # protect nothing.  (An overlay's text flags the overlay, which is removed,
    # not the frames under it.)
    evidence = {w.image for w in finding.words if is_evidence(w, phi_boxes, finding.vocabulary)}
    words = tuple(w for w in finding.words if finding.header_signals or w.image in evidence)
    per_frame: list[list[Rect]] = [[] for _ in range(frames)]
    blanked = kept = 0
    for word in words:
        index = _frame_index(word.image)
        if index is None or index >= frames:
            continue  # overlays and icons are removed, not blanked
        if _is_kept(word, keep, phi_boxes):
            kept += 1
            continue
        per_frame[index].append(_grown(word.box, margin))
        blanked += 1
    names = tuple(rule.name for rule in rules)
    if finding.prior:
        names += (f"prior: {finding.prior}",)
    by_hand = [[box.area for box in manual if box.on(index)] for index in range(frames)]
    if finding.header_signals and not words and not rules and not manual and not finding.prior:
        return PixelPlan(
            PixelAction.HELD,
            "header signals burned-in text ("
            + ", ".join(finding.header_signals)
            + ") but the pixel scan read none and no pixel region rule matches; review it, "
            "or describe where its text is with a rule in rules/pixels",
            held=Reason.TEXT_NOT_LOCATED,
        )
    for index, areas in enumerate(per_frame):
        fraction = _fraction(areas, [*rule_areas, *by_hand[index]], rows, cols)
        if fraction > max_text_fraction:
            return PixelPlan(
                PixelAction.HELD,
                f"text found over {fraction:.0%} of frame {index} (more than "
                f"{max_text_fraction:.0%}): blanking would destroy the image; review it, or "
                "describe its layout with a rule in rules/pixels",
                held=Reason.TOO_MUCH_TEXT,
                rules=names,
            )
    high_bits = any(o.bit is not None and o.set_pixels for o in finding.overlays)
    frame_areas = tuple(
        tuple(
            c
            for c in (a.clipped(rows, cols) for a in (*rule_areas, *areas, *by_hand[index]))
            if c is not None
        )
        for index, areas in enumerate(per_frame)
    )
    fill = any(frame_areas)
    if not (finding.header_signals or words or rules or high_bits or manual):
        return PixelPlan(PixelAction.UNTOUCHED)
    return PixelPlan(
        PixelAction.CLEANED,
        frame_areas=frame_areas,
        rewrite_pixels=fill or high_bits,
        remove_overlays=True,
        rules=names,
        words_blanked=blanked,
        words_kept=kept,
        by_hand=len(manual),
    )


def plan_manual(ds: Dataset, manual: Sequence[ManualBox]) -> PixelPlan:
    """The plan that blanks only what a reviewer decided (a run without pixel cleaning).

    Without ``--clean-pixels`` nothing scans the file, but a redaction is a
    decision that must be carried out all the same.  No box at all: untouched.
    """
    if not manual:
        return PixelPlan(PixelAction.UNTOUCHED)
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = number_of_frames(ds) if "PixelData" in ds else 0
    frame_areas = tuple(
        tuple(
            c
            for c in (box.area.clipped(rows, cols) for box in manual if box.on(index))
            if c is not None
        )
        for index in range(frames)
    )
    return PixelPlan(
        PixelAction.CLEANED,
        frame_areas=frame_areas,
        rewrite_pixels=any(frame_areas),
        remove_overlays=True,
        by_hand=len(manual),
    )


def _is_kept(word: FoundWord, keep: list[Rect], phi_boxes: set[tuple[str, _Box]]) -> bool:
    """Inside a keep rectangle, and not (overlapping) a word recognised as PHI."""
    if not any(k.holds(word.box) for k in keep):
        return False
    return not any(image == word.image and _overlaps(word.box, box) for image, box in phi_boxes)


def _fraction(areas: list[Rect], exempt: list[Rect], rows: int, cols: int) -> float:
    """Share of the frame that ``areas`` cover outside the ``exempt`` rule rectangles."""
    if not areas or rows <= 0 or cols <= 0:
        return 0.0
    mask = np.zeros((rows, cols), dtype=bool)
    for area in areas:
        clipped = area.clipped(rows, cols)
        if clipped is not None:
            mask[clipped.y : clipped.y + clipped.height, clipped.x : clipped.x + clipped.width] = (
                True
            )
    for area in exempt:
        clipped = area.clipped(rows, cols)
        if clipped is not None:
            mask[clipped.y : clipped.y + clipped.height, clipped.x : clipped.x + clipped.width] = (
                False
            )
    return float(mask.mean())


# ---------------------------------------------------------------------------
# Applying a plan
# ---------------------------------------------------------------------------


def fill_value(ds: Dataset, photometric: str, dtype: np.dtype[np.generic]) -> int:
    """The stored value that displays as black (the background) for ``photometric``.

    Parameters
    ----------
    ds : pydicom.Dataset
        For BitsStored, PixelRepresentation and the palette.
    photometric : str
        Of the decoded values (colour images are decoded to RGB).
    dtype : numpy.dtype
        Of the decoded values.

    Raises
    ------
    UnreadableInput
        A photometric interpretation with no known background.
    """
    bits = int(ds.get("BitsStored", 0) or 0) or dtype.itemsize * 8
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1 and dtype.kind == "i"
    if photometric in ("RGB", "MONOCHROME2"):
        return -(1 << (bits - 1)) if signed and photometric == "MONOCHROME2" else 0
    if photometric == "MONOCHROME1":
        return (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    if photometric == "PALETTE COLOR":
        return _darkest_index(ds)
    raise UnreadableInput(
        f"photometric interpretation {photometric[:16]!r} has no known background to blank "
        "with; export the file again as MONOCHROME2 or RGB"
    )


def _darkest_index(ds: Dataset) -> int:
    descriptor = ds.get("RedPaletteColorLookupTableDescriptor")
    try:
        entries, first = int(descriptor[0]) or 65536, int(descriptor[1])
    except (IndexError, TypeError, ValueError):
        raise UnreadableInput(
            "PALETTE COLOR image without a usable palette descriptor; export it again as RGB"
        ) from None
    dtype = np.uint8 if entries + first <= 256 and int(ds.BitsAllocated) == 8 else np.uint16
    indices = np.arange(first, first + entries, dtype=np.int64).astype(dtype)
    rgb = np.asarray(apply_color_lut(indices, ds), dtype=np.float64).reshape(-1, 3)
    return int(indices[int(np.argmin(rgb.sum(axis=1)))])


def blank_pixels(ds: Dataset, plan: PixelPlan, label: str) -> CleanedPixels:
    """Decode every frame of ``ds``, clear unused high bits, fill the plan's rectangles.

    Parameters
    ----------
    ds : pydicom.Dataset
        The original file (not the de-identified copy: same pixel data).
    plan : PixelPlan
        From :func:`plan_cleaning`.
    label : str
        The input's opaque name, for errors.

    Returns
    -------
    CleanedPixels
        Every decoded value outside the rectangles is what pydicom decodes
        (unused bits cleared: overlay planes stored there are gone).

    Raises
    ------
    UnreadableInput
        The pixel data cannot be decoded.
    """
    cleaned = CleanedFrames(ds, plan, label)
    frames: Pixels | None = None
    # One array for all frames, filled as they are decoded: a long cine is
    # held once, not twice.
    for index, frame in enumerate(cleaned):
        if frames is None:
            frames = np.empty((cleaned.count, *frame.shape), dtype=frame.dtype)
        frames[index] = frame
    assert frames is not None, "CleanedFrames yields at least one frame or raises"
    return CleanedPixels(frames, cleaned.photometric, cleaned.changed)


class CleanedFrames:
    """The frames of ``ds`` decoded one at a time, each blanked as ``plan`` says.

    What :func:`blank_pixels` holds as one array, frame by frame: a writer
    that stores each frame as it comes (:mod:`.encode`) never holds more
    than one decoded frame of a long cine.  Exactly :attr:`count` frames
    are yielded, or :class:`~pipeline.errors.UnreadableInput` is raised
    (a writer has announced their length).  :attr:`photometric` and
    :attr:`changed` are known once the first frame, and all frames, have
    been yielded.
    """

    def __init__(self, ds: Dataset, plan: PixelPlan, label: str) -> None:
        self.count = number_of_frames(ds)
        self.photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
        self.changed = 0  # pixels whose value the fill changed, in the frames yielded so far
        self.label = label  # how errors name the input
        self._ds, self._plan = ds, plan

    def __iter__(self) -> Iterator[Pixels]:
        ds, plan, label = self._ds, self._plan, self.label
        decoded = iter_pixels(ds)
        fill = 0
        index = 0
        while True:
            try:
                frame = next(decoded)
            except StopIteration:
                break
            except Exception as exc:
                raise UnreadableInput(
                    f"{label}: the pixel data cannot be decoded for cleaning "
                    f"({type(exc).__name__}); copy the file again from its source"
                ) from None
            if index >= self.count:
                raise UnreadableInput(
                    f"{label}: the pixel data holds more frames than NumberOfFrames says "
                    f"({self.count}); export it again"
                )
            if index == 0:
                if frame.ndim == 3:
                    self.photometric = "RGB"
                if any(plan.frame_areas):
                    fill = fill_value(ds, self.photometric, frame.dtype)
            areas = plan.frame_areas[index] if index < len(plan.frame_areas) else ()
            if areas and not (frame.flags.writeable and frame.flags.owndata):
                frame = frame.copy()  # a view of the file's bytes: never blanked in place
            for area in areas:
                window = frame[area.y : area.y + area.height, area.x : area.x + area.width]
                differs = window != fill
                self.changed += int(
                    np.count_nonzero(differs.any(axis=-1) if window.ndim == 3 else differs)
                )
                window[...] = fill
            yield frame
            index += 1
        if index == 0:
            raise UnreadableInput(f"{label}: no frame to clean in the pixel data; export it again")
        if index < self.count:
            raise UnreadableInput(
                f"{label}: the pixel data holds {index} of the {self.count} frames "
                "NumberOfFrames says; export it again"
            )
