"""The boxes the review page draws over the original: what OCR read, what the rules blank, and why.

The pixel scan (:func:`pipeline.pixels.scan.scan_dataset`) runs on the
original exactly as the ingest runs it (same engine, policy and pre-filter),
and every region rule that matches the file adds its rectangles.  Each box
says why it is there: the header value or generic pattern its words matched
(:class:`~pipeline.pixels.phi.PhiMatch`), the header signal that makes every
word of the file text to blank, the evidence rule, or the region rule.

OCR takes seconds a file, so the result is cached under
``private/review/scans/`` keyed by the input's sha256, the rule-set version
and the engine (name and version): a page reload reads the cache, a new rule
set or engine scans again.  The cache holds the words read (PHI): it lives
in the private location only, written atomically with mode 0600.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from pipeline.atomic import atomic_write_text
from pipeline.catalog import BoxSource, RedactionBox
from pipeline.dicom.profile import load_profile
from pipeline.errors import InputError
from pipeline.pixels.blank import DEFAULT_MARGIN
from pipeline.pixels.engines import make_engine
from pipeline.pixels.ocr import OcrEngine
from pipeline.pixels.regions import load_region_rules
from pipeline.pixels.scan import FoundWord, ScanFinding, header_signals, is_evidence, scan_dataset
from pipeline.read.dicom import quiet_pydicom, read_dicom
from pipeline.review.item import ItemView, ReviewError
from pipeline.workspace import Workspace
from pipeline.workspace.ruleset import workspace_ruleset_version

__all__ = ["CACHE_FOLDER", "ReviewBox", "item_boxes", "scan_cache_path"]

#: Under the workspace's private folder.
CACHE_FOLDER = Path("review") / "scans"
_CACHE_FORMAT = 1


@dataclass(frozen=True)
class ReviewBox:
    """One box over the original, and why it is there.

    Attributes
    ----------
    frame : int or None
        The frame it is on; None for every frame (a region rule) or for an
        image that is not a frame (see ``image``).
    image : str
        ``frame 0``, ``overlay 6000``, ``icon``, or ``every frame``.
    x, y, width, height : int
        In pixels of that image.
    source : BoxSource
        OCR (read by the engine) or REGION (a region rule's rectangle).
    engine : str
        The engine that read it, with its version (``""`` for a rule).
    text : str
        What was read (PHI: the page is behind a session; ``""`` for a rule).
    confidence : float or None
        The engine's, 0-100 (None for a rule).
    why : str
        Why it is there, in a sentence for the reviewer.
    matched : str
        The header element or pattern its words matched (a
        :class:`~pipeline.pixels.phi.PhiKind` value), or the region rule's
        name; ``""`` for a word that matched nothing.
    """

    frame: int | None
    image: str
    x: int
    y: int
    width: int
    height: int
    source: BoxSource
    engine: str
    text: str
    confidence: float | None
    why: str
    matched: str

    @property
    def on_frames(self) -> bool:
        """It lies on the frames (an overlay's or icon's box does not: those are removed)."""
        return self.image == "every frame" or self.image.startswith("frame ")

    def as_redaction(self, margin: int = DEFAULT_MARGIN) -> RedactionBox:
        """The box to keep with a REDACT decision when the reviewer accepts this one.

        An OCR box is grown by ``margin`` (as cleaning blanks it: glyph edges
        reach past the box); a rule's rectangle is taken as it is.

        Raises
        ------
        ReviewError
            The box is on an overlay or an icon, which are removed whole.
        """
        if not self.on_frames:
            raise ReviewError(
                f"a box on {self.image} cannot be redacted: overlays and icons are removed "
                "from every output; accept a box on a frame, or draw one"
            )
        grow = margin if self.source is BoxSource.OCR else 0
        x, y = max(0, self.x - grow), max(0, self.y - grow)
        return RedactionBox(
            self.frame,
            x,
            y,
            self.x + self.width + grow - x,
            self.y + self.height + grow - y,
            self.source,
        )


def item_boxes(workspace: Workspace, item: ItemView) -> list[ReviewBox]:
    """The boxes over ``item``'s original: from the cache, or scanned now and cached.

    Raises
    ------
    ReviewError
        The original left ``incoming/``, or it cannot be read or decoded.
    """
    if item.original is None:
        raise ReviewError(
            f"input {item.key}: the original is no longer in incoming/, so it cannot be "
            "scanned; put the file back to see its boxes"
        )
    engine = make_engine(workspace.config.ocr_engine)
    cache = scan_cache_path(workspace, item.sha256, engine)
    cached = _read_cache(cache)
    if cached is not None:
        return cached
    try:
        data = item.original.read_bytes()
    except OSError as exc:
        raise ReviewError(
            f"input {item.key}: the original cannot be read ({type(exc).__name__})"
        ) from None
    boxes = scan_boxes(workspace, data, item.key, engine)
    document = {"format": _CACHE_FORMAT, "boxes": [_record(box) for box in boxes]}
    cache.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write_text(cache, json.dumps(document, ensure_ascii=False), mode=0o600)
    return boxes


def scan_cache_path(workspace: Workspace, sha256: str, engine: OcrEngine) -> Path:
    """Where the scan of ``sha256`` by ``engine`` under the current rules is cached."""
    version = workspace_ruleset_version(workspace)
    reader = hashlib.sha256(engine.name.encode()).hexdigest()[:12]
    return workspace.private / CACHE_FOLDER / f"{sha256}-{version}-{reader}.json"


def scan_boxes(workspace: Workspace, data: bytes, key: str, engine: OcrEngine) -> list[ReviewBox]:
    """Scan one original's bytes as the ingest does and explain every box (no cache)."""
    quiet_pydicom()
    label = f"input {key}"
    profile = load_profile(workspace.config.profile)
    try:
        ds = read_dicom(data, label)
        signals = header_signals(ds, profile.sop)
        finding = scan_dataset(ds, label, engine, policy=profile.sop, prefilter=not signals)
    except InputError as exc:
        raise ReviewError(
            f"{label}: its pixels cannot be scanned ({exc.reason.value}); the ingest "
            "quarantines it for the same reason"
        ) from None
    return [*_rule_boxes(ds), *_word_boxes(finding, engine.name)]


def _rule_boxes(ds: Dataset) -> list[ReviewBox]:
    boxes = []
    for rule in load_region_rules().matching(ds):
        for area in rule.blank_areas(ds):
            boxes.append(
                ReviewBox(
                    None,
                    "every frame",
                    area.x,
                    area.y,
                    area.width,
                    area.height,
                    BoxSource.REGION,
                    "",
                    "",
                    None,
                    f"blanked on every frame by the region rule {rule.name!r} ({rule.origin})",
                    rule.name,
                )
            )
    return boxes


def _word_boxes(finding: ScanFinding, engine: str) -> list[ReviewBox]:
    phi = {(m.image, m.box): m for m in finding.phi_matches}
    flagged_images = {w.image for w in finding.words if is_evidence(w, set(phi))}
    boxes = []
    for word in finding.words:
        match = next(
            (m for (image, box), m in phi.items() if image == word.image and _inside(word, box)),
            None,
        )
        if match is not None:
            where = "the header's" if match.kind.from_header else "the generic pattern"
            why = f"matches {where} {match.kind.value}"
            matched = match.kind.value
        elif not word.image.startswith("frame "):
            why = f"read in {word.image}: overlays and icons are removed from every output"
            matched = ""
        elif finding.header_signals:
            why = (
                "read in a file whose header signals burned-in text ("
                + ", ".join(finding.header_signals)
                + "): every word is blanked"
            )
            matched = ""
        elif word.image in flagged_images:
            why = "read in an image with evidence of text: every word of it is blanked"
            matched = ""
        else:
            why = (
                "read with low confidence in an image without evidence of text: anatomy read "
                "as letters, not blanked unless redacted"
            )
            matched = ""
        x, y, w, h = word.box
        boxes.append(
            ReviewBox(
                _frame_of(word),
                word.image,
                x,
                y,
                w,
                h,
                BoxSource.OCR,
                engine,
                word.text,
                round(word.confidence, 2),
                why,
                matched,
            )
        )
    return boxes


def _inside(word: FoundWord, box: tuple[int, int, int, int]) -> bool:
    x, y, w, h = word.box
    bx, by, bw, bh = box
    return bx <= x and by <= y and x + w <= bx + bw and y + h <= by + bh


def _frame_of(word: FoundWord) -> int | None:
    parts = word.image.split()
    if len(parts) == 2 and parts[0] == "frame" and parts[1].isdigit():
        return int(parts[1])
    return None


def _record(box: ReviewBox) -> dict[str, object]:
    record = asdict(box)
    record["source"] = box.source.value
    return record


def _read_cache(path: Path) -> list[ReviewBox] | None:
    """The cached boxes, or None when there is no usable cache (then it is scanned again)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != _CACHE_FORMAT:
            return None
        return [
            ReviewBox(**{**record, "source": BoxSource(record["source"])})
            for record in document["boxes"]
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
