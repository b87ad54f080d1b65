"""Normal forms: how a value is spelled once case, accents and punctuation are gone.

The leak check compares values seen in a run's inputs with what its outputs
say, and the same value is spelled many ways: ``MÜLLER^JOSÉ``, ``José
Müller``, ``MUELLER, JOSE``; ``19620314``, ``14.03.1962``, ``14 Mar 1962``;
``MRN0012345`` and ``MRN 12345``.  Both sides go through the same two steps:

1. :func:`fold`: lower case, accents removed, ``ß`` as ``ss``, ``ø`` as
   ``o``, apostrophes dropped (``O'Brien`` is ``obrien``);
2. :func:`atomize`: the folded text as *atoms*, the runs of letters and
   the runs of digits (leading zeros stripped), with separators dropped, so
   ``1962-03-14``, ``1962/3/14`` and ``1962 03 14`` are the same three atoms.
   A decimal number (``0.9765625``, one dot) stays one atom: its digits
   are a measurement, not an identifier.  A dotted chain of three or more
   numbers (a UID, ``14.03.1962``) gives its components as atoms and is also
   kept whole, for the UID comparison.

Name *words* are the atoms a person reads as a word: a letter atom whose
alphanumeric token holds no other letters (``muller`` in ``MULLER_2``, not
``nhzt`` in the pseudonym ``KA3NHZT4MR``).  A long token that mixes letters
and digits many times (a keyed pseudonym, a SHA-256) is *opaque*: nothing in
it matches alone, so random letters never "spell" a short name.

Transliteration goes one way, by decision: a value spelled with an umlaut
(``Müller``) also matches ``Muller`` and ``Mueller``; a value spelled
``Mueller`` matches only ``Mueller``, because reading every ``ue`` as ``ü``
would make unrelated names equal (``Samuel`` and ``Samul``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import product

__all__ = [
    "MONTHS",
    "Atoms",
    "atomize",
    "birth_date_forms",
    "field_key",
    "fold",
    "is_placeholder",
    "parse_date",
    "spellings",
    "uid_chain",
]

_SPECIAL = str.maketrans(
    {
        "ß": "ss", "ẞ": "ss", "ø": "o", "Ø": "o", "æ": "ae", "Æ": "ae", "œ": "oe",
        "Œ": "oe", "ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "ð": "d", "Ð": "d",
        "þ": "th", "Þ": "th", "ı": "i", "'": "", "`": "", "’": "", "‘": "", "ʼ": "",
        "´": "",
    }
)  # fmt: skip
_ASCII_APOSTROPHES = str.maketrans({"'": "", "`": ""})
# The German and Scandinavian spellings without the letter: ü as ue, å as aa.
_TRANSLITERATED = str.maketrans(
    {
        "ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue",
        "ø": "oe", "Ø": "Oe", "å": "aa", "Å": "Aa",
    }
)  # fmt: skip
_APOSTROPHE = re.compile("['`’‘ʼ´]")
_COMBINING = re.compile(
    "[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\u3099\u309a\ufe20-\ufe2f]"
)

# A dotted chain of numbers, a run of digits, or a run of letters (any script).
_ATOM = re.compile(r"(\d+(?:\.\d+)+)|(\d+)|([^\W\d_]+)")
_UID = re.compile(r"\d+(?:\.\d+){2,}")
_NON_KEY = re.compile(r"[^0-9a-z]+")

# Tokens at least this long that mix letters and digits in at least this many
# runs are keyed pseudonyms or digests: AXHG9V9W3XFY681X, a SHA-256.
OPAQUE_LENGTH = 12
OPAQUE_ATOMS = 4

_PLACEHOLDERS = frozenset(
    {
        "anonymous", "anonymized", "anonymised", "anon", "unknown", "none", "null",
        "na", "n a", "nil", "removed", "deidentified", "de identified", "redacted",
        "not available", "not applicable", "no name", "noname", "test", "dummy",
    }
)  # fmt: skip


def fold(text: str) -> str:
    """Lower case, accents and apostrophes removed, ``ß`` as ``ss``, ``ø`` as ``o``."""
    if text.isascii():
        return text.lower().translate(_ASCII_APOSTROPHES)
    decomposed = unicodedata.normalize("NFKD", text.translate(_SPECIAL))
    return _COMBINING.sub("", decomposed).lower()


def spellings(text: str) -> set[str]:
    """The folded spellings of one value: as written, transliterated (``ü`` as ``ue``), and
    with its apostrophes read as spaces."""
    forms = {fold(text)}
    transliterated = text.translate(_TRANSLITERATED)
    if transliterated != text:
        forms.add(fold(transliterated))
    if _APOSTROPHE.search(text):  # O'Brien is also written O Brien
        forms |= {fold(_APOSTROPHE.sub(" ", form)) for form in (text, transliterated)}
    return forms


def field_key(name: str) -> str:
    """The key a field is compared by across formats: ``PatientID``, ``patientID``, ``patient_id``."""
    return _NON_KEY.sub("", fold(name))


@dataclass(frozen=True, slots=True)
class Atoms:
    """A folded text as atoms, name words and UID chains.

    Attributes
    ----------
    atoms : tuple of str
        Letter runs, digit runs (leading zeros stripped), decimals, and the
        components of dotted chains, in order.
    alone : tuple of bool
        Per atom: it may match on its own (it is not inside an opaque token).
    words : tuple of str or None
        The name words in order; ``None`` where something that is not a
        word (a number, an opaque token) stands between two words.
    chains : tuple of str
        Dotted chains of three or more numbers (UIDs, some dates), whole.
    """

    atoms: tuple[str, ...]
    alone: tuple[bool, ...]
    words: tuple[str | None, ...]
    chains: tuple[str, ...]


def atomize(folded: str) -> Atoms:
    """Split a :func:`fold`-ed text into :class:`Atoms` (see the module docstring)."""
    atoms: list[str] = []
    alone: list[bool] = []
    words: list[str | None] = []
    chains: list[str] = []
    # The current alphanumeric token: its atoms' indexes, letter atoms, length.
    token: list[int] = []
    letters: list[str] = []
    token_start = token_end = -1

    def close() -> None:
        if not token:
            return
        opaque = len(token) >= OPAQUE_ATOMS and token_end - token_start >= OPAQUE_LENGTH
        if opaque:
            for index in token:
                alone[index] = False
        if len(letters) == 1 and not opaque:
            words.append(letters[0])
        elif not words or words[-1] is not None:
            words.append(None)
        token.clear()
        letters.clear()

    for match in _ATOM.finditer(folded):
        start, end = match.span()
        chain, digits, word = match.groups()
        if chain is not None:
            close()
            parts = chain.split(".")
            if len(parts) == 2:  # a decimal number: one atom, never an identifier's digits
                atoms.append(chain)
                alone.append(True)
            else:
                chains.append(chain)
                for part in parts:
                    atoms.append(part.lstrip("0") or "0")
                    alone.append(True)
            if not words or words[-1] is not None:
                words.append(None)
            token_end = end
            continue
        if start != token_end:
            close()
            token_start = start
        token_end = end
        token.append(len(atoms))
        if digits is not None:
            atoms.append(digits.lstrip("0") or "0")
        else:
            atoms.append(word)
            letters.append(word)
        alone.append(True)
    close()
    return Atoms(tuple(atoms), tuple(alone), tuple(words), tuple(chains))


def uid_chain(value: str) -> str | None:
    """``value`` as a UID (three or more dotted numbers), or ``None``."""
    text = value.strip().strip("\x00").strip()
    return text if _UID.fullmatch(text) else None


@lru_cache(maxsize=1 << 16)  # names and IDs repeat in every file of a series
def is_placeholder(value: str) -> bool:
    """A value that stands for *no* value: empty, ``xxxxxxx``, ``000000000``, ``----``, ``ANONYMOUS``.

    Scanners and exports fill identifying fields with these; treating them as
    identifiers would flag every output that happens to contain ``unknown``.
    """
    folded = fold(value)
    characters = {ch for ch in set(folded) if ch.isalnum()}
    if not characters:
        return True
    if len(characters) == 1:
        return sum(folded.count(ch) for ch in characters) > 1
    return len(folded) <= 32 and " ".join(_NON_KEY.sub(" ", folded).split()) in _PLACEHOLDERS


# -- dates -------------------------------------------------------------------

#: Month names and abbreviations (English, German, French), folded, by month.
MONTHS: dict[int, tuple[str, ...]] = {
    1: ("jan", "january", "januar", "janvier", "janv"),
    2: ("feb", "february", "februar", "fevrier", "fev", "fevr"),
    3: ("mar", "march", "marz", "maerz", "mrz", "mars"),
    4: ("apr", "april", "avril", "avr"),
    5: ("may", "mai"),
    6: ("jun", "june", "juni", "juin"),
    7: ("jul", "july", "juli", "juillet", "juil"),
    8: ("aug", "august", "aout"),
    9: ("sep", "sept", "september", "septembre"),
    10: ("oct", "october", "okt", "oktober", "octobre"),
    11: ("nov", "november", "novembre"),
    12: ("dec", "december", "dez", "dezember", "decembre"),
}

_DATE = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")


def parse_date(value: str) -> tuple[int, int, int] | None:
    """``YYYYMMDD`` or ``YYYY-MM-DD`` (DICOM DA, twix, xs:date) as (year, month, day), or ``None``."""
    match = _DATE.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day = (int(g) for g in match.groups())
    if not (1800 <= year <= 2200 and 1 <= month <= 12 and 1 <= day <= 31):
        return None
    return year, month, day


def birth_date_forms(year: int, month: int, day: int) -> set[tuple[str, ...]]:
    """The atom sequences a date is written as.

    ``19620314``, ``14031962``, ``03141962`` (one atom each); ``1962-03-14``,
    ``14.03.1962``, ``14/03/1962``, ``03/14/1962`` (three numbers in the
    three orders people use); ``14 Mar 1962``, ``March 14, 1962``,
    ``14. März 1962``, ``1962-MAR-14`` (a month name in any of
    :data:`MONTHS`).  Two-digit years are left out: ``14.03.62`` is too
    likely to occur by chance.
    """
    y, m, d = str(year), str(month), str(day)
    forms: set[tuple[str, ...]] = {
        (f"{year:04d}{month:02d}{day:02d}".lstrip("0"),),
        (f"{day:02d}{month:02d}{year:04d}".lstrip("0"),),
        (f"{month:02d}{day:02d}{year:04d}".lstrip("0"),),
        (y, m, d),
        (d, m, y),
        (m, d, y),
    }
    for name in MONTHS[month]:
        forms |= {(d, name, y), (name, d, y), (y, name, d)}
    return forms


# -- names -------------------------------------------------------------------


def name_words(text: str) -> list[list[str]]:
    """The words of one name component in each spelling: ``O'Brien-Müller`` → [[obrien, muller], ...]."""
    out: list[list[str]] = []
    for spelling in spellings(text):
        words = [w for w in atomize(spelling).words if w is not None]
        if words and words not in out:
            out.append(words)
    return out


def combinations(*parts: Iterable[list[str]]) -> Iterator[tuple[str, ...]]:
    """Every sequence made of one spelling of each part, concatenated."""
    for choice in product(*parts):
        yield tuple(word for part in choice for word in part)
