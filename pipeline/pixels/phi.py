"""Match what OCR read to the file's own header PHI and to generic PHI patterns.

Burned-in text is usually the header printed onto the pixels: the patient's
name, MRN, birth date, the accession number.  So the strongest evidence that
a word is PHI is that it *is* one of this file's header values, read
imperfectly.  OCR of small scanner fonts confuses O/0, I/1, S/5 and drops or
splits characters, so header values are compared:

* after folding (case, accents: :func:`pipeline.identity.names.fold`) and
  keeping letters and digits only, so ``MAZHAR,ISMAEL`` and ``# 7189`` match
  ``MAZHAR^ISMAEL`` and ``7189``;
* across the words of one line, so an ID or a date split into several words
  still matches;
* with an edit distance of up to one error per five characters, where a
  confusable pair (O/0, I/1, ...) costs half.

Text that matches no header value can still be PHI (another patient's name
in a screenshot, a phone number): dates, runs of five or more digits and
phone numbers are reported as generic matches.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from pipeline.identity.names import fold, name_parts
from pipeline.pixels.ocr import Word

__all__ = ["HeaderTerm", "PhiKind", "PhiMatch", "header_terms", "match_words"]


class PhiKind(enum.Enum):
    """What a piece of burned-in text was recognised as."""

    PATIENT_NAME_PART = "PatientName part"
    OTHER_NAME_PART = "other patient name part"  # OtherPatientNames, birth/mother's names
    PHYSICIAN_NAME_PART = "ReferringPhysicianName part"
    PATIENT_ID = "PatientID"
    OTHER_PATIENT_ID = "OtherPatientIDs"
    ACCESSION_NUMBER = "AccessionNumber"
    BIRTH_DATE = "PatientBirthDate"
    INSTITUTION = "InstitutionName"
    DATE = "date"
    DIGITS = "digits"
    PHONE = "phone"

    @property
    def from_header(self) -> bool:
        return self not in (PhiKind.DATE, PhiKind.DIGITS, PhiKind.PHONE)


@dataclass(frozen=True)
class HeaderTerm:
    """One header value to look for, normalised to upper-case letters and digits."""

    kind: PhiKind
    value: str


@dataclass(frozen=True)
class PhiMatch:
    """Burned-in text recognised as PHI.

    Attributes
    ----------
    text : str
        The OCR words that matched, joined by spaces (PHI: findings are
        private, see :func:`pipeline.pixels.scan.write_findings`).
    kind : PhiKind
        The header element it matched, or the generic pattern.
    box : tuple of int
        ``(x, y, w, h)`` around those words, in the image's pixels.
    distance : float
        Edit cost of the match (0 exact; confusable characters cost 0.5).
    image : str
        Which image of the file (set by the scan: ``frame 0``, ``overlay 6000``...).
    """

    text: str
    kind: PhiKind
    box: tuple[int, int, int, int]
    distance: float = 0.0
    image: str = ""


# Person-name words that identify nobody.
_TITLES = frozenset({"DR", "MD", "PHD", "PROF", "MR", "MRS", "MS", "MME", "MLLE", "HR", "FR"})
_MONTHS = (
    ("JAN", "JANV"), ("FEB", "FEV", "FEVR"), ("MAR", "MRZ", "MARS"), ("APR", "AVR"),
    ("MAY", "MAI"), ("JUN", "JUIN"), ("JUL", "JUIL"), ("AUG", "AOU", "AOUT"),
    ("SEP", "SEPT"), ("OCT", "OKT"), ("NOV",), ("DEC", "DEZ"),
)  # fmt: skip
_MONTH_WORDS = "|".join(sorted({m for names in _MONTHS for m in names}, key=len, reverse=True))
_DATE_PATTERNS = (
    re.compile(r"(?<!\d)\d{1,2}[./-]\d{1,2}[./-](?:\d{4}|\d{2})(?!\d)"),
    re.compile(r"(?<!\d)(?:19|20)\d{2}[./-]\d{1,2}[./-]\d{1,2}(?!\d)"),
    re.compile(
        rf"(?<!\d)\d{{1,2}}[ ./-]?(?:{_MONTH_WORDS})[A-Z]*\.?[ ./-]?(?:\d{{4}}|\d{{2}})(?!\d)"
    ),
    re.compile(r"(?<!\d)(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?!\d)"),
)
_DIGITS = re.compile(r"\d{5,}")
_PHONE = re.compile(r"(?:\+|\b)\d[\d ()./-]{6,}\d")
_CONFUSABLE = {
    frozenset(pair)
    for pair in ("O0", "OD", "D0", "Q0", "I1", "L1", "IL", "S5", "B8", "Z2", "G6", "T7", "A4")
}


def header_terms(ds: Dataset) -> tuple[HeaderTerm, ...]:
    """The file's own identifying values, normalised for matching OCR text.

    Parameters
    ----------
    ds : pydicom.Dataset
        The file as read (before any de-identification).

    Returns
    -------
    tuple of HeaderTerm
        Name parts of two or more characters (titles left out), IDs and
        accession number whole, the birth date in the formats it is printed
        in (``YYYYMMDD``, ``DD.MM.YYYY``, ``MM/DD/YYYY``, ``YYYY-MM-DD``,
        ``DD-MON-YYYY`` in English, French and German), and the institution
        name whole and by words of four or more letters.
    """
    terms: list[HeaderTerm] = []

    def add(kind: PhiKind, raw: object) -> None:
        value = _compact(str(raw or ""))
        if value and not (kind.name.endswith("NAME_PART") and value in _TITLES):
            terms.append(HeaderTerm(kind, value))

    for part in name_parts(_text(ds.get("PatientName"))):
        add(PhiKind.PATIENT_NAME_PART, part)
    for keyword in ("OtherPatientNames", "PatientBirthName", "PatientMotherBirthName"):
        for value in _values(ds.get(keyword)):
            for part in name_parts(value):
                add(PhiKind.OTHER_NAME_PART, part)
    for value in _values(ds.get("ReferringPhysicianName")):
        for part in name_parts(value, min_length=3):
            add(PhiKind.PHYSICIAN_NAME_PART, part)
    add(PhiKind.PATIENT_ID, _text(ds.get("PatientID")))
    for value in _values(ds.get("OtherPatientIDs")):
        add(PhiKind.OTHER_PATIENT_ID, value)
    for item in ds.get("OtherPatientIDsSequence") or []:
        add(PhiKind.OTHER_PATIENT_ID, _text(item.get("PatientID")))
    add(PhiKind.ACCESSION_NUMBER, _text(ds.get("AccessionNumber")))
    for variant in _date_variants(_text(ds.get("PatientBirthDate"))):
        add(PhiKind.BIRTH_DATE, variant)
    institution = _text(ds.get("InstitutionName"))
    add(PhiKind.INSTITUTION, institution)
    for word in re.split(r"[^\w]+", fold(institution)):
        if len(word) >= 4:
            add(PhiKind.INSTITUTION, word)
    return tuple(dict.fromkeys(terms))


def match_words(words: Sequence[Word], terms: Iterable[HeaderTerm]) -> list[PhiMatch]:
    """Every header term and generic PHI pattern found in the words of one image.

    Parameters
    ----------
    words : sequence of Word
        What the engine read in one image (any order; grouped by ``line``).
    terms : iterable of HeaderTerm
        From :func:`header_terms`.

    Returns
    -------
    list of PhiMatch
        Per line, header matches then dates, phone numbers and digit runs;
        one per kind and words (the closest); ``image`` is left empty for
        the caller.
    """
    lines: dict[int, list[Word]] = {}
    for word in words:
        lines.setdefault(word.line, []).append(word)
    term_list = list(terms)
    found: list[PhiMatch] = []
    for line_words in lines.values():
        line_words.sort(key=lambda w: w.left)
        found += _header_matches(line_words, term_list)
        found += _pattern_matches(line_words)
    # One match per kind and words: the closest (two name parts in one word,
    # two spellings of a birth date).
    best: dict[tuple[PhiKind, str, tuple[int, int, int, int]], PhiMatch] = {}
    for match in found:
        key = (match.kind, match.text, match.box)
        if key not in best or match.distance < best[key].distance:
            best[key] = match
    return list(best.values())


# ---------------------------------------------------------------------------
# Header values
# ---------------------------------------------------------------------------


def _header_matches(line: list[Word], terms: list[HeaderTerm]) -> list[PhiMatch]:
    """Match terms against the line's letters and digits, as one string.

    Each character remembers its word, so a match spanning ``MRN 4821 3977``
    reports those three words and their joint box.
    """
    chars: list[str] = []
    owner: list[int] = []
    tokens: list[tuple[str, int]] = []  # whole alphanumeric tokens, for short terms
    for index, word in enumerate(line):
        compact = _compact(word.text)
        chars += compact
        owner += [index] * len(compact)
        tokens += [(t, index) for t in re.split(r"[^0-9A-Z]+", fold(word.text)) if t]
    text = "".join(chars)
    matches: list[PhiMatch] = []
    for term in terms:
        if len(term.value) < 4:
            # Two or three characters match only a whole token, exactly.
            for token, index in tokens:
                if token == term.value:
                    matches.append(_match(line, [index], term.kind, 0.0))
            continue
        hit = _approximate_find(term.value, text, _allowed(term.value))
        if hit is not None:
            start, end, cost = hit
            covered = sorted(set(owner[start:end]))
            matches.append(_match(line, covered, term.kind, cost))
    return matches


def _allowed(value: str) -> float:
    """About one OCR error per five characters; four characters tolerate one confusable."""
    if len(value) < 5:
        return 0.5
    return float(len(value) // 5)


def _approximate_find(pattern: str, text: str, allowed: float) -> tuple[int, int, float] | None:
    """Best approximate occurrence of ``pattern`` anywhere in ``text`` (Sellers' algorithm).

    Returns ``(start, end, cost)`` of the cheapest occurrence within
    ``allowed``, or None.  Quadratic in the lengths, which are a line of
    text and a header value.
    """
    if not text:
        return None
    if pattern in text:
        start = text.index(pattern)
        return (start, start + len(pattern), 0.0)
    m = len(pattern)
    # cost[i]: best cost of pattern[:i] ending at the current text position; start[i]: where it began.
    cost = [float(i) for i in range(m + 1)]
    begin = [0] * (m + 1)
    best: tuple[int, int, float] | None = None
    for j, char in enumerate(text, start=1):
        previous_cost, previous_begin = cost[0], begin[0]
        cost[0], begin[0] = 0.0, j  # a match may start anywhere
        for i in range(1, m + 1):
            best_cost = previous_cost + _substitution(pattern[i - 1], char)
            best_begin = previous_begin
            if cost[i - 1] + 1.0 < best_cost:  # a pattern char missing from the text
                best_cost, best_begin = cost[i - 1] + 1.0, begin[i - 1]
            if cost[i] + 1.0 < best_cost:  # an extra char in the text
                best_cost, best_begin = cost[i] + 1.0, begin[i]
            previous_cost, previous_begin = cost[i], begin[i]
            cost[i], begin[i] = best_cost, best_begin
        if cost[m] <= allowed and (best is None or cost[m] < best[2]):
            best = (begin[m], j, cost[m])
    return best


def _substitution(a: str, b: str) -> float:
    if a == b:
        return 0.0
    return 0.5 if frozenset((a, b)) in _CONFUSABLE else 1.0


# ---------------------------------------------------------------------------
# Generic patterns
# ---------------------------------------------------------------------------


def _pattern_matches(line: list[Word]) -> list[PhiMatch]:
    """Dates, digit runs and phone numbers in the line read as text (words joined by spaces)."""
    spans: list[tuple[int, int]] = []
    text = ""
    for word in line:
        if text:
            text += " "
        spans.append((len(text), len(text) + len(word.text)))
        text += word.text
    # Folded character by character, so positions still point into ``spans``.
    upper = "".join((fold(c) or " ")[:1] for c in text)
    matches: list[PhiMatch] = []
    taken: list[tuple[int, int]] = []
    for kind, patterns in (
        (PhiKind.DATE, _DATE_PATTERNS),
        (PhiKind.PHONE, (_PHONE,)),
        (PhiKind.DIGITS, (_DIGITS,)),
    ):
        for pattern in patterns:
            for found in pattern.finditer(upper):
                start, end = found.span()
                if kind is PhiKind.PHONE and not _phone_like(found.group()):
                    continue
                if any(start < t_end and t_start < end for t_start, t_end in taken):
                    continue  # already reported as a date or phone number
                covered = [i for i, (a, b) in enumerate(spans) if a < end and start < b]
                if covered:
                    taken.append((start, end))
                    matches.append(_match(line, covered, kind, 0.0))
    return matches


def _phone_like(text: str) -> bool:
    """Eight to fifteen digits with the separators of a phone number, not a date."""
    digits = sum(c.isdigit() for c in text)
    if not 8 <= digits <= 15:
        return False
    if any(p.fullmatch(text.strip()) for p in _DATE_PATTERNS):
        return False
    return text.startswith("+") or "(" in text or len(re.findall(r"[ ./-]", text)) >= 1


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _match(line: list[Word], covered: list[int], kind: PhiKind, cost: float) -> PhiMatch:
    chosen = [line[i] for i in covered]
    left = min(w.left for w in chosen)
    top = min(w.top for w in chosen)
    right = max(w.left + w.width for w in chosen)
    bottom = max(w.top + w.height for w in chosen)
    text = " ".join(w.text for w in chosen)
    return PhiMatch(text, kind, (left, top, right - left, bottom - top), cost)


def _compact(text: str) -> str:
    """Folded, letters and digits only: what is compared."""
    return re.sub(r"[^0-9A-Z]", "", fold(text))


def _text(element: object) -> str:
    value = getattr(element, "value", element)
    return "" if value is None else str(value)


def _values(element: object) -> list[str]:
    value = getattr(element, "value", element)
    if value is None or value == "":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _date_variants(value: str) -> list[str]:
    """A DA value as it is printed on images, compacted (separators dropped)."""
    digits = re.sub(r"\D", "", value)
    if len(digits) != 8:
        return []
    try:
        day = date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return []
    y, m, d = f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}"
    variants = [y + m + d, d + m + y, m + d + y]
    variants += [d + month + y for month in _MONTHS[day.month - 1]]
    return list(dict.fromkeys(variants))
