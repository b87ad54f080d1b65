"""Every element of a DICOM file, decoded, with where it stands: one walk for both sides.

Collecting identifiers from the inputs and reading the outputs both walk
every element of thousands of files, so both use this module.  The walk
gives :class:`Element`\\ s: the values as text (or the bytes of an OB, OW or
UN value, a CSA header, an unknown private block), where they stand
(``(0029,1010)>item 2>(0010,0010)``), the VR, keyword, private creator and
enclosing sequence.  Pixel data, overlays, curves, waveforms and spectra are
never read.

:func:`pipeline.verify.dicom_files.file_elements` reads a file with the
fast parser of :mod:`pipeline.verify.dicom_parse` and, for a file it
declines, with pydicom (:func:`elements`): both give the same elements, which a test checks on
pydicom's own test files.  Text values are decoded with pydicom's
:func:`~pydicom.charset.decode_bytes` and the data set's Specific Character
Set (an item may set its own), so a Latin-1, UTF-8 or ISO 2022 name reads
as a person reads it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, get_private_entry, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag

from pipeline.verify.normalise import field_key

__all__ = [
    "ASCII_VRS",
    "BINARY_VRS",
    "BYTES_VRS",
    "CHARSET_VRS",
    "Element",
    "dictionary_vr",
    "elements",
    "encodings_of",
    "is_bulk",
    "is_private_creator",
    "keyword",
    "keyword_field",
    "private_field",
    "private_vr",
    "texts",
]

#: VRs whose values are in the default repertoire whatever the character set.
ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"})
#: VRs decoded with the data set's Specific Character Set.
CHARSET_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
#: VRs read as the runs of text their bytes hold.
BYTES_VRS = frozenset({"OB", "OW", "UN", "OB or OW"})
#: Binary numbers: a person reads them as numbers (sizes, counts, positions), never as text.
BINARY_VRS = frozenset(
    {"AT", "FD", "FL", "OD", "OF", "OL", "OV", "SL", "SS", "SV", "UL", "US", "UV"}
    | {"US or SS", "US or OW", "US or SS or OW", "NONE"}
)
_SINGLE_VALUED = frozenset({"LT", "ST", "UT", "UR"})
_TEXT_DELIMITERS = {0x0D, 0x0A, 0x09, 0x0C, 0x5C}
_PN_DELIMITERS = {0x5E, 0x3D, 0x5C}
_BULK = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009, 0x54001010, 0x56000020, 0xFFFCFFFC})
_DEFAULT_ENCODINGS = ("iso8859",)
# A file without preamble starts with group 0002, 0004 or 0008 (little or big endian).
DEFER_SIZE = 64 * 1024  # pydicom leaves larger values (the pixels) on disk unless read


@dataclass(frozen=True, slots=True)
class Element:
    """One element's values as text, or its bytes, and where it is.

    ``where`` is the tag path (``(0029,1010)>item 2>(0010,0010)``);
    ``sequence`` the keyword of the enclosing sequence (``""`` at the top);
    ``creator`` the private creator of a private element (``""`` otherwise);
    ``field`` the :func:`~pipeline.verify.normalise.field_key` values are
    compared under (the keyword's, or the creator's and the element's).
    """

    where: str
    tag: int
    vr: str
    keyword: str
    creator: str
    sequence: str
    values: tuple[str, ...]
    data: bytes = b""

    @property
    def field(self) -> str:
        if self.creator:
            return private_field(self.creator, self.tag & 0xFF)
        return keyword_field(self.keyword)


def is_private_creator(tag: int) -> bool:
    """(gggg,0010)-(gggg,00FF) of an odd group: the name of a private block."""
    return bool(tag >> 16 & 1) and 0x10 <= (tag & 0xFFFF) <= 0xFF


def is_bulk(tag: int) -> bool:
    """Pixel, overlay, curve, waveform or spectroscopy data, padding: never read."""
    group, element = tag >> 16, tag & 0xFFFF
    return tag in _BULK or ((group & 0xFF00) in (0x5000, 0x6000) and element == 0x3000)


def texts(value: bytes, vr: str, encodings: Sequence[str]) -> tuple[str, ...]:
    """A text value's bytes as its values (split at backslashes, padding stripped)."""
    if vr in ASCII_VRS or (value.isascii() and b"\x1b" not in value):  # ISO 2022 is 7-bit too
        text = value.decode("latin-1")
    else:
        delimiters = _PN_DELIMITERS if vr == "PN" else _TEXT_DELIMITERS
        text = decode_bytes(value, list(encodings), delimiters)
    if (
        vr == "PN"
    ):  # no empty trailing representations: "Wang^XiaoDong=王^小東=" as pydicom reads it
        text = text.rstrip("\x00 ").rstrip("=")
    return _split(text, vr)


def encodings_of(value: bytes | str | Sequence[str] | None) -> list[str]:
    """The Python encodings of a Specific Character Set value."""
    if isinstance(value, bytes):
        names = [v.strip() for v in value.decode("latin-1").rstrip("\x00 ").split("\\")]
    elif isinstance(value, str):
        names = [value]
    else:
        names = [str(v) for v in value or ()]
    try:
        return convert_encodings(names or [""])
    except (LookupError, ValueError):
        return list(_DEFAULT_ENCODINGS)


@cache
def keyword(tag: int) -> str:
    return keyword_for_tag(tag)


@cache
def keyword_field(keyword: str) -> str:
    """The field key of a public element (``patientid``)."""
    return field_key(keyword)


@cache
def private_field(creator: str, offset: int) -> str:
    """The field key of a private element: its creator's and its offset's (``acme1102``)."""
    return field_key(f"{creator}:{offset:02x}")


@cache
def dictionary_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


@cache
def private_vr(creator: str, tag: int) -> str:
    try:
        return str(get_private_entry(tag, creator)[0])
    except KeyError:
        return "UN"


# -- the pydicom walk --------------------------------------------------------------


def elements(ds: Dataset) -> Iterator[Element]:
    """Every element of a pydicom data set, its file meta first, items depth first."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        yield from _walk(meta, "", "", list(_DEFAULT_ENCODINGS))
    yield from _walk(ds, "", "", list(_DEFAULT_ENCODINGS))


def _walk(ds: Dataset, prefix: str, sequence: str, inherited: list[str]) -> Iterator[Element]:
    raw_charset = ds.get_item(0x00080005)
    encodings = encodings_of(raw_charset.value) if raw_charset is not None else inherited
    creators: dict[int, str] = {}
    for tag in sorted(ds.keys()):
        number = int(tag)
        if is_bulk(number):
            continue
        group, element = number >> 16, number & 0xFFFF
        where = f"{prefix}({group:04X},{element:04X})"
        raw = ds.get_item(tag)
        if raw is None:
            continue
        private = bool(group & 1)
        if is_private_creator(number):
            value = raw.value
            block = texts(value, "LO", encodings) if isinstance(value, bytes) else _converted(value)
            creators[group << 8 | element] = (block or ("",))[0]
            if block:
                yield Element(where, number, "LO", "", "", sequence, block)
            continue
        creator = creators.get(group << 8 | element >> 8, "") if private else ""
        vr = _vr(raw, number, creator)
        name = "" if private else keyword(number)
        if vr == "SQ" or (isinstance(raw, DataElement) and isinstance(raw.value, DicomSequence)):
            try:
                items = ds[tag].value or ()
            except Exception:  # a sequence pydicom cannot parse: read its bytes
                data = raw.value if isinstance(raw.value, bytes) else b""
                yield Element(where, number, "UN", name, creator, sequence, (), data)
                continue
            if isinstance(items, bytes):  # pydicom kept it as bytes
                yield Element(where, number, "UN", name, creator, sequence, (), items)
                continue
            for index, item in enumerate(items, start=1):
                yield from _walk(item, f"{where}>item {index}>", name, encodings)
            continue
        if vr in BINARY_VRS:
            continue
        value = _value(ds, tag, raw)
        if value is None or value == b"" or value == "":
            continue
        if vr in BYTES_VRS or (isinstance(value, bytes) and vr not in ASCII_VRS | CHARSET_VRS):
            data = value if isinstance(value, bytes) else str(value).encode("latin-1", "replace")
            yield Element(where, number, vr, name, creator, sequence, (), data)
            continue
        found = (
            texts(value, vr, encodings)
            if isinstance(value, bytes)
            else _split(value, vr)
            if isinstance(value, str)
            else _converted(value)
        )
        if found:
            yield Element(where, number, vr, name, creator, sequence, found)


def _vr(raw: RawDataElement | DataElement, tag: int, creator: str) -> str:
    """The element's VR: as written, else as the (private) dictionary knows it, else UN."""
    if raw.VR and raw.VR != "UN":
        return str(raw.VR)
    if tag >> 16 & 1:
        return private_vr(creator, tag) if creator else "UN"
    return dictionary_vr(tag)


def _value(ds: Dataset, tag: BaseTag, raw: RawDataElement | DataElement) -> object:
    """The raw bytes, or pydicom's value where the raw one was deferred or converted."""
    if isinstance(raw, RawDataElement):
        if raw.value is not None:
            return raw.value
        if raw.length == 0:
            return None
    try:
        return ds[tag].value  # deferred or converted: pydicom reads it
    except Exception:  # an undecodable value: nothing more to read
        return None


def _split(text: str, vr: str) -> tuple[str, ...]:
    text = text.rstrip("\x00 ")
    if "\\" not in text:  # one value, the common case
        text = text.strip(" \x00")
        return (text,) if text else ()
    parts = [text] if vr in _SINGLE_VALUED else text.split("\\")
    return tuple(p for p in (part.strip(" \x00") for part in parts) if p)


def _converted(value: object) -> tuple[str, ...]:
    """pydicom's value (a PersonName, a MultiValue of them) as text."""
    items: Sequence[object] = value if isinstance(value, MultiValue | list | tuple) else [value]
    return tuple(text for text in (str(item).strip() for item in items) if text)
