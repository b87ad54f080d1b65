"""Encoder for Siemens CSA headers, so samples carry the binary blob real scanners write.

Siemens stores most diffusion and acquisition details (b-value, gradient
direction, mosaic layout) not in standard DICOM elements but in a binary
"CSA" header inside the private elements ``(0029,xx10)`` (image) and
``(0029,xx20)`` (series) of the ``SIEMENS CSA HEADER`` block.  A
de-identifier has to keep or clean those bytes without breaking them, so the
samples need the real layout, not a placeholder.

Layout of the "SV10" (CSA2) form, all integers little endian::

    b"SV10" b"\\x04\\x03\\x02\\x01"  uint32 n_tags  uint32 77
    per tag:  name (64 bytes, NUL padded)  int32 vm  vr (4 bytes)
              int32 syngodt  int32 n_items  int32 77 (or 205 when empty)
    per item: int32 length ×4 (length, length, 77, length)
              value bytes (NUL terminated), padded to a multiple of 4

This is the format that ``nibabel.nicom.csareader`` and dcm2niix read.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

__all__ = ["CSA_MAGIC", "encode_csa"]

CSA_MAGIC = b"SV10\x04\x03\x02\x01"

# VR and "syngo data type" of tags as the scanner writes them; the reader in
# dcm2niix ignores both, nibabel uses the VR to convert values.
_KNOWN_TAGS: dict[str, tuple[str, int]] = {
    "B_value": ("IS", 6),
    "B_matrix": ("FD", 4),
    "DiffusionGradientDirection": ("FD", 4),
    "DiffusionDirectionality": ("CS", 16),
    "SliceNormalVector": ("FD", 4),
    "SliceMeasurementDuration": ("DS", 3),
    "NumberOfImagesInMosaic": ("US", 10),
    "AcquisitionMatrixText": ("SH", 22),
    "ImaPATModeText": ("LO", 19),
    "ImaCoilString": ("LO", 19),
    "ImaAbsTablePosition": ("SL", 7),
    "PhaseEncodingDirectionPositive": ("IS", 6),
    "RealDwellTime": ("IS", 6),
    "BandwidthPerPixelPhaseEncode": ("FD", 4),
    "UsedPatientWeight": ("IS", 6),
    "ICE_Dims": ("LO", 19),
    "MrPhoenixProtocol": ("UN", 0),
    "SeriesWorkflowStatus": ("LO", 19),
}
_DEFAULT_TAG = ("LO", 19)
# Scanners reserve at least six item slots per tag and leave the spare ones empty.
_MIN_ITEMS = 6
_USED = 77
_EMPTY = 205


def encode_csa(
    tags: Mapping[str, Sequence[str]],
    *,
    vrs: Mapping[str, tuple[str, int]] | None = None,
) -> bytes:
    """Encode tags as a Siemens CSA2 ("SV10") header.

    Parameters
    ----------
    tags : mapping of str to sequence of str
        Tag name (at most 63 ASCII bytes) to its values, already formatted
        as the scanner does (``"1000"``, ``"0.70710678"``).  An empty list
        writes the tag with no items, as Siemens does for b=0 directions.
    vrs : mapping of str to (str, int), optional
        VR and syngo data type for tag names this module does not know;
        unknown names default to ``("LO", 19)``.

    Returns
    -------
    bytes
        The header, ready for ``(0029,xx10)`` or ``(0029,xx20)`` as OB.
    """
    known = dict(_KNOWN_TAGS)
    if vrs:
        known.update(vrs)
    out = bytearray(CSA_MAGIC)
    out += struct.pack("<2I", len(tags), _USED)
    for name, values in tags.items():
        raw_name = name.encode("ascii")
        if len(raw_name) > 63:
            raise ValueError(f"CSA tag name {name!r} is longer than 63 bytes")
        vr, syngodt = known.get(name, _DEFAULT_TAG)
        n_items = max(_MIN_ITEMS, len(values)) if values else 0
        out += struct.pack(
            "<64si4s3i",
            raw_name,
            len(values),
            vr.encode("ascii"),
            syngodt,
            n_items,
            _USED if values else _EMPTY,
        )
        for index in range(n_items):
            data = (values[index].encode("latin-1") + b"\x00") if index < len(values) else b""
            out += struct.pack("<4i", len(data), len(data), _USED, len(data))
            out += data + b"\x00" * (-len(data) % 4)
    return bytes(out)
