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
"""

from __future__ import annotations

from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.valuerep import AMBIGUOUS_VR

__all__ = ["elements_in_order", "peek", "peek_value"]

_SPECIFIC_CHARACTER_SET = 0x00080005
_KEYWORD_TAGS: dict[str, int | None] = {}
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
    tag = _KEYWORD_TAGS.get(keyword, -1)
    if tag == -1:
        tag = _KEYWORD_TAGS[keyword] = tag_for_keyword(keyword)
    if tag is None:
        return ds.get(keyword, default)
    element = peek(ds, tag)
    return default if element is None else element.value
