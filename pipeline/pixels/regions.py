"""Region rules: where a kind of image keeps its burned-in text, as data.

OCR finds text it can read; a device that always prints the patient's name
in the same header bar is better described once, by rule, so the bar is
blanked even where OCR misses a faint or oddly drawn word.  This is the idea
of RSNA CTP's DicomPixelAnonymizer script (``DicomPixelAnonymizer.script``):
a condition on header values and the rectangles to blank.  Our rules add
*keep* rectangles (scales, orientation letters, colour bars): text OCR finds
inside them is left alone, unless it is recognised as the file's own PHI.

A rule file in ``rules/pixels/`` looks like this::

    rules:
      - name: GE LOGIQ 9 header bar
        source: CTP DicomPixelAnonymizer.script, US / GE / Logiq   # optional
        when:                             # every condition must hold
          Modality: US                    # a plain value: equals
          ManufacturerModelName: {contains: LOGIQ9}   # case-insensitive
          Rows: {regex: "^(480|600)$"}    # Python re.search
          "(6000,0022)": {present: true}  # a tag in (gggg,eeee) form works too
        blank:                            # x, y, width, height (pixels)
          - [0, 0, 640, 40]
        keep:
          - [600, 40, 40, 400]
        blank_above_ultrasound_regions: true   # optional, see below

Values are compared as the header shows them: surrounding spaces removed,
multi-valued elements (ImageType) joined with ``\\``.  Rectangles are in the
pixel coordinates of every frame (x to the right, y down, as CTP's) and are
clipped to the image.  ``blank_above_ultrasound_regions`` blanks, across the
whole width, the rows above the topmost region of SequenceOfUltrasoundRegions:
ultrasound screens print the patient's name and the date in that header bar.

A file may also hold ``priors``: what the header says about the text an
image can carry, before any pixel is read.  A scanner writes its own
acquisitions (an ORIGINAL\\PRIMARY MR image) with annotations, if any, in
lines on the background, never as the screen capture of a viewer; a site
that knows otherwise removes or narrows the prior::

    priors:
      - name: MR acquisition from a scanner
        when:
          Modality: MR
          ImageType: {regex: "^(ORIGINAL|DERIVED)\\\\PRIMARY"}
        text: lines        # the one kind today: lines of letters on a background

Under a prior the scan reads only text lines (:func:`.prefilter.needs_ocr`
with ``lines_only``), also where a header signal would have had the whole
image read; a header signal is then explained by the prior when no text is
found, so the file is cleaned (overlays removed), not held.  Nothing is
skipped silently: the finding names the prior it was scanned under, and
``mricurate rules show`` lists every prior with its file and line.

Every file is validated at load (:func:`load_region_rules`): an unknown key,
a malformed rectangle or an invalid regular expression fails with the file,
the line and the reason.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from pipeline.dicom.selectors import TagSelector, parse_keyword, parse_tag
from pipeline.errors import RuleError
from pipeline.rulefiles import Located, check_keys, load_yaml, rules_root

__all__ = [
    "Condition",
    "MatchOp",
    "Rect",
    "RegionRule",
    "RegionRules",
    "TextExpectation",
    "TextPrior",
    "load_region_rules",
]

_FILE_KEYS = {"name", "description", "rules", "priors"}
_RULE_KEYS = {"name", "source", "when", "blank", "keep", "blank_above_ultrasound_regions"}
_PRIOR_KEYS = {"name", "source", "when", "text"}


class MatchOp(enum.Enum):
    """How a condition compares a header value."""

    EQUALS = "equals"  # exact, after surrounding spaces are removed
    CONTAINS = "contains"  # case-insensitive substring, as CTP's containsIgnoreCase
    REGEX = "regex"  # Python re.search
    PRESENT = "present"  # the element exists (true) or does not (false)
    NOT = "not"  # absent, or not equal (after surrounding spaces are removed)


@dataclass(frozen=True)
class Rect:
    """A rectangle in a frame's pixels: ``x``, ``y`` of its top-left corner, width, height."""

    x: int
    y: int
    width: int
    height: int

    def clipped(self, rows: int, cols: int) -> Rect | None:
        """The part inside a ``rows`` x ``cols`` image, or None when nothing is inside."""
        x0, y0 = max(0, self.x), max(0, self.y)
        x1, y1 = min(cols, self.x + self.width), min(rows, self.y + self.height)
        if x1 <= x0 or y1 <= y0:
            return None
        return Rect(x0, y0, x1 - x0, y1 - y0)

    def holds(self, box: tuple[int, int, int, int]) -> bool:
        """``box`` (x, y, w, h) lies wholly inside this rectangle."""
        x, y, w, h = box
        return (
            self.x <= x and self.y <= y and x + w <= self.x + self.width
            and y + h <= self.y + self.height
        )  # fmt: skip


@dataclass(frozen=True)
class Condition:
    """One test on a header element of the original (not yet de-identified) file."""

    tag: int
    name: str  # as written in the rule file, for messages
    op: MatchOp
    value: str = ""
    present: bool = True

    def holds(self, ds: Dataset) -> bool:
        if self.op is MatchOp.PRESENT:
            return (self.tag in ds) is self.present
        if self.op is MatchOp.NOT:
            return self.tag not in ds or _text(ds[self.tag].value) != self.value
        if self.tag not in ds:
            return False
        text = _text(ds[self.tag].value)
        if self.op is MatchOp.EQUALS:
            return text == self.value
        if self.op is MatchOp.CONTAINS:
            return self.value.casefold() in text.casefold()
        return re.search(self.value, text) is not None


@dataclass(frozen=True)
class RegionRule:
    """Where one kind of image carries text, and which areas to leave alone.

    Attributes
    ----------
    name : str
        Shown in the private run record (never a header value).
    origin : str
        ``file:line`` of the rule.
    conditions : tuple of Condition
        All must hold for the rule to apply.
    blank, keep : tuple of Rect
        Rectangles blanked whatever OCR found; rectangles whose OCR words
        are left unless they are recognised as PHI.
    above_ultrasound_regions : bool
        Also blank every row above the topmost ultrasound region.
    source : str
        Where the rule comes from (a published script, a site's review).
    """

    name: str
    origin: str
    conditions: tuple[Condition, ...]
    blank: tuple[Rect, ...] = ()
    keep: tuple[Rect, ...] = ()
    above_ultrasound_regions: bool = False
    source: str = ""

    def matches(self, ds: Dataset) -> bool:
        return all(condition.holds(ds) for condition in self.conditions)

    def blank_areas(self, ds: Dataset) -> tuple[Rect, ...]:
        """The rule's rectangles, plus the header bar above the ultrasound regions."""
        areas = list(self.blank)
        if self.above_ultrasound_regions:
            top = _top_of_ultrasound_regions(ds)
            cols = int(ds.get("Columns", 0) or 0)
            if top is not None and top > 0 and cols > 0:
                areas.append(Rect(0, 0, cols, top))
        return tuple(areas)


class TextExpectation(enum.Enum):
    """What text a prior says an image can carry."""

    # Annotation lines of a scanner: letters on one baseline, on a quiet background.
    LINES = "lines"


@dataclass(frozen=True)
class TextPrior:
    """A header prior: images it matches carry text only as :class:`TextExpectation` says.

    Attributes
    ----------
    name : str
        Recorded in the finding and the private run record (never a value).
    origin : str
        ``file:line`` of the prior.
    conditions : tuple of Condition
        All must hold (on the original header).
    text : TextExpectation
        What the scan looks for under it.
    source : str
        Why the site believes it.
    """

    name: str
    origin: str
    conditions: tuple[Condition, ...]
    text: TextExpectation = TextExpectation.LINES
    source: str = ""

    def matches(self, ds: Dataset) -> bool:
        return all(condition.holds(ds) for condition in self.conditions)


@dataclass(frozen=True)
class RegionRules:
    """Every region rule and prior of a folder, in file and line order."""

    rules: tuple[RegionRule, ...]
    files: tuple[Path, ...] = ()
    digest: str = ""  # sha256 over the files' bytes, to record with a run
    priors: tuple[TextPrior, ...] = ()

    def matching(self, ds: Dataset) -> tuple[RegionRule, ...]:
        """The rules whose conditions all hold for ``ds`` (the original header)."""
        return tuple(rule for rule in self.rules if rule.matches(ds))

    def prior_for(self, ds: Dataset) -> TextPrior | None:
        """The first prior whose conditions all hold for ``ds``, or None."""
        return next((prior for prior in self.priors if prior.matches(ds)), None)


def _text(value: Any) -> str:
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(_text(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("latin-1").strip("\0 ")
    return str(value).strip("\0 ")


def _top_of_ultrasound_regions(ds: Dataset) -> int | None:
    tops = []
    for region in ds.get("SequenceOfUltrasoundRegions") or []:
        try:
            tops.append(int(region.RegionLocationMinY0))
        except (AttributeError, TypeError, ValueError):
            continue
    return min(tops) if tops else None


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def default_rules_dir() -> Path:
    return rules_root() / "pixels"


def load_region_rules(folder: Path | None = None) -> RegionRules:
    """Load every ``*.yaml`` file of ``folder`` (by default the shipped ``rules/pixels``).

    Raises
    ------
    RuleError
        The folder does not exist, or a file is malformed (file, line, reason).
    """
    folder = folder if folder is not None else default_rules_dir()
    if not folder.is_dir():
        raise RuleError(folder, None, "pixel rule folder not found")
    files = tuple(sorted(folder.glob("*.yaml")))
    digest = hashlib.sha256()
    rules: list[RegionRule] = []
    priors: list[TextPrior] = []
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
        file_rules, file_priors = _load_file(path)
        rules += file_rules
        priors += file_priors
    return RegionRules(tuple(rules), files, digest.hexdigest(), tuple(priors))


def _load_file(path: Path) -> tuple[list[RegionRule], list[TextPrior]]:
    data = load_yaml(path)
    check_keys(data, allowed=_FILE_KEYS)
    if "rules" not in data and "priors" not in data:
        raise RuleError(path, data.line, "missing key(s): rules (or priors)")
    rules = [_rule(entry) for entry in _entries(data, "rules")]
    priors = [_prior(entry) for entry in _entries(data, "priors")]
    return rules, priors


def _entries(data: Located, key: str) -> list[Located]:
    entries = data.get(key)
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise RuleError(data.path, data.line, f"'{key}' must be a list")
    for entry in entries:
        if not isinstance(entry, Located):
            raise RuleError(
                data.path, data.line, f"each of '{key}' must be a mapping with name, when, ..."
            )
    return entries


def _prior(entry: Located) -> TextPrior:
    check_keys(entry, required={"name", "when", "text"}, allowed=_PRIOR_KEYS)
    name = entry["name"]
    if not isinstance(name, str) or not name.strip():
        raise RuleError(entry.path, entry.line, "'name' must be non-empty text")
    when = entry["when"]
    if not isinstance(when, Located) or not when:
        raise RuleError(
            entry.path, entry.line, f"prior '{name}': 'when' must map attributes to conditions"
        )
    try:
        text = TextExpectation(str(entry["text"]))
    except ValueError:
        known = ", ".join(t.value for t in TextExpectation)
        raise RuleError(
            entry.path,
            entry.line,
            f"prior '{name}': unknown text '{entry['text']}' (known: {known})",
        ) from None
    return TextPrior(
        name=name.strip(),
        origin=entry.where(),
        conditions=tuple(_condition(when, key, value) for key, value in when.items()),
        text=text,
        source=str(entry.get("source", "") or ""),
    )


def _rule(entry: Located) -> RegionRule:
    check_keys(entry, required={"name", "when"}, allowed=_RULE_KEYS)
    name = entry["name"]
    if not isinstance(name, str) or not name.strip():
        raise RuleError(entry.path, entry.line, "'name' must be non-empty text")
    when = entry["when"]
    if not isinstance(when, Located) or not when:
        raise RuleError(
            entry.path, entry.line, f"rule '{name}': 'when' must map attributes to conditions"
        )
    conditions = tuple(_condition(when, key, value) for key, value in when.items())
    above = entry.get("blank_above_ultrasound_regions", False)
    if not isinstance(above, bool):
        raise RuleError(
            entry.path, entry.line, f"rule '{name}': blank_above_ultrasound_regions is true/false"
        )
    blank = _rects(entry, "blank", name)
    keep = _rects(entry, "keep", name)
    if not blank and not above:
        raise RuleError(
            entry.path, entry.line,
            f"rule '{name}' blanks nothing: give 'blank' rectangles or "
            "blank_above_ultrasound_regions: true",
        )  # fmt: skip
    source = entry.get("source", "")
    return RegionRule(
        name=name.strip(),
        origin=entry.where(),
        conditions=conditions,
        blank=blank,
        keep=keep,
        above_ultrasound_regions=above,
        source=str(source or ""),
    )


def _condition(when: Located, key: str, value: object) -> Condition:
    try:
        selector = parse_tag(key) if key.lstrip().startswith("(") else parse_keyword(key)
    except ValueError as exc:
        raise RuleError(when.path, when.line, str(exc)) from None
    if not isinstance(selector, TagSelector):
        raise RuleError(when.path, when.line, f"'{key}': a condition names one element, not a mask")
    if isinstance(value, Located):
        if len(value) != 1:
            raise RuleError(
                value.path, value.line,
                f"'{key}': one of equals, contains, regex, present or not, e.g. {{contains: GE}}",
            )  # fmt: skip
        ((op_name, operand),) = value.items()
        try:
            op = MatchOp(op_name)
        except ValueError:
            known = ", ".join(m.value for m in MatchOp)
            raise RuleError(
                value.path, value.line, f"'{key}': unknown test '{op_name}' (known: {known})"
            ) from None
        if op is MatchOp.PRESENT:
            if not isinstance(operand, bool):
                raise RuleError(value.path, value.line, f"'{key}': present is true or false")
            return Condition(selector.tag, key, op, present=operand)
        text = _operand(value, key, operand)
        if op is MatchOp.REGEX:
            try:
                re.compile(text)
            except re.error as exc:
                raise RuleError(
                    value.path, value.line, f"'{key}': invalid regular expression ({exc})"
                ) from None
        return Condition(selector.tag, key, op, text)
    return Condition(selector.tag, key, MatchOp.EQUALS, _operand(when, key, value))


def _operand(where: Located, key: str, operand: object) -> str:
    if isinstance(operand, bool) or not isinstance(operand, str | int | float):
        raise RuleError(
            where.path, where.line, f"'{key}': the value to compare must be text or a number"
        )
    return str(operand).strip()


def _rects(entry: Located, key: str, name: str) -> tuple[Rect, ...]:
    raw = entry.get(key) or []
    if not isinstance(raw, list):
        raise RuleError(entry.path, entry.line, f"rule '{name}': '{key}' must be a list")
    return tuple(_rect(entry, key, name, item) for item in raw)


def _rect(entry: Located, key: str, name: str, item: object) -> Rect:
    values = item if isinstance(item, list) else []
    numbers = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    if len(values) != 4 or len(numbers) != 4 or min(numbers) < 0 or 0 in numbers[2:]:
        raise RuleError(
            entry.path, entry.line,
            f"rule '{name}': each '{key}' rectangle is [x, y, width, height] in whole "
            f"pixels, none negative, width and height above 0 (got {item!r})",
        )  # fmt: skip
    x, y, w, h = numbers
    return Rect(x, y, w, h)
