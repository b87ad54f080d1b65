"""What kind of input a file is, from its first bytes (never its name or extension).

Scanners and PACS exports name files anything (``IM0001``, ``1.3.12...``,
no extension); what decides the kind is the content.  A file of no known
kind goes to the DICOM step, which quarantines it with the reason it
finds, so nothing is left unaccounted for.
"""

from __future__ import annotations

import struct
from pathlib import Path

from pipeline.catalog.states import InputKind

_HDF5 = b"\x89HDF\r\n\x1a\n"
_DICOMDIR_CLASS = b"1.2.840.10008.1.3.10"
# Twix: VD/VE/XA files start with a multi-raid header (two small counters);
# VB17 files with the header length, then the protocol buffers ("Config", ...).
_TWIX_MAX_MEASUREMENTS = 64
_HEAD = 4096


def classify(path: Path) -> InputKind:
    """The kind of ``path`` by content; unreadable files are :attr:`InputKind.OTHER`."""
    try:
        with path.open("rb") as f:
            head = f.read(_HEAD)
    except OSError:
        return InputKind.OTHER
    return classify_bytes(head)


def classify_bytes(head: bytes) -> InputKind:
    """The kind of a file whose first (up to 4 KiB) bytes are ``head``."""
    if head[128:132] == b"DICM":
        # The File Meta group is short and at the start: the Media Storage
        # SOP Class of a DICOMDIR is within the first few hundred bytes.
        return InputKind.DICOMDIR if _DICOMDIR_CLASS in head[132:1024] else InputKind.DICOM
    if _is_hdf5(head):
        return InputKind.ISMRMRD
    if _is_twix(head):
        return InputKind.TWIX
    if _is_bare_dicom(head):
        return InputKind.DICOM
    return InputKind.OTHER


def _is_hdf5(head: bytes) -> bool:
    # The signature is at 0 or after a user block of 512 * 2^n bytes.
    return head.startswith(_HDF5) or any(head[o : o + 8] == _HDF5 for o in (512, 1024, 2048))


def _is_twix(head: bytes) -> bool:
    if len(head) < 8:
        return False
    first, second = struct.unpack_from("<II", head)
    if first == 0 and 1 <= second <= _TWIX_MAX_MEASUREMENTS:
        return True  # VD/VE/XA multi-raid header
    return head[8:15] == b"Config\x00"  # VB17: header length, buffer count, first buffer


def _is_bare_dicom(head: bytes) -> bool:
    """A DICOM data set without preamble (older exports): group 0008 or 0002 first."""
    if len(head) < 8:
        return False
    group, element = struct.unpack_from("<HH", head)
    return group in (0x0002, 0x0008) and element < 0x0100
