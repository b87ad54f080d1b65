"""Read an element's value without decoding it in place.

pydicom decodes a raw element the first time it is read (``ds.Rows``,
``ds.get("Modality")``, ``ds[tag]``) and *replaces* the raw element with the
decoded one.  A decoded element is no longer written back as the bytes it
was read from: the writer (pydicom's, and :mod:`pipeline.dicom.stream_write`)
encodes it again.  The checks and decisions that only look at a value
(is this an image, which subject, which vendor) read it through
:func:`peek` instead, so an element nobody changes stays raw and is copied.

Both readers' datasets go through the same code, so the pydicom path and the
byte-stream path still write the same bytes.

A plain value (one ASCII string of a UID, code string, short or long string
or application entity, one US, SS, UL or SL number) is read from its bytes
here, into what pydicom's converters make of them (the same type and value);
anything else goes through pydicom.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import AMBIGUOUS_VR

__all__ = ["elements_in_order", "peek", "peek_value", "tag_object"]

_SPECIFIC_CHARACTER_SET = 0x00080005
_KEYWORD_TAGS: dict[str, BaseTag | None] = {}
# One tag object per tag value, shared by every file this process reads.  A
# dict finds a key by identity before it compares values, and comparing two
# distinct BaseTags runs BaseTag.__eq__ in Python: a data set keyed by these
# objects (the byte-stream reader's), and lookups made with them, never do.
_TAGS: dict[int, BaseTag] = {}
TAGS_MAX = 1 << 16
# VRs whose single ASCII value pydicom decodes without the character set, as
# str (UID for UI) with what its converter strips (see _plain).
_TEXT_VRS = frozenset({"AE", "CS", "LO", "SH", "UI"})
_INTEGERS = {("US", 2): False, ("SS", 2): True, ("UL", 4): False, ("SL", 4): True}


def tag_object(tag: int) -> BaseTag:
    """The shared :class:`BaseTag` for ``tag`` (the one the stream reader keys data sets by)."""
    found = _TAGS.get(tag)
    if found is None:
        if len(_TAGS) >= TAGS_MAX:  # a corpus of endless private tags: keep memory bounded
            _TAGS.clear()
        found = _TAGS[tag] = BaseTag(tag)
    return found


def shared_tags() -> dict[int, BaseTag]:
    """The table behind :func:`tag_object`, for a reader's inner loop."""
    return _TAGS


# The checks of one file peek at the same dozen elements several times: the
# decoded elements of the last files, in this process's memory only.
_PEEKED: dict[int, tuple[RawDataElement, object, DataElement]] = {}
_PEEKED_MAX = 256


def peek(ds: Dataset, tag: int) -> DataElement | None:
    """The element at ``tag`` decoded, leaving ``ds`` as it was; None when absent.

    The element returned may be shared with later peeks: read it, never change it.

    An element whose decoding depends on the rest of the data set (an
    ambiguous VR such as ``US or SS``, a sequence) is decoded the ordinary
    way, in place, exactly as ``ds[tag]`` would.
    """
    element = ds.get_item(tag)
    if element is None:
        return None
    if isinstance(element, DataElement):
        return element
    if not isinstance(element, RawDataElement) or (element.value is None and element.length):
        return ds[tag]  # deferred or unusual: pydicom's own way
    encoding = (
        "iso8859"
        if tag == _SPECIFIC_CHARACTER_SET
        else ds.original_character_set or ds._character_set
    )
    cached = _PEEKED.get(id(element))
    if cached is not None and cached[0] is element and cached[1] == encoding:
        return cached[2]
    decoded = convert_raw_data_element(element, encoding=encoding, ds=ds)
    if decoded.VR == "SQ" or decoded.VR in AMBIGUOUS_VR:
        return ds[tag]
    if len(_PEEKED) >= _PEEKED_MAX:
        _PEEKED.clear()
    # Keyed by the raw element's identity, which the entry keeps alive (so the
    # id cannot be reused while the entry stands).
    _PEEKED[id(element)] = (element, encoding, decoded)
    return decoded


@lru_cache(maxsize=1024)
def _implicit_vr(tag: int) -> str | None:
    """A public tag's one dictionary VR (None: private, unknown, or ambiguous)."""
    if tag >> 16 & 1:
        return None
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return None
    return None if vr in AMBIGUOUS_VR or " " in vr else str(vr)


def elements_in_order(ds: Dataset) -> list[tuple[BaseTag, RawDataElement | DataElement]]:
    """``(tag, element)`` for what ``ds.elements()`` yields, in tag order, as a list.

    The same elements (raw ones stay raw; an empty one pydicom stores as None
    is decoded, as ``elements()`` does), at a fraction of the cost: tags are
    sorted as plain integers, not through pydicom's ``BaseTag.__lt__``, and
    each is looked up once.
    """
    elements = ds._dict
    found: list[tuple[BaseTag, RawDataElement | DataElement]] = []
    for tag in sorted(elements, key=int):
        element = elements[tag]
        if isinstance(element, RawDataElement) and element.value is None:
            element = ds.get_item(tag)
        found.append((tag, element))
    return found


def peek_value(ds: Dataset, keyword: str, default: Any = None) -> Any:
    """``ds.get(keyword, default)`` without decoding the element in place (see :func:`peek`)."""
    if keyword in _KEYWORD_TAGS:
        tag = _KEYWORD_TAGS[keyword]
    else:
        number = tag_for_keyword(keyword)
        tag = _KEYWORD_TAGS[keyword] = None if number is None else tag_object(number)
    if tag is None:
        return ds.get(keyword, default)
    raw = ds._dict.get(tag)
    if raw is None:
        return default
    if isinstance(raw, RawDataElement) and raw.__class__ is RawDataElement:
        value = _plain(raw)
        if value is not None:
            return value
    element = peek(ds, tag)
    return default if element is None else element.value


def _plain(raw: RawDataElement) -> str | int | None:
    """What pydicom's converter makes of a plain value, or None where it must decide.

    The ASCII bytes of one value mean the same in every DICOM character set
    (without an ISO 2022 escape), so no character set is needed: UI is
    stripped of trailing NULs and spaces (``convert_UI``), and so are CS
    (``convert_string``), SH and LO (``convert_text``); AE of spaces either
    side (``convert_AE_string``).
    """
    data, vr = raw.value, raw.VR
    if not data or data.__class__ is not bytes:
        return None  # empty or deferred: pydicom's empty value, or a read to do
    if vr is None:  # implicit VR: the dictionary's, as pydicom takes it
        vr = _implicit_vr(raw.tag)
    if vr in _TEXT_VRS:
        if not data.isascii() or b"\\" in data or b"\x1b" in data:
            return None
        text = data.decode("ascii")
        if vr == "UI":
            return UID(text.rstrip(" \0"))
        if vr == "CS":
            return text.rstrip(" \0")
        if vr == "AE":
            return text.strip()
        return text.rstrip("\0 ")
    signed = _INTEGERS.get((vr, len(data)))  # type: ignore[arg-type]
    if signed is None or not raw.is_little_endian:
        return None
    return int.from_bytes(data, "little", signed=signed)
