"""Write a de-identified dataset by copying the bytes of every element the rules left alone.

:func:`write_stream` produces the bytes ``ds.save_as(..., enforce_file_format=True)``
would, for a dataset read by :mod:`pipeline.read.dicom_stream`: the same
preamble, file meta and elements in tag order.  An element that is still the
very object the reader made (the rules kept it: most of a header, and the
pixel data) is copied from the input's bytes, which pydicom's writer would
write back unchanged; every other element (changed, added, decoded on the
way) is encoded by pydicom's own ``write_data_element``, as ``save_as`` does.
Where ``save_as`` would re-encode the whole data set (another transfer
syntax, another character set) or reject it, :func:`write_stream` returns
None and the caller uses ``save_as``.
"""

from __future__ import annotations

import struct

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_sequence_item
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import AMBIGUOUS_VR, EXPLICIT_VR_LENGTH_32

from pipeline.read.dicom_stream import StreamRead
from pipeline.read.peek import peek_value, tag_object

__all__ = ["Pieces", "encode_element", "write_stream", "write_stream_pieces"]

#: A file's bytes as the pieces to write one after the other: the runs of
#: input bytes copied (views of the file read, never copied in memory) and
#: the elements encoded anew.
Pieces = list[bytes | memoryview]

_PIXEL_DATA = tag_object(0x7FE00010)
_SOP_UIDS = ((0x00020002, tag_object(0x00080016), "SOPClassUID"),
             (0x00020003, tag_object(0x00080018), "SOPInstanceUID"))  # fmt: skip
_META_KEYS = frozenset(
    {0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013}
)  # what rebuild_file_meta writes; anything else goes through pydicom
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)
_ITEM_HEADER = struct.Struct("<HHI")
_ITEM_DELIMITER = _ITEM_HEADER.pack(0xFFFE, 0xE00D, 0)
_SEQUENCE_DELIMITER = _ITEM_HEADER.pack(0xFFFE, 0xE0DD, 0)


def write_stream(ds: Dataset, read: StreamRead) -> bytes | None:
    """The bytes of ``ds`` as a DICOM file, or None where only ``save_as`` may write it."""
    pieces = write_stream_pieces(ds, read)
    return None if pieces is None else b"".join(pieces)


def write_stream_pieces(ds: Dataset, read: StreamRead) -> Pieces | None:
    """:func:`write_stream`'s bytes as pieces, for a writer and a hash that take them in turn.

    Joining them would copy the pixel data once more (a 6 MB radiograph:
    a few milliseconds, as much as pydicom's whole read of it).
    """
    meta = getattr(ds, "file_meta", None)
    if meta is None or set(meta._dict) != _META_KEYS:
        return None
    syntax = UID(str(meta.TransferSyntaxUID))
    if syntax != read.syntax or ds.original_encoding != (read.implicit, True):
        return None
    elements = ds._dict  # what pydicom's own writer iterates (dcmwrite reads it too)
    if any(tag >> 16 in (0, 2) for tag in elements):
        return None  # save_as refuses these; let it say so
    # save_as marks the pixel data's length (decoding it); mirror that only
    # where the bytes read cannot be written back as they are.
    pixels = elements.get(_PIXEL_DATA)
    if pixels is not None and not _pixels_copyable(pixels, read, syntax.is_compressed):
        ds["PixelData"].is_undefined_length = syntax.is_compressed
    # write_dataset reads the character set before writing (decoding it).
    encoding = ds.get("SpecificCharacterSet", "iso8859")
    if ds.original_character_set != ds._character_set:
        return None  # save_as would re-encode every text element
    head = _meta_bytes(ds, meta)
    data = memoryview(read.data)
    spans, originals = read.spans, read.originals
    pieces: Pieces = [ds.preamble or b"\0" * 128, b"DICM", head]
    run_start = run_end = -1
    out = _Pieces(pieces, read.implicit)
    for tag in sorted(elements, key=int):  # as integers: BaseTag's own __lt__ is Python
        if tag & 0xFFFF == 0 and tag >> 16 > 6:
            continue  # retired group lengths are never written
        element = elements[tag]
        span = spans.get(tag)
        if span is not None and element is originals.get(tag):
            if span[0] == run_end:
                run_end = span[1]
            else:
                if run_end >= 0:
                    out.add(data[run_start:run_end])
                run_start, run_end = span
            continue
        if run_end >= 0:
            out.add(data[run_start:run_end])
            run_start = run_end = -1
        out.element(element, encoding)
    if run_end >= 0:
        out.add(data[run_start:run_end])
    return out.close()


def encode_element(
    element: RawDataElement | DataElement, implicit: bool, encoding: object
) -> bytes:
    """One element as ``write_data_element`` writes it, little endian (see :class:`_Pieces`)."""
    out = _Pieces([], implicit)
    out.element(element, encoding)
    return b"".join(out.close())


class _Pieces:
    """The output as a list of byte strings, with pydicom's writer for what must be encoded.

    :meth:`element` writes one element as ``write_data_element`` would: a raw
    element of defined length as its header and bytes, a sequence item by
    item (the raw elements inside copied the same way), anything else by
    ``write_data_element`` itself.  An item that pydicom would re-encode
    whole (another encoding or character set than it was read in) is written
    by pydicom's ``write_sequence_item``.
    """

    def __init__(self, pieces: Pieces, implicit: bool) -> None:
        self.pieces = pieces
        self.implicit = implicit
        self._encoder: DicomBytesIO | None = None

    def add(self, data: bytes | memoryview) -> None:
        if self._encoder is not None:
            self.pieces.append(self._encoder.getvalue())
            self._encoder = None
        self.pieces.append(data)

    def encoder(self) -> DicomBytesIO:
        if self._encoder is None:
            self._encoder = DicomBytesIO()
            self._encoder.is_little_endian = True
            self._encoder.is_implicit_VR = self.implicit
        return self._encoder

    def close(self) -> Pieces:
        if self._encoder is not None:
            self.pieces.append(self._encoder.getvalue())
            self._encoder = None
        return self.pieces

    def element(self, element: RawDataElement | DataElement, encoding: object) -> None:
        if isinstance(element, RawDataElement):
            if element.value is not None:
                header = _raw_header(element, self.implicit)
                if header is not None:
                    self.add(header)
                    self.add(element.value)
                    return
        elif element.VR == "SQ" and not isinstance(element.value, bytes):
            body = self._sequence_body(element, encoding)
            if body is not None:
                self.add(_sequence_header(int(element.tag), body, element, self.implicit))
                self.pieces += body
                if element.is_undefined_length:
                    self.add(_SEQUENCE_DELIMITER)
                return
        write_data_element(self.encoder(), element, encoding)  # type: ignore[arg-type]

    def _sequence_body(
        self, element: DataElement, encoding: object
    ) -> list[bytes | memoryview] | None:
        """The items' bytes, or None where only pydicom may write the sequence."""
        encodings = convert_encodings(encoding or [default_encoding])  # type: ignore[arg-type]
        body = _Pieces([], self.implicit)
        for item in element.value:
            if not isinstance(item, Dataset):
                return None
            if (
                (self.implicit, True) != item.original_encoding
                or item.original_character_set != item._character_set
            ) and not _decoded_plainly(item):
                # pydicom re-encodes such an item whole (correcting ambiguous VRs too)
                write_sequence_item(body.encoder(), item, encodings)
                continue
            item_encoding = item.get("SpecificCharacterSet", encodings)
            inner = _Pieces([], self.implicit)
            for tag in sorted(item._dict, key=int):
                if tag & 0xFFFF == 0 and tag >> 16 > 6:
                    continue
                inner.element(item._dict[tag], item_encoding)
            content = inner.close()
            undefined = bool(getattr(item, "is_undefined_length_sequence_item", False))
            size = _UNDEFINED if undefined else sum(len(p) for p in content)
            body.add(_ITEM_HEADER.pack(0xFFFE, 0xE000, size))
            body.pieces += content
            if undefined:
                body.add(_ITEM_DELIMITER)
        return body.close()


def _decoded_plainly(item: Dataset) -> bool:
    """Whether re-encoding ``item`` whole writes what writing it element by element does.

    True for an item made here (the method codes): no raw element to decode
    and no ambiguous VR to correct, at any depth.
    """
    for element in item._dict.values():
        if isinstance(element, RawDataElement) or element.VR in AMBIGUOUS_VR:
            return False
        if element.VR == "SQ" and not all(
            isinstance(inner, Dataset) and _decoded_plainly(inner) for inner in element.value
        ):
            return False
    return True


def _sequence_header(
    tag: int, body: list[bytes | memoryview], element: DataElement, implicit: bool
) -> bytes:
    size = _UNDEFINED if element.is_undefined_length else sum(len(p) for p in body)
    if implicit:
        return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, size)
    return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, b"SQ", 0, size)


def _raw_header(element: RawDataElement, implicit: bool) -> bytes | None:
    """The header write_data_element gives a raw element of defined length, or None.

    A raw element (one the rules wrote as ASCII bytes) is written as its
    bytes behind its tag, VR and the value's own length; anything less plain
    (undefined length, a VR this writer does not spell, a short-VR value over
    64 KiB, which pydicom rewrites as UN) is left to pydicom.
    """
    value = element.value
    if element.length == _UNDEFINED or not isinstance(value, bytes):
        return None
    tag, size = int(element.tag), len(value)
    if implicit:
        return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, size)
    vr = element.VR
    if not isinstance(vr, str) or len(vr) != 2:
        return None
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr.encode(), 0, size)
    if size > 0xFFFF:
        return None
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), size)


def _pixels_copyable(
    element: RawDataElement | DataElement, read: StreamRead, compressed: bool
) -> bool:
    """Whether save_as would write the pixel data read exactly as it was read."""
    if not isinstance(element, RawDataElement) or element is not read.originals.get(_PIXEL_DATA):
        return False
    if compressed:
        return element.length == _UNDEFINED
    if element.length == _UNDEFINED or element.length % 2:
        return False  # save_as would write a defined, padded length
    return read.implicit or element.VR in ("OB", "OW")


def _meta_bytes(ds: Dataset, meta: Dataset) -> bytes:
    """The file meta group as ``write_file_meta_info(enforce_standard=True)`` writes it."""
    values = {tag: str(meta._dict[BaseTag(tag)].value) for tag in _META_KEYS}
    # dcmwrite takes the SOP class and instance from the data set where they differ.
    for meta_tag, sop_tag, keyword in _SOP_UIDS:
        own = peek_value(ds, keyword)
        if own and str(own) != values[meta_tag]:
            values[meta_tag] = str(own)
        _as_dcmwrite_leaves(ds, sop_tag)
    body = _element(0x00020001, b"OB", b"\0\1")
    for tag in (0x00020002, 0x00020003, 0x00020010, 0x00020012):
        body += _element(tag, b"UI", _padded(values[tag], b"\0"))
    body += _element(0x00020013, b"SH", _padded(values[0x00020013], b" "))
    return _element(0x00020000, b"UL", struct.pack("<I", len(body))) + body


def _as_dcmwrite_leaves(ds: Dataset, tag: BaseTag) -> None:
    """Decode a UID in place where dcmwrite's reading it would change the bytes written.

    dcmwrite decodes the SOP class and instance UIDs (it compares them with
    the file meta), and writes them encoded again: a raw value already in that
    form (no trailing space, NUL-padded to even length) is copied as it is.
    """
    raw = ds._dict.get(tag)
    if raw is None or raw.__class__ is not RawDataElement:
        return
    data = raw.value
    if raw.VR in ("UI", None) and isinstance(data, bytes) and data.isascii() and b"\\" not in data:
        text = data.rstrip(b" \0")
        if text and text + b"\0" * (len(text) % 2) == data:
            return
    ds[tag]


def _padded(text: str, pad: bytes) -> bytes:
    data = text.encode("iso8859")
    return data + pad if len(data) % 2 else data


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    group, number = tag >> 16, tag & 0xFFFF
    if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"):
        return struct.pack("<HH2sHI", group, number, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, number, vr, len(value)) + value
