"""A cheap test of whether an image can hold text at all, so plain slices skip OCR.

A tesseract call costs 0.1-1 s; an MR series has hundreds of slices with no
text.  This test reads the :func:`~pipeline.pixels.prepare.text_map` (bright
strokes on dark, anatomy already removed by the top-hat) and looks for what
every line of text has and noise and anatomy rarely have together:

* strokes: connected shapes 5-80 px high, neither specks nor blobs;
* a row of them: three or more such shapes of similar height side by side
  on one line, or one shape wide and short like a word whose letters touch.

It is built to err towards OCR: thresholds are low (faint text counts) and
three letter-like shapes in a row pass.  An image where anything is
unclear (very many candidate shapes, e.g. a dense texture) also passes.
Cost: a few milliseconds per 512 × 512 image.

The shapes that pass also say *where* text may be (:attr:`Decision.regions`):
the scan shows the engine only those regions, cropped, so the texture of
anatomy elsewhere in the image is not read as hundreds of garbage "words".

Under a header prior that the image is a scanner's own acquisition
(``rules/pixels/priors.yaml``, :mod:`.regions`), only *text lines* count
(``lines_only``): a row whose letters share a baseline or a top line (at
least :data:`LINE_ALIGNED` of them within a tenth of their height), follow
each other without nesting, and stand on a quiet background (at most
:data:`LINE_QUIET` of the bands above and below them, and of the gaps
between them, is bright); a lone word-like shape is no line.  Measured on
real MR (pydicom-data's shoulder, the Siemens MPR and overlay example,
enhanced MR, the 35-slice Prisma head series): of 344 rows of letter-like
shapes found in anatomy and noise, 12 pass; on bench/ocr.py's 240
generated images read under the priors, legible text is still found in
every image (122/122) and text >= 10 px in 134/137, as without them.
A busy image is then not read whole either:
its thresholds that are too busy to judge are left out, and only when no
threshold can be judged is the whole image read.

Known limits: text of one or two separate characters is not a row (an
image holding only that is skipped, and beside other text it is not
read).  Text darker than the anatomy under it is gone from the text map,
and is looked for in :func:`~pipeline.pixels.prepare.dark_text_map` with
this same test (see :func:`pipeline.pixels.scan.scan_dataset`).  Measured
recall: ``bench/ocr.py``.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "LINE_ALIGNED",
    "LINE_QUIET",
    "Box",
    "Decision",
    "Verdict",
    "components",
    "letter_height",
    "needs_ocr",
]

Grey = npt.NDArray[np.uint8]

# Binarisation levels of the text map (0-255, text stretched towards 255).
# The low one keeps faint text; specks it lets through fail the shape tests.
THRESHOLDS = (128, 48)
MIN_HEIGHT = 5  # px: a 5×7 bitmap font's lower-case letters
MAX_HEIGHT = 80  # px: taller shapes are anatomy or graphics, not text lines
# Letter-like shapes side by side that make a row of text.
MIN_ROW = 3
# More candidate shapes than this: a texture we cannot judge cheaply; OCR it.
MAX_SHAPES = 20000
# A text line (lines_only): this share of its letters on one baseline or top
# line, and at most this share of its surround bright.  See the module.
LINE_ALIGNED = 0.75
LINE_QUIET = 0.05


class Verdict(enum.Enum):
    OCR = "ocr"
    SKIP = "skip"


Box = tuple[int, int, int, int]  # x, y, w, h


@dataclass(frozen=True)
class Decision:
    """The pre-filter's answer and its evidence (counts and boxes, no pixels).

    Attributes
    ----------
    verdict : Verdict
        Whether the image is worth reading.
    reason : str
        Why, for logs and tests.
    shapes : int
        Letter-like shapes found.
    rows : int
        Of them, ones with a neighbour on the same line.
    regions : tuple of box or None
        Where text may be: every row of letter-like shapes and every
        word-like shape, grown to take in the rest of its line and a margin.
        None means the whole image (too busy to localise, or skipped).
    letter_height : float or None
        Median height of the letter-like shapes in rows.
    """

    verdict: Verdict
    reason: str
    shapes: int = 0
    rows: int = 0
    regions: tuple[Box, ...] | None = None
    letter_height: float | None = None

    @property
    def ocr(self) -> bool:
        return self.verdict is Verdict.OCR


@dataclass(frozen=True)
class _Shape:
    top: int
    bottom: int  # exclusive
    left: int
    right: int  # exclusive
    area: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left


def needs_ocr(text_map: Grey, *, lines_only: bool = False) -> Decision:
    """Decide whether ``text_map`` (bright text on dark) is worth an OCR call, and where.

    Parameters
    ----------
    text_map : numpy.ndarray of uint8
        From :func:`pipeline.pixels.prepare.text_map`.
    lines_only : bool, optional
        Count only rows that are text lines (:func:`_is_text_line`), and
        judge a busy image by its thresholds that are not too busy (see
        the module); set by a scanner-acquisition prior.

    Returns
    -------
    Decision
        ``OCR`` when a row of letter-like shapes (or a word-like shape) is
        found at any threshold, with the regions that hold them, or when
        the image is too busy to judge (regions None: all of it); ``SKIP``
        otherwise.
    """
    if text_map.size == 0 or int(text_map.max(initial=0)) < min(THRESHOLDS):
        return Decision(Verdict.SKIP, "no bright thin structure")
    regions: list[Box] = []
    heights: list[int] = []
    reasons: list[str] = []
    total_letters = total_rows = 0
    busy: list[str] = []
    thresholds = _thresholds(text_map)
    for threshold in thresholds:
        mask = text_map >= threshold
        shapes = None if int(mask.sum()) > 0.25 * mask.size else _shapes(mask)
        if shapes is None:
            why = (
                f"over a quarter of the image bright at {threshold}"
                if int(mask.sum()) > 0.25 * mask.size
                else f"too many shapes to judge at {threshold}"
            )
            if not lines_only:
                return Decision(Verdict.OCR, why)
            busy.append(why)
            continue
        letters = [s for s in shapes if _letter_like(s)]
        if lines_only:
            chains = [c for c in _rows(letters) if _is_text_line(c, mask)]
            paired = [s for chain in chains for s in chain]
            # A word of touching letters alone is not a line: in textured
            # anatomy such shapes are vessels and edges (pydicom-data's
            # shoulder has dozens); a scanner's word has separate letters.
            words = []
        else:
            paired = _paired(letters)
            words = [s for s in letters if _word_like(s, mask)]
        seeds = list(dict.fromkeys([*paired, *words]))
        total_letters = max(total_letters, len(letters))
        total_rows = max(total_rows, len(paired))
        if seeds:
            reasons.append(
                f"{len(paired)} letter-like shapes in rows, {len(words)} word-like, at {threshold}"
            )
            # A text line ends where its letters end (single or touching);
            # grown over any shape, a row in textured anatomy would run
            # across the whole image.
            regions += _grow(seeds, shapes, mask.shape)
            heights += [s.height for s in seeds]
    if len(busy) == len(thresholds):
        return Decision(Verdict.OCR, "; ".join(busy))
    if not regions:
        what = "no text line" if lines_only else "no row of letter-like shapes"
        if busy:
            what += " (" + "; ".join(busy) + ")"
        return Decision(Verdict.SKIP, what, total_letters, total_rows)
    return Decision(
        Verdict.OCR,
        "; ".join(reasons),
        total_letters,
        total_rows,
        tuple(dict.fromkeys(regions)),
        float(np.median(heights)),
    )


def _thresholds(text_map: Grey) -> tuple[int, ...]:
    """:data:`THRESHOLDS`, the low one raised above the texture of busy anatomy.

    Where more than 5 % of the map is above the low threshold, that is
    texture (trabecular bone, vessels, speckle), not faint text; the low
    threshold then moves to the 95th percentile, so the shapes it finds are
    the strongest ones and text fainter than the texture is left to the
    high threshold.
    """
    high, low = THRESHOLDS
    texture = float(np.percentile(text_map, 95))
    return (high, max(low, min(high, int(texture) + 1)))


def letter_height(text_map: Grey) -> float | None:
    """The median height of the letter-like shapes that stand in rows, or None.

    An OCR engine uses it to choose a scale: tesseract reads letters of
    20-40 px best and misses 7 px bitmap fonts unless they are enlarged.
    """
    if text_map.size == 0:
        return None
    shapes = _shapes(text_map >= THRESHOLDS[0])
    if not shapes:
        return None
    paired = _paired([s for s in shapes if _letter_like(s)])
    if not paired:
        return None
    return float(np.median([s.height for s in paired]))


def _grow(seeds: list[_Shape], shapes: list[_Shape], shape: tuple[int, ...]) -> list[Box]:
    """A region per seed, extended along its line over any shape of the line, plus a margin.

    A seed is two letters or one word; the rest of the line may be letters
    that failed the shape tests (a full "I", touching digits).  Any shape
    whose middle lies in the seed's band and that starts within two heights
    of the region extends it, so a line is taken whole.  The margin (one
    height above and below, two left and right) keeps the engine from
    cutting descenders, accents and edge letters.
    """
    height, width = shape[0], shape[1]
    candidates = [s for s in shapes if s.area >= 3]
    by_left = sorted(candidates, key=lambda s: s.left)
    by_right = sorted(candidates, key=lambda s: s.right, reverse=True)
    boxes: list[Box] = []
    for seed in sorted(seeds, key=lambda s: s.left):
        if any(_inside(seed, box) for box in boxes):
            continue  # its line is already taken
        h = seed.height
        top, bottom, left, right = seed.top, seed.bottom, seed.left, seed.right
        for other in by_left:  # rightwards: later shapes start further right
            if other.left - right > 2 * h:
                break
            if other.left >= left and _on_line(other, seed):
                right = max(right, other.right)
        for other in by_right:  # leftwards
            if left - other.right > 2 * h:
                break
            if other.right <= right and _on_line(other, seed):
                left = min(left, other.left)
        x0, y0 = max(0, left - 2 * h), max(0, top - h)
        x1, y1 = min(width, right + 2 * h), min(height, bottom + h)
        boxes.append((x0, y0, x1 - x0, y1 - y0))
    return boxes


def _on_line(other: _Shape, seed: _Shape) -> bool:
    """``other`` sits on ``seed``'s line (its middle within the band) and is not much taller."""
    middle = (other.top + other.bottom) / 2
    half = seed.height / 2
    return seed.top - half <= middle <= seed.bottom + half and other.height <= 3 * seed.height


def _inside(shape: _Shape, box: Box) -> bool:
    x, y, w, h = box
    return x <= shape.left and shape.right <= x + w and y <= shape.top and shape.bottom <= y + h


def _letter_like(shape: _Shape) -> bool:
    """A glyph or a run of touching glyphs: not a speck, not a blob, not a long line."""
    h, w = shape.height, shape.width
    if not MIN_HEIGHT <= h <= MAX_HEIGHT or w < 1 or shape.area < 5:
        return False
    fill = shape.area / (h * w)
    if 3 * w <= h:
        return True  # a stroke: "I", "1", "l" (full, but thin)
    return 0.08 <= fill <= 0.95 and w <= 25 * h


def _word_like(shape: _Shape, mask: npt.NDArray[np.bool_]) -> bool:
    """Several touching letters: wide, short, partly filled, with many strokes per row.

    An elongated piece of anatomy (a vessel, a cortex edge) is crossed once
    or twice by each row; a word is crossed by about one stroke per
    half-height of its width.
    """
    h, w = shape.height, shape.width
    fill = shape.area / (h * w)
    if not (h >= 6 and w >= 3 * h and 0.2 <= fill <= 0.75):
        return False
    box = mask[shape.top : shape.bottom, shape.left : shape.right]
    rising = np.count_nonzero(box[:, 1:] & ~box[:, :-1], axis=1) + box[:, 0]
    return float(np.median(rising)) >= max(3.0, w / (2.0 * h))


def _is_text_line(chain: list[_Shape], mask: npt.NDArray[np.bool_]) -> bool:
    """A row that is a line of text: letters on one baseline (or top line), quiet around.

    Letters of a line share their bottoms (descenders aside) or, in capitals
    and digits, their tops too; rows of anatomy and noise that happen to
    be side by side rarely do, and letters follow each other where pieces
    of anatomy nest and overlap.  And a line of text is drawn on a background:
    half a letter height above and below it, and between its letters, the
    mask is nearly empty, where texture is not.
    """
    height = float(np.median([s.height for s in chain]))
    tolerance = max(1.0, 0.1 * height)
    bottoms = np.array([s.bottom for s in chain], dtype=np.float64)
    tops = np.array([s.top for s in chain], dtype=np.float64)
    aligned = max(
        float(np.mean(np.abs(bottoms - np.median(bottoms)) <= tolerance)),
        float(np.mean(np.abs(tops - np.median(tops)) <= tolerance)),
    )
    if aligned < LINE_ALIGNED:
        return False
    # Letters follow each other; pieces of anatomy nest and overlap.
    ordered = sorted(chain, key=lambda s: s.left)
    for a, b in itertools.pairwise(ordered):
        if min(a.right, b.right) - b.left > 0.3 * min(a.width, b.width):
            return False
    top, bottom = int(tops.min()), int(bottoms.max())
    left, right = min(s.left for s in chain), max(s.right for s in chain)
    margin = max(1, round(height / 2))
    above = mask[max(0, top - margin) : top, left:right]
    below = mask[bottom : bottom + margin, left:right]
    bands = above.size + below.size
    if bands and (int(above.sum()) + int(below.sum())) > LINE_QUIET * bands:
        return False
    box = mask[top:bottom, left:right]
    others = int(box.sum()) - sum(s.area for s in chain)
    return others <= LINE_QUIET * box.size


def _paired(letters: list[_Shape]) -> list[_Shape]:
    """The shapes in rows: chains of :data:`MIN_ROW` or more neighbours on one line.

    Neighbours have similar heights, share a centre line and stand at most
    one and a half heights apart.  Two neighbours are not enough: the two
    ends of a pair of ventricles are that too; three letters in a row are
    rarely anatomy.
    """
    return [shape for chain in _rows(letters) for shape in chain]


def _rows(letters: list[_Shape]) -> list[list[_Shape]]:
    """The chains of :func:`_paired`, each a list of shapes from left to right."""
    if len(letters) < MIN_ROW:
        return []
    letters = sorted(letters, key=lambda s: s.left)
    parent = list(range(len(letters)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(letters):
        centre_a = (a.top + a.bottom) / 2
        for j in range(i + 1, len(letters)):
            b = letters[j]
            if b.left - a.right > 1.5 * MAX_HEIGHT:
                break
            scale = max(a.height, b.height)
            if b.left - a.right > 1.5 * scale:
                continue
            if not 0.5 <= a.height / b.height <= 2.0:
                continue
            if abs((b.top + b.bottom) / 2 - centre_a) > 0.5 * scale:
                continue
            parent[find(i)] = find(j)
    chains: dict[int, list[_Shape]] = {}
    for i, shape in enumerate(letters):
        chains.setdefault(find(i), []).append(shape)
    return [chain for chain in chains.values() if len(chain) >= MIN_ROW]


def components(mask: npt.NDArray[np.bool_]) -> list[Box] | None:
    """Boxes (x, y, w, h) of the 8-connected parts of ``mask``; None when there are too many."""
    shapes = _shapes(mask)
    if shapes is None:
        return None
    return [(s.left, s.top, s.width, s.height) for s in shapes]


def _shapes(mask: npt.NDArray[np.bool_]) -> list[_Shape] | None:
    """8-connected components of ``mask`` from its row runs (union-find over runs).

    Working on runs rather than pixels keeps the Python loop short: a text
    line of 20 letters has a few hundred runs.  Returns None when there are
    more than :data:`MAX_SHAPES` runs' worth of components to follow.
    """
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    starts_r, starts_c = np.nonzero(edges == 1)
    _, ends_c = np.nonzero(edges == -1)
    if len(starts_r) > MAX_SHAPES * 8:
        return None
    runs = list(zip(starts_r.tolist(), starts_c.tolist(), ends_c.tolist(), strict=True))
    parent = list(range(len(runs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # Runs are in row order; compare each row's runs with the previous row's.
    previous: list[int] = []
    current: list[int] = []
    row = -1
    for index, (r, start, end) in enumerate(runs):
        if r != row:
            previous = current if r == row + 1 else []
            current = []
            row = r
            k = 0
        while k < len(previous) and runs[previous[k]][2] < start:
            k += 1  # ends (exclusive) before this run starts, even diagonally
        j = k
        while j < len(previous) and runs[previous[j]][1] <= end:
            a, b = find(index), find(previous[j])
            if a != b:
                parent[a] = b
            j += 1
        current.append(index)
    boxes: dict[int, list[int]] = {}
    for index, (r, start, end) in enumerate(runs):
        root = find(index)
        box = boxes.get(root)
        if box is None:
            boxes[root] = [r, r + 1, start, end, end - start]
        else:
            box[0] = min(box[0], r)
            box[1] = max(box[1], r + 1)
            box[2] = min(box[2], start)
            box[3] = max(box[3], end)
            box[4] += end - start
    if len(boxes) > MAX_SHAPES:
        return None
    return [_Shape(b[0], b[1], b[2], b[3], b[4]) for b in boxes.values()]
