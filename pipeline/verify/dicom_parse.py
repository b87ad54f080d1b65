"""A DICOM file's elements straight from its bytes: the fast path of the walk.

The leak check reads every element of thousands of files; building
pydicom's :class:`~pydicom.dataset.Dataset` for each costs several times
more than de-identifying asks of the whole check.  This parser reads the
encodings almost every file uses (explicit and implicit VR little endian,
deflated, every compressed syntax), sequences of defined and undefined
length, UN sequences (implicit VR inside), encapsulated pixel data (skipped
item by item), and gives the same :class:`~pipeline.verify.dicom_elements.Element`\\ s
as the pydicom walk.  Anything else (big endian, a length that runs past the
end, a VR that is not one) raises :class:`NotFast`, and the caller reads the
file with pydicom instead: the fast path may decline a file, never misread it.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Container
from functools import cache
from pathlib import Path

from pipeline.verify.dicom_elements import (
    ASCII_VRS,
    BINARY_VRS,
    BYTES_VRS,
    Element,
    dictionary_vr,
    encodings_of,
    is_bulk,
    keyword,
    private_vr,
    texts,
)

__all__ = ["NotFast", "parse_file"]

_IMPLICIT = "1.2.840.10008.1.2"
# Deflated Explicit VR Little Endian, JPIP Referenced Deflate: the data set is deflated.
_DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95")
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
# VRs with a 4-byte length in explicit VR (PS3.5 7.1.2); the others have 2 bytes.
_LONG_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
)
_VR_NAMES = {
    vr.encode(): vr
    for vr in _LONG_VRS
    | {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "PN", "SH"}
    | {"SL", "SS", "ST", "TM", "UI", "UL", "US"}
}
_LATIN1 = ["iso8859"]
_NUMBER_VRS = frozenset({"IS", "DS", "TM"})
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_MMAP_FROM = 4 * 2**20  # larger files are mapped, so the pixels are never read


class NotFast(Exception):
    """The fast path does not read this file; pydicom will.

    ``truncated``: the file ends inside an element (its bytes are cut short).
    """

    def __init__(self, reason: str, *, truncated: bool = False) -> None:
        super().__init__(reason)
        self.truncated = truncated


def parse_file(path: Path, numbers: Container[str] | None = None) -> list[Element]:
    """Every element of the DICOM file at ``path`` (file meta first), or :class:`NotFast`.

    ``numbers``: read the IS, DS and TM values of public elements only for
    these keywords; ``None`` reads them all.  The check compares a
    measurement only where an identifier came from a field of that name, and
    measurements are a third of a header.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size >= _MMAP_FROM:
            with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
                return _Parser(mapped, numbers).run()
        with os.fdopen(os.dup(fd), "rb") as fh:
            return _Parser(fh.read(), numbers).run()
    finally:
        os.close(fd)


@cache
def _tag_info(tag: int) -> tuple[str, str, str, bool]:
    """(``(gggg,eeee)``, keyword, dictionary VR, bulk) of a tag, looked up once per run."""
    group, number = tag >> 16, tag & 0xFFFF
    private = bool(group & 1)
    return (
        f"({group:04X},{number:04X})",
        "" if private else keyword(tag),
        "" if private else dictionary_vr(tag),
        is_bulk(tag),
    )


class _Parser:
    def __init__(self, data: bytes | mmap.mmap, numbers: Container[str] | None = None) -> None:
        self.data = data
        self.out: list[Element] = []
        self.numbers = numbers

    def run(self) -> list[Element]:
        data = self.data
        if len(data) >= 132 and data[128:132] == b"DICM":
            pos = 132
        elif len(data) >= 8 and _TAG.unpack_from(data, 0)[0] in (0x0002, 0x0008):
            pos = 0  # no preamble: an old export, or a data set without file meta
        else:
            raise NotFast("no preamble and no recognisable first element")
        syntax = ""
        if len(data) >= pos + 8 and _TAG.unpack_from(data, pos)[0] == 0x0002:
            pos, syntax = self.meta(pos)
        if syntax == _BIG_ENDIAN:
            raise NotFast("big endian")
        implicit = syntax == _IMPLICIT or (not syntax and not _explicit_at(data, pos))
        if syntax in _DEFLATED:
            try:
                self.data = zlib.decompress(data[pos:], -zlib.MAX_WBITS)
            except zlib.error:
                raise NotFast("deflated data that does not inflate") from None
            pos = 0
        self.dataset(pos, len(self.data), implicit, "", "", _LATIN1, top=True)
        return self.out

    def meta(self, pos: int) -> tuple[int, str]:
        """Group 0002, always explicit VR little endian; returns (end, transfer syntax)."""
        start = len(self.out)
        end = self.dataset(pos, len(self.data), False, "", "", _LATIN1, meta=True)
        found = (e.values[0] for e in self.out[start:] if e.tag == 0x00020010 and e.values)
        return end, next(found, "")

    def dataset(
        self,
        pos: int,
        end: int,
        implicit: bool,
        prefix: str,
        sequence: str,
        encodings: list[str],
        *,
        meta: bool = False,
        top: bool = False,
    ) -> int:
        """Read elements from ``pos`` to ``end`` (or an item delimiter); returns where it stopped."""
        data, out = self.data, self.out
        unpack_tag, unpack_u16, unpack_u32 = _TAG.unpack_from, _U16.unpack_from, _U32.unpack_from
        long_vrs, vr_names, binary, byte_vrs = _LONG_VRS, _VR_NAMES, BINARY_VRS, BYTES_VRS
        ascii_vrs, numbers = ASCII_VRS, self.numbers
        info_of = _tag_info
        creators: dict[int, str] = {}
        while pos < end:
            if pos + 8 > end:
                raise _cut_short("an element header runs past the end")
            group, number = unpack_tag(data, pos)
            tag = group << 16 | number
            if meta and group != 0x0002:
                return pos
            if tag == _ITEM_END:
                return pos + 8
            if implicit:
                vr = ""
                length = unpack_u32(data, pos + 4)[0]
                pos += 8
            else:
                vr = vr_names.get(data[pos + 4 : pos + 6], "")
                if not vr:
                    raise NotFast("not a VR")
                if vr in long_vrs:
                    if pos + 12 > end:
                        raise _cut_short("an element header runs past the end")
                    length = unpack_u32(data, pos + 8)[0]
                    pos += 12
                else:
                    length = unpack_u16(data, pos + 6)[0]
                    pos += 8
            written_un = vr == "UN"
            text, name, known, bulk = info_of(tag)
            creator = ""
            if group & 1:
                creator = creators.get(group << 8 | number >> 8, "")
                if not vr or written_un:
                    vr = private_vr(creator, tag) if creator else "UN"
            elif not vr or written_un:
                vr = known
            if length == _UNDEFINED:
                if bulk:
                    pos = self.skip_fragments(pos, end)
                    continue
                # A sequence; a UN of undefined length holds one in implicit VR.
                inner = implicit or written_un or vr != "SQ"
                pos = self.items(pos, end, True, inner, prefix + text, name, encodings)
                continue
            value_end = pos + length
            if value_end > end:
                raise _cut_short("a value runs past the end")
            if vr == "SQ":
                self.items(
                    pos, value_end, False, implicit or written_un, prefix + text, name, encodings
                )
                pos = value_end
                continue
            if length == 0 or bulk or vr in binary:
                pos = value_end
                continue
            if numbers is not None and vr in _NUMBER_VRS and name and name not in numbers:
                pos = value_end
                continue
            value = data[pos:value_end]
            pos = value_end
            if group & 1 and number <= 0xFF and number >= 0x10:
                creator_name = texts(value, "LO", encodings)
                creators[group << 8 | number] = creator_name[0] if creator_name else ""
                if creator_name:
                    out.append(Element(prefix + text, tag, "LO", "", "", sequence, creator_name))
                continue
            if tag == 0x00080005 and not meta:
                encodings = encodings_of(value)
            if vr in byte_vrs:
                out.append(Element(prefix + text, tag, vr, name, creator, sequence, (), value))
                continue
            if vr in ascii_vrs or (vr != "PN" and value.isascii() and 27 not in value):
                # The common case inline: one value in the default repertoire.
                decoded = value.decode("latin-1").strip(" \x00")
                if "\\" in decoded:
                    found = texts(value, vr, encodings)
                elif decoded:
                    found = (decoded,)
                else:
                    continue
            else:
                found = texts(value, vr, encodings)
            if found:
                out.append(Element(prefix + text, tag, vr, name, creator, sequence, found))
        if not top and not meta and pos > end:
            raise NotFast("an item runs past its sequence")
        return pos

    def items(
        self,
        pos: int,
        end: int,
        undefined: bool,
        implicit: bool,
        where: str,
        sequence: str,
        encodings: list[str],
    ) -> int:
        """Read a sequence's items; returns the position after the sequence."""
        data, index = self.data, 0
        while pos < end:
            if pos + 8 > end:
                raise _cut_short("an item header runs past the end")
            group, number = _TAG.unpack_from(data, pos)
            tag = group << 16 | number
            length = _U32.unpack_from(data, pos + 4)[0]
            pos += 8
            if tag == _SEQUENCE_END:
                return pos
            if tag != _ITEM:
                raise NotFast("not an item")
            index += 1
            prefix = f"{where}>item {index}>"
            if length == _UNDEFINED:
                pos = self.dataset(pos, end, implicit, prefix, sequence, encodings)
            else:
                if pos + length > end:
                    raise NotFast("an item runs past its sequence")
                self.dataset(pos, pos + length, implicit, prefix, sequence, encodings)
                pos += length
        if undefined:
            raise _cut_short("a sequence without its delimiter")
        return pos

    def skip_fragments(self, pos: int, end: int) -> int:
        """Skip encapsulated pixel data: items of defined length up to the delimiter."""
        data = self.data
        while pos + 8 <= end:
            group, number = _TAG.unpack_from(data, pos)
            length = _U32.unpack_from(data, pos + 4)[0]
            pos += 8
            if (group << 16 | number) == _SEQUENCE_END:
                return pos
            if length == _UNDEFINED:
                raise NotFast("a fragment of undefined length")
            pos += length
        raise _cut_short("encapsulated pixel data without its delimiter")


def _cut_short(reason: str) -> NotFast:
    return NotFast(reason, truncated=True)


def _explicit_at(data: bytes | mmap.mmap, pos: int) -> bool:
    """A data set without file meta: explicit VR if its first element has a VR."""
    return len(data) >= pos + 6 and data[pos + 4 : pos + 6] in _VR_NAMES
