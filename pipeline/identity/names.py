"""Person-name normalisation, so one person written two ways gets one pseudonym.

Scanners and RIS systems disagree on trailing ``^``, padding, case, accents and
character sets: ``Müller^José^`` and ``MÜLLER^JOSÉ`` are the same person.  The
normal form keeps the component structure (family, given, middle, prefix,
suffix) and folds everything else.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=8192)
def fold(text: str) -> str:
    """Upper case, accents removed, compatibility forms unified, spaces collapsed."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SPACES.sub(" ", stripped).strip().upper()


def normalise_name(value: str) -> str:
    """The normal form of a DICOM PN value.

    Of the alphabetic, ideographic and phonetic groups (``=``-separated) the
    first non-empty one is used; components are folded and trailing empty
    components dropped.
    """
    groups = [g for g in str(value).split("=") if g.strip("^ ")]
    if not groups:
        return ""
    components = [fold(c) for c in groups[0].split("^")]
    while components and not components[-1]:
        components.pop()
    return "^".join(components)


def name_parts(value: str, min_length: int = 2) -> list[str]:
    """The folded words of a name, for finding it inside free text."""
    words: list[str] = []
    for component in normalise_name(value).split("^"):
        words += [w for w in re.split(r"[\s\-'.,]+", component) if len(w) >= min_length]
    return words


def normalise_id(value: str) -> str:
    """The normal form of an identifier: folded, surrounding padding removed."""
    return fold(str(value))
