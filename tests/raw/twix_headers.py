"""Real twix measurement headers for the header tests, and PHI planted into them.

The reference files (twixtools' example data) carry masked patient fields but
a real institution, address and device serial number.  ``planted_header``
puts a made-up patient into every field the protocol has for one (and into
the free-text fields an operator types), re-framing the buffers so their
lengths stay right, as a scanner would have written them.
"""

from __future__ import annotations

import re
import struct
from functools import lru_cache

import pytest
import twixtools

from tests.reference import ROOT, reference_marks, reference_path

REFERENCE = ROOT / "twix"

# What the reference files themselves carry and must never be released.
REAL_PHI = (
    "DZNE",
    "Bonn",
    "Venusberg",
    "Sigmund",
    "45385",  # device serial number
    "66327770",  # patient LOID
    "66327775",  # study LOID
    "2021-06-22",  # exam date (real, unshifted)
    "20210622",
    "1.3.12.2.1107.5.2.19",  # the scanner's UID root (with the serial)
)

# The made-up patient planted into the protocol.
NAME = "Mustermann^Erika"
PATIENT_ID = "PID-7788123"
BIRTH = "19610417"
PLANTED = (
    "Mustermann",
    "Erika",
    "PID-7788123",
    "7788123",
    "19610417",
    "1961-04-17",
    "17.04.1961",
    "MRC-ROOM-7",
)


def needs_reference() -> pytest.MarkDecorator:
    """The skip of :func:`tests.reference.reference_marks` for the twix files."""
    return reference_marks("twix", "gre.dat")[1]


@lru_cache(maxsize=4)
def reference_header(name: str) -> bytes:
    """The raw header bytes of the last measurement of ``REFERENCE/name`` (twixtools' hdr_str)."""
    path = reference_path("twix", name)  # skips the calling test when absent
    scans = twixtools.read_twix(str(path), verbose=False, parse_data=False)
    return bytes(scans[-1]["hdr_str"].tobytes())


def buffers(header: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """The (name, text) buffers of a header and whatever padding follows them."""
    _length, count = struct.unpack_from("<II", header, 0)
    pos, found = 8, []
    for _ in range(count):
        end = header.index(b"\x00", pos)
        (size,) = struct.unpack_from("<I", header, end + 1)
        found.append((header[pos:end].decode(), header[end + 5 : end + 5 + size].decode("latin-1")))
        pos = end + 5 + size
    return found, header[pos:]


def reframe(parts: list[tuple[str, str]], padding: bytes = b"") -> bytes:
    """A header from (name, text) buffers: lengths recomputed as the scanner writes them."""
    body = b"".join(
        name.encode()
        + b"\x00"
        + struct.pack("<I", len(text.encode("latin-1")))
        + text.encode("latin-1")
        for name, text in parts
    )
    total = 8 + len(body) + len(padding)
    return struct.pack("<II", total, len(parts)) + body + padding


def _set_string(text: str, name: str, value: str) -> str:
    """Set every XProtocol ParamString ``name`` (adding one to the first map if absent)."""
    pattern = re.compile(r'(<ParamString\."' + re.escape(name) + r'">\s*\{)([^}]*)\}')
    if pattern.search(text):
        return pattern.sub(lambda m: f'{m.group(1)} "{value}" }}', text)
    return text.replace("{", f'{{\n<ParamString."{name}">  {{ "{value}" }}\n', 1)


def plant(text: str, buffer: str) -> str:
    """One buffer with the made-up patient in every identifying and free-text field."""
    text = text.replace('"' + "x" * 48 + '"', f'"{PATIENT_ID}"')
    text = text.replace('"xxxxxxxx"', f'"{BIRTH}"')
    text = text.replace('"xxxxxxx"', f'"{NAME}"')
    # Operator-typed free text: names and dates in the protocol's and sequence's names.
    text = re.sub(r'"(gre|ep2d_bold)"', r'"\1 Mustermann 17.04.1961"', text)
    text = re.sub(r"(%CustomerSeq%\\+gre)", r"\1_Erika", text)
    text = re.sub(r'"BRAIN"', '"BRAIN Erika PID-7788123"', text)
    if buffer in ("Dicom", "Meas", "Config"):
        text = _set_string(text, "tStudyDescription", "Knie Mustermann PID-7788123")
        text = _set_string(text, "StationName", "MRC-ROOM-7")
    text = re.sub(r'(<ParamLong\."l?PatientSex">\s*\{\s*)3', r"\g<1>1", text)
    return text


def planted_header(name: str) -> bytes:
    parts, padding = buffers(reference_header(name))
    return reframe([(n, plant(t, n)) for n, t in parts], padding)
