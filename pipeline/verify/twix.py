"""The identifying fields of a Siemens twix file's protocol header, read on their own.

A twix file (``meas_*.dat``) starts with its measurement headers: in a
VD/VE/XA file a 10 KiB table (per measurement: offset, length, patient name,
protocol name) and, at each offset, a header of named text buffers (Config,
Dicom, Meas, MeasYaps, Phoenix...); a VB17 file is one measurement whose
header starts at byte 0.  Only these headers are read, never the k-space.

twixtools' header parser is not used: it casts values by the parameter's
name (``PatientBirthDay`` and ``DeviceSerialNumber`` come back as floats,
``19580312.0``) and keeps one value per name where the buffers repeat a
field with different values.  Here every ``<ParamString."Name"> { "value" }``
of the XProtocol text and every ``key = "value"`` line of an ASCCONV block
is read as text, and the names that identify (:data:`FIELDS`, plus LOIDs
and UIDs by name) become :class:`~pipeline.verify.identifiers.Identifier`\\ s.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import UnreadableInput
from pipeline.verify.identifiers import Identifier, IdentifierKind
from pipeline.verify.normalise import field_key, uid_chain

__all__ = ["FIELDS", "is_twix", "twix_identifiers"]

K = IdentifierKind

RAID_TABLE_BYTES = 10240
_RAID_ENTRY = struct.Struct("<IIQQ64s64s")  # measId, fileId, offset, length, patient, protocol
_RAID_HEADER = 8
_MAX_MEASUREMENTS = 64
_MAX_HEADER = 256 * 2**20  # a protocol header is a few MB; more is not a header

#: XProtocol / ASCCONV parameter name (lower case) -> (kind, the DICOM keyword it is).
FIELDS: dict[str, tuple[IdentifierKind, str]] = {
    "patientname": (K.PATIENT_NAME, "PatientName"),
    "tpatientname": (K.PATIENT_NAME, "PatientName"),
    "patientsname": (K.PATIENT_NAME, "PatientName"),
    "patientid": (K.PATIENT_ID, "PatientID"),
    "patientbirthday": (K.BIRTH_DATE, "PatientBirthDate"),
    "institutionname": (K.INSTITUTION, "InstitutionName"),
    "institutionaddress": (K.ADDRESS, "InstitutionAddress"),
    "stationname": (K.STATION, "StationName"),
    "deviceserialnumber": (K.DEVICE_SERIAL, "DeviceSerialNumber"),
    "referringphysician": (K.PERSON_NAME, "ReferringPhysicianName"),
    "treferringphysician": (K.PERSON_NAME, "ReferringPhysicianName"),
    "referringphysicianname": (K.PERSON_NAME, "ReferringPhysicianName"),
    "performingphysician": (K.PERSON_NAME, "PerformingPhysicianName"),
    "tperformingphysician": (K.PERSON_NAME, "PerformingPhysicianName"),
    "operatorsname": (K.PERSON_NAME, "OperatorsName"),
    "toperatorsname": (K.PERSON_NAME, "OperatorsName"),
    "dicom_uid_root": (K.ORIGINAL_UID, "DICOM_UID_ROOT"),
    # The Patient, Study and Series parameters of the Config buffer hold LOIDs.
    "patient": (K.ORIGINAL_UID, "PatientLOID"),
    "study": (K.ORIGINAL_UID, "StudyLOID"),
    "series": (K.ORIGINAL_UID, "SeriesLOID"),
}
# Siemens' database object IDs (PatientLOID, tCurrentMppsLoid, StudyLOIDS4Split...),
# frames of reference and referenced images: dotted identifiers of this exam.
_UID_NAME = re.compile(r"loid|uid$|frameofreference$|referenceimage\d*$")

_BUFFER_NAME = re.compile(rb"\w{4,}\x00")
_PARAM = re.compile(r'<Param(?:String|Long|Double|Bool)?\."([^"]*)">\s*\{([^{}]*)\}')
_META = re.compile(r'<\w+>\s*(?:"(?:[^"]|"")*"|[^\s<"]+)')
_QUOTED = re.compile(r'"((?:[^"]|"")*)"')
_ASCCONV = re.compile(r"### ASCCONV BEGIN[^\n]*\n(.*?)### ASCCONV END ###", re.DOTALL)
_ASSIGNMENT = re.compile(r"^\s*([\w.\[\]]+)\s*=\s*(.*?)\s*$", re.MULTILINE)
_INDEX = re.compile(r"\[\d+\]")


def is_twix(head: bytes, size: int) -> bool:
    """``head`` (the first bytes of a file of ``size`` bytes) starts a twix file."""
    if len(head) < 16:
        return False
    first, second = struct.unpack_from("<II", head)
    if first < RAID_TABLE_BYTES and 0 < second <= _MAX_MEASUREMENTS:
        if len(head) < _RAID_HEADER + _RAID_ENTRY.size:
            return False
        offset = _RAID_ENTRY.unpack_from(head, _RAID_HEADER)[2]
        return bool(RAID_TABLE_BYTES // 2 <= offset < size)
    return 8 < first <= size and _BUFFER_NAME.match(head, 8) is not None


def twix_identifiers(path: Path) -> Iterator[Identifier]:
    """Every identifying value of the protocol headers of the twix file at ``path``.

    Raises
    ------
    UnreadableInput
        Not a twix file, or a header that does not fit in it.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, RAID_TABLE_BYTES, 0)
        if not is_twix(head, size):
            raise UnreadableInput("not a Siemens twix file")
        first, count = struct.unpack_from("<II", head)
        if first < RAID_TABLE_BYTES and 0 < count <= _MAX_MEASUREMENTS:
            offsets = []
            for k in range(count):
                entry = _RAID_ENTRY.unpack_from(head, _RAID_HEADER + k * _RAID_ENTRY.size)
                offsets.append(entry[2])
                yield from _values(K.PATIENT_NAME, "PatientName", _text(entry[4]))
        else:
            offsets = [0]
        for number, offset in enumerate(offsets, start=1):
            yield from header_identifiers(_header(fd, offset, size, number))
    finally:
        os.close(fd)


def header_identifiers(header: bytes) -> Iterator[Identifier]:
    """The identifying values of one measurement's protocol header (all its buffers)."""
    text = header.decode("latin-1")
    for match in _PARAM.finditer(text):
        field = FIELDS.get(match.group(1).lower())
        uid_like = field is None and _UID_NAME.search(match.group(1).lower()) is not None
        if field is None and not uid_like:
            continue
        body = _META.sub(" ", match.group(2))
        for value in _QUOTED.findall(body):
            yield from _identify(match.group(1), value.replace('""', '"'), field)
    for block in _ASCCONV.findall(text):
        for key, raw in _ASSIGNMENT.findall(block):
            name = _INDEX.sub("", key.rsplit(".", 1)[-1])
            field = FIELDS.get(name.lower())
            if field is None and not _UID_NAME.search(name.lower()):
                continue
            yield from _identify(name, raw.strip().strip('"'), field)


def _identify(
    name: str, value: str, field: tuple[IdentifierKind, str] | None
) -> Iterator[Identifier]:
    kind, keyword = field if field is not None else (K.ORIGINAL_UID, name)
    if kind is not K.ORIGINAL_UID:
        yield from _values(kind, keyword, value)
        return
    chain = uid_chain(value)
    if chain is None:  # ExamMemoryUID and the like: its LOID is read on its own
        return
    yield Identifier(kind, field_key(keyword), chain)
    last = chain.rsplit(".", 1)[-1]
    if "loid" in keyword.lower() and len(last) >= 6:
        # A LOID's number also turns up alone, e.g. in the measurement ID
        # <serial>_<patient LOID>_<study LOID>_<MeasUID>.
        yield Identifier(kind, field_key(keyword), last)


def _values(kind: IdentifierKind, keyword: str, value: str) -> Iterator[Identifier]:
    value = value.strip()
    if value:
        yield Identifier(kind, field_key(keyword), value)


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("latin-1").strip()


def _header(fd: int, offset: int, size: int, number: int) -> bytes:
    start = os.pread(fd, 8, offset)
    if len(start) < 8:
        raise UnreadableInput(f"measurement {number} starts beyond the end of the file")
    length = struct.unpack_from("<I", start)[0]
    if not 8 <= length <= min(size - offset, _MAX_HEADER):
        raise UnreadableInput(
            f"measurement {number} declares a {length:,}-byte protocol header that does not "
            "fit in the file"
        )
    return os.pread(fd, length, offset)
