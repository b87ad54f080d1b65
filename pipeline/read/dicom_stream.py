"""Read a DICOM file's top level straight from its bytes, remembering where each element lies.

De-identification touches a few dozen header elements of a file whose
bytes are mostly pixel data.  pydicom's reader walks every element through
a generator and a file object; this reader walks the top level of the
common encodings (explicit and implicit VR little endian, and the
encapsulated syntaxes, whose data set is explicit VR little endian) over
the bytes themselves and builds *the same* :class:`~pydicom.dataset.FileDataset`
pydicom would: the same :class:`~pydicom.dataelem.RawDataElement` per element
(tag, VR, length, value, position, encoding), sequences of defined length
left raw, sequences of undefined length read by pydicom's own
``read_sequence``, the same file meta, the same original encoding.  The rules
then run on it unchanged, and :mod:`pipeline.dicom.stream_write` copies every
element they did not touch back as the bytes it was read from.

Anything this reader is not sure of (no preamble, big endian, deflate, a
command group, a VR it does not know, a value or a sequence that runs past
the end, a data set whose first element contradicts its transfer syntax)
makes it decline with a :class:`Decline` reason, and the caller reads the
file with pydicom (:func:`pipeline.read.dicom.read_dicom`) instead: it may
decline a file, never read it differently.
"""

from __future__ import annotations

import enum
import io
import struct
import warnings
from dataclasses import dataclass

from pydicom.charset import convert_encodings
from pydicom.datadict import _dictionary_vr_fast
from pydicom.dataelem import (
    DataElement,
    RawDataElement,
    convert_raw_data_element,
    empty_value_for_VR,
)
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filereader import _read_file_meta_info, read_sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR
from pydicom.values import convert_string

from pipeline.read.dicom import check_dataset
from pipeline.read.peek import TAGS_MAX, shared_tags, tag_object

__all__ = ["Decline", "StreamRead", "read_dicom_stream"]

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
# Syntaxes whose data set is explicit VR little endian and whose pixel data
# is encapsulated (undefined length, items): PS3.5 A.4.
_ENCAPSULATED_PREFIXES = ("1.2.840.10008.1.2.4.", "1.2.840.10008.1.2.5")
_ENCAPSULATED_EXTRA = frozenset({"1.2.840.10008.1.2.1.98"})  # Encapsulated Uncompressed
_DEFLATED = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"})
_VRS = {vr.value.encode(): vr.value for vr in VR if len(vr.value) == 2}
_LONG = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)
_HEADER = struct.Struct("<HHI")  # implicit VR: tag, 4-byte length
_EXPLICIT = struct.Struct("<HH2sH")  # explicit VR: tag, VR, 2-byte length
_U32 = struct.Struct("<I")
_ITEM = 0xFFFEE000
_SEQUENCE_END = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_SPECIFIC_CHARACTER_SET = 0x00080005
_DEFAULT_ENCODING = "iso8859"
# The data set is keyed by the shared tag objects of pipeline.read.peek.tag_object.
# (is_raw, is_buffered): what the named tuple's __new__ fills in
_RAW: tuple[bool, bool] = RawDataElement.__new__.__defaults__  # type: ignore[assignment]
_new_raw = tuple.__new__


class Decline(enum.Enum):
    """Why a file is read by pydicom rather than by the byte-stream reader (PHI-free)."""

    NO_PREAMBLE = "no 128-byte preamble"
    NO_META = "no file meta"
    SYNTAX = "transfer syntax not read as a stream (big endian, private, none)"
    DEFLATED = "deflated data set"
    ENCODING_MISMATCH = "data set encoded otherwise than its transfer syntax says"
    UNKNOWN_VR = "a VR the stream reader does not know"
    CUT_SHORT = "an element or sequence runs past the end of the file"
    COMMAND_GROUP = "a command group or a file meta element inside the data set"
    ODD_ENCODING = "an element header pydicom would write back differently"
    EMPTY = "no data set after the file meta"


class _Declined(Exception):
    def __init__(self, why: Decline) -> None:
        super().__init__(why.value)
        self.why = why


@dataclass(frozen=True)
class StreamRead:
    """A dataset read from ``data`` and, per top-level tag, the bytes it was read from.

    ``spans`` holds only the elements pydicom's writer would write back as
    exactly those bytes; ``originals`` the element objects as read, so the
    writer can tell an untouched element (the same object) from a changed one.
    """

    dataset: FileDataset
    data: bytes
    implicit: bool
    syntax: str
    spans: dict[int, tuple[int, int]]
    originals: dict[int, RawDataElement | DataElement]


def stream_syntax(syntax: str) -> Decline | None:
    """None when the byte-stream reader reads this transfer syntax, else why not."""
    if syntax in (EXPLICIT_LE, IMPLICIT_LE) or syntax in _ENCAPSULATED_EXTRA:
        return None
    if syntax in _DEFLATED:
        return Decline.DEFLATED
    if syntax.startswith(_ENCAPSULATED_PREFIXES):
        return None
    return Decline.SYNTAX


def read_dicom_stream(data: bytes, label: str) -> StreamRead | Decline:
    """The file read as pydicom would read it, with its spans; or why this reader declines it.

    Raises
    ------
    UnreadableInput, ImageWithoutPixels
        The file parsed, but is not one that may be de-identified (the same
        checks, and messages, as :func:`pipeline.read.dicom.read_dicom`).
    """
    if len(data) < 140 or data[128:132] != b"DICM":
        return Decline.NO_PREAMBLE
    try:
        return _read(data, label)
    except _Declined as declined:
        return declined.why


def _read(data: bytes, label: str) -> StreamRead:
    stream = io.BytesIO(data)
    stream.seek(132)
    if data[132:134] != b"\x02\x00":
        raise _Declined(Decline.NO_META)
    plain = _plain_meta(data)
    if plain is not None:
        meta, pos = plain
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a meta pydicom only warns about is not ours to read
            try:
                meta = _read_file_meta_info(stream)
            except Exception:
                raise _Declined(Decline.NO_META) from None
        pos = stream.tell()
    syntax = str(meta.get("TransferSyntaxUID", "") or "")
    why = stream_syntax(syntax)
    if why is not None:
        raise _Declined(why)
    implicit = syntax == IMPLICIT_LE
    if pos + 8 > len(data):
        raise _Declined(Decline.EMPTY)
    first_vr = data[pos + 4 : pos + 6]
    looks_implicit = not (0x40 < first_vr[0] < 0x5B and 0x40 < first_vr[1] < 0x5B)
    if looks_implicit != implicit:
        raise _Declined(Decline.ENCODING_MISMATCH)  # pydicom would switch, with a warning
    elements, spans = _walk(data, pos, implicit, stream)
    # The objects as read, before anything decodes an element in place.
    # (Keyed by the data set's own tag objects: see tag_object.)
    originals: dict[int, RawDataElement | DataElement] = dict(elements)  # type: ignore[arg-type]
    # What pydicom's read_dataset and read_partial do with what they read.
    dataset = Dataset(elements, parent_encoding=_DEFAULT_ENCODING)
    charset = elements.get(tag_object(_SPECIFIC_CHARACTER_SET))
    encodings: str | list[str] = _DEFAULT_ENCODING
    if isinstance(charset, RawDataElement):
        encodings = convert_encodings(convert_raw_data_element(charset).value)
    dataset.set_original_encoding(implicit, True, encodings)
    ds = FileDataset(stream, dataset, data[:128], meta, implicit, True)
    ds.set_original_encoding(implicit, True, dataset._character_set)
    check_dataset(ds, label, values_whole=True)  # _walk refused every value cut short
    return StreamRead(ds, data, implicit, syntax, spans, originals)


def _plain_meta(data: bytes) -> tuple[FileMetaDataset, int] | None:
    """The file meta group read as pydicom reads a plain one, and where the data set starts.

    Explicit VR little endian elements of group 0002, in ascending order, of
    defined length, none a sequence nor UN: the same raw elements pydicom's
    ``_read_file_meta_info`` makes (of which the step reads the transfer
    syntax and the SOP class, and then writes a meta of its own).  None for
    anything else, which pydicom's reader then reads.
    """
    elements: dict[BaseTag, RawDataElement | DataElement] = {}
    pos, end, last = 132, len(data), -1
    unpack_explicit, unpack_u32, new_raw = _EXPLICIT.unpack_from, _U32.unpack_from, _new_raw
    while pos + 8 <= end:
        group, number, raw_vr, length = unpack_explicit(data, pos)
        if group != 0x0002:
            break
        vr = _VRS.get(raw_vr)
        if vr is None or vr in ("SQ", "UN") or number <= last:
            return None
        last = number
        at = pos + 8
        if vr in _LONG:
            if at + 4 > end:
                return None
            length = unpack_u32(data, at)[0]
            at += 4
        if length == _UNDEFINED or at + length > end:
            return None
        tag = tag_object(0x00020000 | number)
        value = data[at : at + length] if length else _empty(vr)
        elements[tag] = new_raw(RawDataElement, (tag, vr, length, value, at, False, True, *_RAW))
        pos = at + length
    if not elements:
        return None
    meta = FileMetaDataset(elements)
    meta.set_original_encoding(False, True, _DEFAULT_ENCODING)
    return meta, pos


def _walk(
    data: bytes, pos: int, implicit: bool, stream: io.BytesIO
) -> tuple[dict[BaseTag, RawDataElement | DataElement], dict[int, tuple[int, int]]]:
    """Every top-level element from ``pos`` to the end, as pydicom's generator yields them."""
    elements: dict[BaseTag, RawDataElement | DataElement] = {}
    spans: dict[int, tuple[int, int]] = {}
    end = len(data)
    vrs, long_vrs = _VRS, _LONG
    unpack_header, unpack_explicit, unpack_u32 = (
        _HEADER.unpack_from, _EXPLICIT.unpack_from, _U32.unpack_from,
    )  # fmt: skip
    encoding: str | list[str] = _DEFAULT_ENCODING  # for the items of undefined-length sequences
    tags, new_raw, raw_type = shared_tags(), _new_raw, RawDataElement
    if len(tags) >= TAGS_MAX:
        tags.clear()
    last = -1
    while pos < end:
        start = pos
        if pos + 8 > end:
            raise _Declined(Decline.CUT_SHORT)
        copyable = True
        vr: str | None
        if implicit:
            group, number, length = unpack_header(data, pos)
            vr = None
            pos += 8
        else:
            group, number, raw_vr, length = unpack_explicit(data, pos)
            vr = vrs.get(raw_vr)
            if vr is None:
                raise _Declined(Decline.UNKNOWN_VR)
            pos += 8
            if vr in long_vrs:
                if pos + 4 > end:
                    raise _Declined(Decline.CUT_SHORT)
                if length != 0:
                    copyable = False  # reserved bytes pydicom writes as zero
                length = unpack_u32(data, pos)[0]
                pos += 4
        tag = group << 16 | number
        if group in (0x0000, 0x0002) or tag <= last or group == 0xFFFE:
            raise _Declined(Decline.COMMAND_GROUP)
        last = tag
        key = tags.get(tag)
        if key is None:
            key = tags[tag] = BaseTag(tag)
        value_tell = pos
        if length != _UNDEFINED:
            value_end = pos + length
            if value_end > end:
                raise _Declined(Decline.CUT_SHORT)
            value = data[pos:value_end] if length else _empty(vr)
            pos = value_end
            if tag == _SPECIFIC_CHARACTER_SET:
                encoding = convert_encodings(convert_string(value or b"", True))
            # RawDataElement(...) without its Python-level __new__: the same tuple.
            elements[key] = new_raw(
                raw_type, (key, vr, length, value, value_tell, implicit, True, *_RAW)
            )
        else:
            if vr == "UN":
                vr = "SQ"  # PS3.5 6.2.2, and pydicom's infer_sq_for_un_vr
            if vr is None:
                try:
                    vr = _dictionary_vr_fast(tag)
                except KeyError:
                    if pos + 4 <= end and _HEADER.unpack_from(data, pos)[:2] == (0xFFFE, 0xE000):
                        vr = "SQ"
            if vr == "SQ":
                pos, element = _undefined_sequence(stream, pos, key, implicit, encoding)
                elements[key] = element
                copyable = False  # pydicom writes it from the parsed items
            else:
                pos, value, delimiter_zero = _undefined_value(data, pos)
                copyable = copyable and delimiter_zero
                elements[key] = RawDataElement(key, vr, length, value, value_tell, implicit, True)
        if copyable:
            spans[key] = (start, pos)
    if not elements:
        raise _Declined(Decline.EMPTY)
    return elements, spans


def _empty(vr: str | None) -> bytes | None:
    """A zero-length value as pydicom's reader stores it (``b""``, or None where configured)."""
    value = empty_value_for_VR(vr, raw=True)
    return value if isinstance(value, bytes) else None


def _undefined_sequence(
    stream: io.BytesIO, pos: int, tag: int, implicit: bool, encodings: str | list[str]
) -> tuple[int, DataElement]:
    """A sequence of undefined length, read by pydicom's own ``read_sequence``."""
    stream.seek(pos)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            sequence = read_sequence(stream, implicit, True, _UNDEFINED, encodings)
        except Exception:
            raise _Declined(Decline.CUT_SHORT) from None
    if not sequence.is_undefined_length:
        raise _Declined(Decline.CUT_SHORT)
    element = DataElement(tag_object(tag), "SQ", sequence, pos, is_undefined_length=True)
    return stream.tell(), element


def _undefined_value(data: bytes, pos: int) -> tuple[int, bytes, bool]:
    """Encapsulated pixel data: its items, up to the sequence delimiter.

    pydicom stops at the first delimiter *bytes*; the items are walked here,
    and a file where the two disagree (a fragment holding those bytes) is declined.
    """
    end, at = len(data), pos
    while True:
        if at + 8 > end:
            raise _Declined(Decline.CUT_SHORT)
        group, number, length = _HEADER.unpack_from(data, at)
        tag = group << 16 | number
        if tag == _SEQUENCE_END:
            break
        if tag != _ITEM or length == _UNDEFINED or at + 8 + length > end:
            raise _Declined(Decline.CUT_SHORT)
        at += 8 + length
    if data.find(b"\xfe\xff\xdd\xe0", pos) != at:
        raise _Declined(Decline.ODD_ENCODING)
    return at + 8, data[pos:at], data[at + 4 : at + 8] == b"\0\0\0\0"
