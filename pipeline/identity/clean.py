"""The ``clean`` action for free text: remove PHI, keep the clinical words.

A study description such as ``MRI KNEE LEFT MÜLLER 12.03.2024`` should become
``MRI KNEE LEFT``: the words that make it useful to a researcher stay, the
ones that identify the patient go.  Three kinds of PHI are removed:

* the file's own identifying values (names and their parts, IDs, accession
  number, birth date in the common written forms), compared after folding
  case and accents, so a misspelt charset or lower-case copy is still caught;
* generic patterns that are identifying whatever they belong to: dates,
  runs of five or more digits, phone numbers, e-mail addresses, URLs;
* with a :class:`~pipeline.identity.vocabulary.Vocabulary`, every word of
  three letters or more that it does not know, and any word after a title
  ("Dr", "Prof", "Herr"): the names the header does not hold.  Tokens with
  digits or underscores (``t2_tse_sag``, ``3D``, ``b1000``) are technical and
  stay.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from pipeline.identity.names import fold, name_parts
from pipeline.identity.vocabulary import Vocabulary

_GENERIC = [
    re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"),  # e-mail
    re.compile(r"\b(https?://|www\.)\S+", re.IGNORECASE),  # URL
    re.compile(r"\b\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\b"),  # 12.03.2024, 2024-03-12, 3/12/24
    re.compile(r"\+?\(?\d{2,4}\)?[\s.-]\d{3,4}[\s.-]\d{3,5}\b"),  # phone numbers
    re.compile(r"\b[A-Za-z]{0,4}\d{5,}[A-Za-z]{0,4}\b"),  # MRNs, accession numbers, 8-digit dates
]
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# A word of letters alone, not glued to digits or underscores (t2_tse, 3D stay).
_ALPHA_WORD = re.compile(r"(?<![\w])[^\W\d_]+(?![\w])")
# A title announces a name, whatever the next word is ("Dr White", "Herr Lang").
# Titles that are also DICOM abbreviations in capitals (MR, DR: digital
# radiography, MS: multiple sclerosis, MRS: spectroscopy) count only as
# written for a person, in title case.
_TITLE = re.compile(
    r"(?:\b(?:Dr|Mr|Mrs|Ms|Miss|Mme|Mlle|Prof)\b|\b(?i:herr|frau|doctor|nurse)\b)\.?\s*"
    r"([^\W\d_]+)"
)
_SPACES = re.compile(r"\s{2,}")
_DANGLING = re.compile(r"^[\s,;:/\-_^]+|[\s,;:/\-_^]+$")


@dataclass(frozen=True)
class PhiTerms:
    """The identifying values of one file, prepared for matching in free text."""

    words: frozenset[str]  # folded single words (name parts)
    phrases: tuple[str, ...]  # folded multi-character identifiers and date forms

    @classmethod
    def build(cls, names: list[str], identifiers: list[str], dates: list[str]) -> PhiTerms:
        words: set[str] = set()
        for name in names:
            words.update(name_parts(name))
        phrases: set[str] = {fold(i) for i in identifiers if len(i.strip()) >= 3}
        for value in dates:
            phrases.update(_date_forms(value))
        return cls(frozenset(words), tuple(sorted(phrases, key=len, reverse=True)))

    def mentioned_in(self, text: str) -> bool:
        """Whether ``text`` holds one of these values (the file's own PHI) as ``clean_text`` finds it."""
        folded = fold(text)
        if any(phrase in folded for phrase in self.phrases):
            return True
        return any(fold(match.group(0)) in self.words for match in _WORD.finditer(text))


def _date_forms(value: str) -> set[str]:
    text = value.strip()
    if len(text) < 8 or not text[:8].isdigit():
        return set()
    try:
        day = dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return set()
    return {
        day.strftime(f)
        for f in ("%Y%m%d", "%Y-%m-%d", "%d.%m.%Y", "%m/%d/%Y", "%d/%m/%Y", "%d-%m-%Y", "%Y/%m/%d")
    }


def clean_text(text: str, terms: PhiTerms, vocabulary: Vocabulary | None = None) -> str:
    """``text`` without the file's PHI, generic identifiers and, with ``vocabulary``, unknown words."""
    if not text:
        return text
    folded = fold(text)
    # Folding can change length (e.g. "ß" -> "SS"); match on a same-length copy.
    cleaned = text if len(folded) == len(text) else folded
    for phrase in terms.phrases:
        start = folded.find(phrase)
        while start != -1:
            cleaned = cleaned[:start] + " " * len(phrase) + cleaned[start + len(phrase) :]
            folded = folded[:start] + " " * len(phrase) + folded[start + len(phrase) :]
            start = folded.find(phrase, start + len(phrase))
    for pattern in _GENERIC:
        cleaned = pattern.sub(lambda m: " " * len(m.group(0)), cleaned)

    def drop_name(match: re.Match[str]) -> str:
        return " " * len(match.group(0)) if fold(match.group(0)) in terms.words else match.group(0)

    cleaned = _WORD.sub(drop_name, cleaned)
    if vocabulary is not None:
        cleaned = _TITLE.sub(lambda m: m.group(0)[: m.start(1) - m.start(0)], cleaned)
        cleaned = _ALPHA_WORD.sub(
            lambda m: m.group(0) if vocabulary.knows(m.group(0)) else " " * len(m.group(0)),
            cleaned,
        )
    cleaned = _SPACES.sub(" ", cleaned)
    return _DANGLING.sub("", cleaned)
