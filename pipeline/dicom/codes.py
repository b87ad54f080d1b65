"""The standard's own meaning of a code, so a coded entry keeps its words without free text.

A code sequence item carries a code (scheme and value) and a meaning that
the sending system wrote.  For a standard code (DICOM PS3.16, SNOMED CT,
LOINC, UCUM, RadLex...) the meaning is the standard's wording, which holds
no identity; the item's own text may hold anything (a surname typed into a
local code's meaning).  The table is pydicom's copy of PS3.16's concepts,
with the SNOMED RT codes of older files (``SRT``, ``SNM3``) mapped to SNOMED
CT as PS3.16 maps them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import cast

_SNOMED_RT = frozenset({"SRT", "SNM3", "99SDM"})


@lru_cache(maxsize=1)
def _meanings() -> dict[tuple[str, str], str]:
    from pydicom.sr._concepts_dict import concepts

    table: dict[tuple[str, str], str] = {}
    by_scheme = cast(dict[str, dict[str, dict[str, tuple[str, object]]]], concepts)
    for scheme, by_keyword in by_scheme.items():
        for codes in by_keyword.values():
            for value, (meaning, _) in codes.items():  # value -> (meaning, context groups)
                table[(scheme.upper(), value)] = meaning
    return table


@lru_cache(maxsize=1)
def _snomed_rt() -> dict[str, str]:
    from pydicom.sr._snomed_dict import mapping

    return dict(mapping["SRT"])


def standard_meaning(scheme: str, value: str) -> str | None:
    """The standard's meaning of ``value`` in ``scheme``, or None for a code it does not define."""
    scheme, value = scheme.strip().upper(), value.strip()
    if scheme in _SNOMED_RT:
        scheme, value = "SCT", _snomed_rt().get(value, "")
    return _meanings().get((scheme, value)) if value else None
