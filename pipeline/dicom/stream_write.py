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

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from pipeline.read.dicom_stream import StreamRead

__all__ = ["write_stream"]

_PIXEL_DATA = 0x7FE00010
_META_KEYS = frozenset(
    {0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013}
)  # what rebuild_file_meta writes; anything else goes through pydicom
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)


def write_stream(ds: Dataset, read: StreamRead) -> bytes | None:
    """The bytes of ``ds`` as a DICOM file, or None where only ``save_as`` may write it."""
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
    pixels = elements.get(BaseTag(_PIXEL_DATA))
    if pixels is not None and not _pixels_copyable(pixels, read, syntax.is_compressed):
        ds["PixelData"].is_undefined_length = syntax.is_compressed
    # write_dataset reads the character set before writing (decoding it).
    encoding = ds.get("SpecificCharacterSet", "iso8859")
    if ds.original_character_set != ds._character_set:
        return None  # save_as would re-encode every text element
    head = _meta_bytes(ds, meta)
    data = memoryview(read.data)
    spans, originals = read.spans, read.originals
    pieces: list[bytes | memoryview] = [ds.preamble or b"\0" * 128, b"DICM", head]
    run_start = run_end = -1
    encoder: DicomBytesIO | None = None
    for tag in sorted(elements):
        if tag & 0xFFFF == 0 and tag >> 16 > 6:
            continue  # retired group lengths are never written
        element = elements[tag]
        span = spans.get(tag)
        if span is not None and element is originals.get(tag):
            if encoder is not None:
                pieces.append(encoder.getvalue())
                encoder = None
            if span[0] == run_end:
                run_end = span[1]
            else:
                if run_end >= 0:
                    pieces.append(data[run_start:run_end])
                run_start, run_end = span
            continue
        if run_end >= 0:
            pieces.append(data[run_start:run_end])
            run_start = run_end = -1
        if isinstance(element, RawDataElement) and element.value is not None:
            header = _raw_header(element, read.implicit)
            if header is not None:
                if encoder is not None:
                    pieces.append(encoder.getvalue())
                    encoder = None
                pieces += (header, element.value)
                continue
        if encoder is None:
            encoder = DicomBytesIO()
            encoder.is_little_endian = True
            encoder.is_implicit_VR = read.implicit
        write_data_element(encoder, ds.get_item(tag), encoding)
    if run_end >= 0:
        pieces.append(data[run_start:run_end])
    if encoder is not None:
        pieces.append(encoder.getvalue())
    return b"".join(pieces)


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
    for meta_tag, keyword in ((0x00020002, "SOPClassUID"), (0x00020003, "SOPInstanceUID")):
        own = ds.get(keyword)
        if own and str(own) != values[meta_tag]:
            values[meta_tag] = str(own)
    body = _element(0x00020001, b"OB", b"\0\1")
    for tag in (0x00020002, 0x00020003, 0x00020010, 0x00020012):
        body += _element(tag, b"UI", _padded(values[tag], b"\0"))
    body += _element(0x00020013, b"SH", _padded(values[0x00020013], b" "))
    return _element(0x00020000, b"UL", struct.pack("<I", len(body))) + body


def _padded(text: str, pad: bytes) -> bytes:
    data = text.encode("iso8859")
    return data + pad if len(data) % 2 else data


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    group, number = tag >> 16, tag & 0xFFFF
    if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"):
        return struct.pack("<HH2sHI", group, number, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, number, vr, len(value)) + value
