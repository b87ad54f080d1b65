"""A Siemens twix protocol, and the full ISMRMRD header it describes.

The header is built the way siemens_to_ismrmrd builds it (its parameter map
``IsmrmrdParameterMap_Siemens.xml`` and stylesheet ``..._Siemens.xsl``): the
same protocol parameters, the same arithmetic (readout oversampling in the
encoded field of view, TE/TR in ms, the Siemens trajectory and reference-scan
codes), so a reconstruction written for that converter's files reads ours.
Where the stylesheet leaves a field out that a curator needs, the field is
added from the protocol and the docstring of :func:`ismrmrd_header` says so.

The header still carries PHI (subject, study, institution, device serial
number): it is the input of the allowlist in ``rules/ismrmrd/header.yaml``,
never an output.  Nothing here logs or raises a header value.
"""

from __future__ import annotations

import importlib.util
import math
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.errors import UnreadableInput
from pipeline.raw.twix import SYNCDATA_WAVEFORM_ID

NAMESPACE = "http://www.ismrm.org/ISMRMRD"
_NS = f"{{{NAMESPACE}}}"

# A measurement header holds a handful of buffers (Config, Dicom, Meas,
# MeasYaps, Phoenix, Spice); more than this is not a twix header.
_MAX_BUFFERS = 64
_BUFFER_NAME = re.compile(rb"\w{4,}")
# XProtocol parameters are looked up in this order: Meas holds the measurement's
# own (YAPS) values, Config and Dicom the copies the scanner made for the images.
_XPROT_SECTIONS = ("Meas", "Config", "Dicom")
# ExamMemoryUID "6_0_<study LOID>_<YYYYMMDD>_<hhmmss>_<ms>": when the exam began.
_EXAM_START = re.compile(r"_(\d{8})_(\d{6})_\d+$")
# Siemens frame-of-reference UIDs embed their creation time: <root>.1.<YYYYMMDDhhmmss...>
_FOR_TIME = re.compile(r"\.1\.(\d{8})(\d{6})\d*\.")
_PATIENT_POSITIONS = frozenset({"HFP", "HFS", "HFDR", "HFDL", "FFP", "FFS", "FFDR", "FFDL"})


@dataclass(frozen=True)
class Protocol:
    """The parsed buffers of one measurement header (PHI: never print it).

    ``sections`` maps each buffer name (``Meas``, ``MeasYaps``, ``Dicom`` ...)
    to what ``twixtools.twixprot.parse_buffer`` made of it: XProtocol buffers
    become flat ``{parameter: value}`` maps, the ASCCONV part of ``MeasYaps``
    a nested one (``sKSpace`` → ``lBaseResolution``).  ``raw`` keeps the text.
    """

    sections: Mapping[str, Mapping[str, Any]] = field(repr=False)
    raw: Mapping[str, str] = field(repr=False)

    def __repr__(self) -> str:
        return f"Protocol(buffers={sorted(self.sections)})"

    def param(self, name: str, sections: Iterable[str] = _XPROT_SECTIONS) -> Any:
        """The first non-empty value of an XProtocol parameter, or None."""
        for section in sections:
            value = self.sections.get(section, {}).get(name)
            if value not in (None, "", []):
                return value
        return None

    def string(self, name: str, sections: Iterable[str] = _XPROT_SECTIONS) -> str | None:
        """The first non-empty XProtocol ``ParamString`` as written, or None.

        twixtools casts every parameter whose name does not start with ``t``
        to a float when it can, and Python's float() accepts underscores as
        digit separators: ``ExamMemoryUID`` ``6_0_66327775_20210622_151635_650``
        comes back as ``6.07e+26``.  This reads the buffer's text instead.
        """
        pattern = re.compile(r'<ParamString\."' + re.escape(name) + r'">\s*\{\s*"([^"]*)"')
        for section in sections:
            for match in pattern.finditer(self.raw.get(section, "")):
                value = match.group(1).strip()
                if value:
                    return value
        return None

    def yaps(self, *path: str | int) -> Any:
        """A value of the ASCCONV protocol (``MeasYaps``) by its path, or None."""
        node: Any = self.sections.get("MeasYaps", {})
        for step in path:
            if isinstance(step, int):
                if not isinstance(node, list) or step >= len(node):
                    return None
            elif not isinstance(node, dict) or step not in node:
                return None
            node = node[step]
        return None if node in ("", [], {}) else node


def parse_protocol(header_bytes: bytes) -> Protocol:
    """Parse the raw header of one measurement (twixtools' ``hdr_str``).

    The header is ``uint32 length, uint32 count`` then ``count`` buffers, each
    ``name\\0, uint32 size, text``; each text goes through twixtools'
    ``parse_buffer``.  The framing is read here (as ``parse_twix_hdr`` does,
    but from bytes and strictly) so a damaged header fails with a reason
    rather than a printed warning and a half-read protocol.

    Raises
    ------
    UnreadableInput
        If the framing is damaged or no buffer could be parsed (PHI-free reason).
    """
    data = bytes(header_bytes)
    if len(data) < 8:
        raise UnreadableInput("the measurement header is truncated (under 8 bytes)")
    _length, count = struct.unpack_from("<II", data, 0)
    if not 0 < count <= _MAX_BUFFERS:
        raise UnreadableInput(
            f"the measurement header announces {count} buffers: not a Siemens twix protocol"
        )
    sections: dict[str, Mapping[str, Any]] = {}
    raw: dict[str, str] = {}
    pos = 8
    for index in range(count):
        end = data.find(b"\x00", pos, pos + 48)
        name = data[pos:end] if end != -1 else b""
        if not _BUFFER_NAME.fullmatch(name) or end + 5 > len(data):
            raise UnreadableInput(
                f"protocol buffer {index + 1} of {count} has no readable name: the header is "
                "damaged or truncated; re-export the raw data from the scanner"
            )
        (size,) = struct.unpack_from("<I", data, end + 1)
        start = end + 5
        if start + size > len(data):
            raise UnreadableInput(
                f"protocol buffer {index + 1} of {count} runs past the end of the header "
                f"({size} bytes announced): the file is truncated"
            )
        text = data[start : start + size].decode("latin-1")
        try:
            parsed = _parse_buffer()(text)
        except (ValueError, TypeError, IndexError, AttributeError, RecursionError) as exc:
            raise UnreadableInput(
                f"protocol buffer {index + 1} could not be parsed ({type(exc).__name__})"
            ) from None
        key = name.decode("ascii")
        sections[key] = parsed
        raw[key] = text
        pos = start + size
    if not any(sections.values()):
        raise UnreadableInput("the measurement header holds no protocol parameter")
    return Protocol(sections, raw)


# --- small conversions ------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, list):
        return _number(value[0]) if value else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any, default: int | None = None) -> int | None:
    number = _number(value)
    return default if number is None else int(number)


def _fmt(number: float) -> str:
    """xs:float / xs:long text: integers without a fraction, others exactly."""
    if float(number).is_integer():
        return str(int(number))
    return repr(float(number))


def _text(value: Any) -> str | None:
    """A string parameter as text; twixtools turns numeric-looking strings into floats."""
    if value is None or value == "" or isinstance(value, (dict, list)):
        return None
    if isinstance(value, float):
        return _fmt(value)
    return str(value).strip().strip('"').strip() or None


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, _NS + tag)
    if text is not None:
        element.text = text
    return element


def _xs_date(yyyymmdd: str | None) -> str | None:
    if not yyyymmdd or not re.fullmatch(r"\d{8}", yyyymmdd):
        return None
    y, m, d = int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:])
    if not (1 <= m <= 12 and 1 <= d <= 31 and y >= 1):
        return None
    return f"{yyyymmdd[:4]}-{yyyymmdd[4:6]}-{yyyymmdd[6:]}"


def _xs_time(hhmmss: str) -> str | None:
    h, m, s = int(hhmmss[:2]), int(hhmmss[2:4]), int(hhmmss[4:6])
    return f"{hhmmss[:2]}:{hhmmss[2:4]}:{hhmmss[4:6]}" if h < 24 and m < 60 and s < 61 else None


def _loid_suffix(loid: str | None) -> str:
    """The stylesheet's ``substring(LOID, 6)``: ``6.0.66327775`` → ``66327775``."""
    return (loid or "")[4:]


# --- the header ---------------------------------------------------------------------


def ismrmrd_header(protocol: Protocol, *, noise: bool = False, waveforms: bool = False) -> str:
    """The full ISMRMRD header of one measurement, with PHI, as siemens_to_ismrmrd makes it.

    Beyond the stylesheet: ``subjectInformation`` (commented out there) and
    ``studyInformation`` are filled so the subject can be found and the
    allowlist can pseudonymize them; study date and time come from the exam's
    ``ExamMemoryUID`` (or the frame-of-reference UID's time stamp), which the
    stylesheet leaves to the user; ``seriesInstanceUIDRoot`` is the
    scanner's ``DICOM_UID_ROOT``; ``referencedImageSequence`` lists the
    localizer images (``tReferenceImageN``); ``coilLabel`` numbers are the
    0-based rank of the ADC channel, the order of the channels in the data.

    Parameters
    ----------
    noise : bool
        A noise-adjust measurement: ``parallelImaging``,
        ``trajectoryDescription`` and ``userParameters`` describe image
        readouts such a measurement does not have, so they are left out.
    waveforms : bool
        The measurement has SYNCDATA packets (``TwixMeasurement.syncdata > 0``):
        declare the waveforms they become, as siemens_to_ismrmrd does when it
        finds physiology (see :func:`waveform_information`).

    Raises
    ------
    UnreadableInput
        If a value the ISMRMRD schema requires (resonance frequency, patient
        position, matrix size) is missing from the protocol.
    """
    root = ET.Element(_NS + "ismrmrdHeader")
    _sub(root, "version", "2")
    _subject(root, protocol)
    _study(root, protocol)
    _measurement(root, protocol)
    _system(root, protocol)
    frequency = _int(protocol.param("lFrequency"))
    if frequency is None:
        frequency = _int(protocol.yaps("sTXSPEC", "asNucleusInfo", 0, "lFrequency"))
    if frequency is None:
        raise UnreadableInput("the protocol has no resonance frequency (lFrequency)")
    conditions = _sub(root, "experimentalConditions")
    _sub(conditions, "H1resonanceFrequency_Hz", str(frequency))
    _encoding(root, protocol, noise)
    _sequence(root, protocol)
    if not noise:
        _user_parameters(root, protocol)
    if waveforms:
        waveform_information(root)
    ET.register_namespace("", NAMESPACE)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _subject(root: ET.Element, p: Protocol) -> None:
    subject = _sub(root, "subjectInformation")
    name = _text(p.param("tPatientName")) or _text(p.param("PatientName"))
    if name:
        _sub(subject, "patientName", name)
    weight = _number(p.param("flUsedPatientWeight"))
    if weight and weight > 0:
        _sub(subject, "patientWeight_kg", _fmt(weight))
    height_mm = _number(p.param("flPatientHeight"))
    if height_mm and height_mm > 0:
        _sub(subject, "patientHeight_m", _fmt(height_mm / 1000.0))
    patient_id = _text(p.param("PatientID"))
    if patient_id:
        _sub(subject, "patientID", patient_id)
    birth = _xs_date(_text(p.param("PatientBirthDay")))
    if birth:
        _sub(subject, "patientBirthdate", birth)
    sex = _int(p.param("lPatientSex"))
    _sub(subject, "patientGender", {1: "F", 2: "M"}.get(sex or 0, "O"))


def _exam_start(p: Protocol) -> tuple[str | None, str | None]:
    exam = p.string("ExamMemoryUID") or ""
    match = _EXAM_START.search(exam) or _FOR_TIME.search(
        _text(p.param("tFrameOfReference")) or _text(p.param("FrameOfReference")) or ""
    )
    if not match:
        return None, None
    return _xs_date(match.group(1)), _xs_time(match.group(2))


def _study(root: ET.Element, p: Protocol) -> None:
    study = _sub(root, "studyInformation")
    date, time = _exam_start(p)
    if date:
        _sub(study, "studyDate", date)
    if time:
        _sub(study, "studyTime", time)
    study_id = _loid_suffix(_text(p.param("StudyLOID")))
    if study_id:
        _sub(study, "studyID", study_id)
    physician = _text(p.param("tReferringPhysician")) or _text(p.param("ReferringPhysician"))
    if physician:
        _sub(study, "referringPhysicianName", physician)
    description = _text(p.param("tStudyDescription"))
    if description:
        _sub(study, "studyDescription", description)
    body_part = _text(p.param("tBodyPartExamined", ("Dicom", "Meas", "Config")))
    if body_part:
        _sub(study, "bodyPartExamined", body_part)


def _measurement_id(p: Protocol, meas_uid: Any) -> str:
    """``<device serial>_<patient LOID>_<study LOID>_<MeasUID>``, as the stylesheet writes it."""
    serial = _text(p.param("DeviceSerialNumber")) or ""
    patient = _loid_suffix(_text(p.param("PatientLOID")))
    study = _loid_suffix(_text(p.param("StudyLOID")))
    return f"{serial}_{patient}_{study}_{_text(meas_uid) or ''}"


def _measurement(root: ET.Element, p: Protocol) -> None:
    info = _sub(root, "measurementInformation")
    meas_uid = p.param("MeasUID")
    if meas_uid is not None:
        _sub(info, "measurementID", _measurement_id(p, meas_uid))
    # seriesDate/seriesTime are left out: the protocol knows only when the exam
    # began; the series' own time is in the first readout's time stamp.
    position = _text(p.param("tPatientPosition")) or _text(p.param("PatientPosition"))
    if position not in _PATIENT_POSITIONS:
        raise UnreadableInput(
            "the protocol has no valid patient position (tPatientPosition), which ISMRMRD requires"
        )
    _sub(info, "patientPosition", position)
    table = _sub(info, "relativeTablePosition")
    for axis, name in (
        ("x", "lGlobalTablePosSag"),
        ("y", "lGlobalTablePosCor"),
        ("z", "lGlobalTablePosTra"),
    ):
        _sub(table, axis, _fmt(_number(p.param(name)) or 0.0))
    protocol_name = _text(p.param("tProtocolName")) or _text(p.yaps("tProtocolName"))
    if protocol_name:
        _sub(info, "protocolName", protocol_name)
    sequence_file = _text(p.param("tSequenceFileName")) or _text(p.yaps("tSequenceFileName"))
    if sequence_file:
        _sub(info, "sequenceName", sequence_file.replace("/", "\\").rsplit("\\", 1)[-1])
    # ReconMeasDependencies: MeasUIDs of the RF map, sensitivity map and noise scan.
    dependencies = str(p.param("ReconMeasDependencies") or "").split()
    for kind, value in zip(("RFMap", "SenMap", "Noise"), dependencies, strict=False):
        if (_int(value) or 0) > 0:
            dependency = _sub(info, "measurementDependency")
            _sub(dependency, "dependencyType", kind)
            _sub(dependency, "measurementID", _measurement_id(p, value))
    uid_root = _text(p.param("DICOM_UID_ROOT"))
    if uid_root:
        _sub(info, "seriesInstanceUIDRoot", uid_root)
    frame = _text(p.param("tFrameOfReference")) or _text(p.param("FrameOfReference"))
    if frame:
        _sub(info, "frameOfReferenceUID", frame)
    references = [
        _text(p.yaps(f"tReferenceImage{i}")) for i in range(64) if p.yaps(f"tReferenceImage{i}")
    ]
    if references:
        sequence = _sub(info, "referencedImageSequence")
        for uid in references:
            _sub(sequence, "referencedSOPInstanceUID", uid)


def _coil_labels(p: Protocol) -> list[tuple[int, str]]:
    """(number, "coil:copy:element") of the selected receive elements, by ADC channel."""
    elements = _list(p.yaps("sCoilSelectMeas", "aRxCoilSelectData", 0, "asList"))
    selected: list[tuple[int, str]] = []
    for element in elements:
        if not isinstance(element, dict) or _int(element.get("lElementSelected"), 1) != 1:
            continue
        ident = element.get("sCoilElementID") or {}
        adc = _int(element.get("lADCChannelConnected"), len(selected)) or 0
        label = f"{_text(ident.get('tCoilID')) or ''}:{_int(ident.get('lCoilCopy'), 1)}:{_text(ident.get('tElement')) or ''}"
        selected.append((adc, label))
    return [
        (rank, label) for rank, (_adc, label) in enumerate(sorted(selected, key=lambda e: e[0]))
    ]


def _system(root: ET.Element, p: Protocol) -> None:
    system = _sub(root, "acquisitionSystemInformation")
    for tag, value in (
        ("systemVendor", _text(p.param("Manufacturer", ("Dicom", "Meas")))),
        ("systemModel", _text(p.param("ManufacturersModelName", ("Dicom", "Meas")))),
    ):
        if value:
            _sub(system, tag, value)
    field_t = _number(p.param("flMagneticFieldStrength"))
    if field_t:
        _sub(system, "systemFieldStrength_T", _fmt(field_t))
    # The stylesheet's constant for Siemens receivers.
    _sub(system, "relativeReceiverNoiseBandwidth", "0.793")
    channels = _int(p.param("iMaxNoOfRxChannels"))
    if channels:
        _sub(system, "receiverChannels", str(channels))
    for number, label in _coil_labels(p):
        coil = _sub(system, "coilLabel")
        _sub(coil, "coilNumber", str(number))
        _sub(coil, "coilName", label)
    for tag, value in (
        ("institutionName", _text(p.param("InstitutionName", ("Dicom", "Meas", "Config")))),
        ("stationName", _text(p.param("StationName", ("Dicom", "Meas", "Config")))),
        ("deviceID", _text(p.param("DeviceSerialNumber"))),
        ("deviceSerialNumber", _text(p.param("DeviceSerialNumber"))),
    ):
        if value:
            _sub(system, tag, value)


def _limit(parent: ET.Element, tag: str, maximum: int, center: int = 0) -> None:
    limit = _sub(parent, tag)
    _sub(limit, "minimum", "0")
    _sub(limit, "maximum", str(max(maximum, 0)))
    _sub(limit, "center", str(max(center, 0)))


def _matrix(parent: ET.Element, tag: str, xyz: tuple[int, int, int]) -> None:
    matrix = _sub(parent, tag)
    for axis, value in zip("xyz", xyz, strict=True):
        _sub(matrix, axis, str(value))


def _fov(parent: ET.Element, xyz: tuple[float, float, float]) -> None:
    fov = _sub(parent, "fieldOfView_mm")
    for axis, value in zip("xyz", xyz, strict=True):
        _sub(fov, axis, _fmt(value))


_TRAJECTORIES = {1: "cartesian", 2: "radial", 4: "spiral"}  # 8 (PROPELLER) is "other" in the XSD
_CALIBRATION = {
    1: "other",
    2: "embedded",
    4: "separate",
    8: "separate",
    16: "interleaved",
    32: "interleaved",
    64: "interleaved",
}
_INTERLEAVING = {1: "other", 16: "average", 32: "repetition", 64: "phase"}


def _encoding(root: ET.Element, p: Protocol, noise: bool) -> None:
    encoding = _sub(root, "encoding")
    trajectory_code = _int(p.yaps("sKSpace", "ucTrajectory"), 1) or 1
    cartesian = trajectory_code == 1
    image_columns = _int(p.param("ImageColumns"))
    image_lines = _int(p.param("ImageLines"))
    columns = _int(p.param("iNoOfFourierColumns")) if cartesian else image_columns
    pe_length = _int(p.param("iPEFTLength"))
    if columns is None or pe_length is None or image_columns is None or image_lines is None:
        raise UnreadableInput(
            "the protocol has no matrix size (iNoOfFourierColumns, iPEFTLength, ImageColumns)"
        )
    if _int(p.yaps("sKSpace", "uc2DInterpolation")) == 1:
        pe_length //= 2
    ft3d = _int(p.param("i3DFTLength"), 1) or 1
    partitions = _int(p.param("iNoOfFourierPartitions"))
    encoded_z = 1 if partitions is None or ft3d == 1 else ft3d

    readout_fov = _number(p.yaps("sSliceArray", "asSlice", 0, "dReadoutFOV")) or 0.0
    phase_fov = _number(p.yaps("sSliceArray", "asSlice", 0, "dPhaseFOV")) or 0.0
    thickness = _number(p.yaps("sSliceArray", "asSlice", 0, "dThickness")) or 0.0
    readout_os = _number(p.param("flReadoutOSFactor")) or 1.0
    phase_os = _number(p.param("phaseOversampling")) or 0.0
    slice_os = _number(p.yaps("sKSpace", "dSliceOversamplingForDialog")) or 0.0

    if not noise:
        _trajectory_description(encoding, p)
    encoded = _sub(encoding, "encodedSpace")
    _matrix(encoded, "matrixSize", (columns, pe_length, encoded_z))
    _fov(
        encoded,
        (
            readout_fov * readout_os if cartesian else readout_fov,
            phase_fov * (1 + phase_os),
            thickness * (1 + slice_os),
        ),
    )
    recon = _sub(encoding, "reconSpace")
    recon_z = 1 if ft3d == 1 else (_int(p.yaps("sKSpace", "lImagesPerSlab"), 1) or 1)
    _matrix(recon, "matrixSize", (image_columns, image_lines, recon_z))
    _fov(recon, (readout_fov, phase_fov, thickness))
    _encoding_limits(encoding, p, encoded_z, partitions, ft3d)
    _sub(encoding, "trajectory", _TRAJECTORIES.get(trajectory_code, "other"))
    if not noise:
        _parallel_imaging(encoding, p)


def _encoding_limits(
    encoding: ET.Element, p: Protocol, encoded_z: int, partitions: int | None, ft3d: int
) -> None:
    limits = _sub(encoding, "encodingLimits")
    lines = _int(p.param("iNoOfFourierLines"), 1) or 1
    pe_lines = _int(p.yaps("sKSpace", "lPhaseEncodingLines"), lines) or lines
    _limit(limits, "kspace_encoding_step_1", lines - 1, pe_lines // 2)
    if partitions is None or ft3d == 1:
        _limit(limits, "kspace_encoding_step_2", 0)
    else:
        k_partitions = _int(p.yaps("sKSpace", "lPartitions"), partitions) or partitions
        accel_3d = _int(p.yaps("sPat", "lAccelFact3D"), 1) or 1
        center = k_partitions // 2
        if accel_3d <= 1 or (k_partitions - partitions) > accel_3d:
            center -= k_partitions - partitions
        _limit(limits, "kspace_encoding_step_2", partitions - 1, center)
    _limit(limits, "average", (_int(p.yaps("lAverages"), 1) or 1) - 1)
    _limit(limits, "slice", (_int(p.yaps("sSliceArray", "lSize"), 1) or 1) - 1)
    _limit(limits, "contrast", (_int(p.yaps("lContrasts"), 1) or 1) - 1)
    _limit(limits, "phase", (_int(p.yaps("sPhysioImaging", "lPhases"), 1) or 1) - 1)
    # Siemens counts repetitions from 0: lRepetitions is already the maximum index.
    _limit(limits, "repetition", _int(p.yaps("lRepetitions"), 0) or 0)
    _limit(limits, "set", (_int(p.param("iNSet"), 1) or 1) - 1)
    segments = 0
    mode = _int(p.yaps("sFastImaging", "ucSegmentationMode"))
    if mode == 2:
        segments = (_int(p.yaps("sFastImaging", "lShots"), 1) or 1) - 1
    elif mode == 1:
        per_shot = _int(p.yaps("sFastImaging", "lSegments"), 1) or 1
        if per_shot > 1:
            segments = math.ceil((partitions or 1) * lines / per_shot)
    _limit(limits, "segment", segments)


def _trajectory_description(encoding: ET.Element, p: Protocol) -> None:
    """The stylesheet's ConventionalEPI description (ramp sampling), when the protocol regrids."""

    def first(name: str) -> int:
        return _int(_list(p.param(name))[0] if _list(p.param(name)) else None, 0) or 0

    if not (first("alRegridRampupTime") > 0 and first("alRegridRampdownTime") > 0):
        return
    description = _sub(encoding, "trajectoryDescription")
    _sub(description, "identifier", "ConventionalEPI")
    longs = (
        ("etl", _int(p.yaps("sFastImaging", "lEPIFactor"), 0) or 0),
        ("numberOfNavigators", 3),
        ("rampUpTime", first("alRegridRampupTime")),
        ("rampDownTime", first("alRegridRampdownTime")),
        ("flatTopTime", first("alRegridFlattopTime")),
        ("echoSpacing", _int(p.param("lEchoSpacing"), 0) or 0),
        ("acqDelayTime", first("alRegridDelaySamplesTime")),
        ("numSamples", first("alRegridDestSamples")),
    )
    for name, value in longs:
        parameter = _sub(description, "userParameterLong")
        _sub(parameter, "name", name)
        _sub(parameter, "value", str(value))
    dwell = _number(p.yaps("sRXSPEC", "alDwellTime", 0))
    if dwell is not None:
        parameter = _sub(description, "userParameterDouble")
        _sub(parameter, "name", "dwellTime")
        _sub(parameter, "value", _fmt(dwell / 1000.0))
    _sub(description, "comment", "Conventional 2D EPI sequence")


def _parallel_imaging(encoding: ET.Element, p: Protocol) -> None:
    parallel = _sub(encoding, "parallelImaging")
    factor = _sub(parallel, "accelerationFactor")
    _sub(factor, "kspace_encoding_step_1", str(_int(p.yaps("sPat", "lAccelFactPE"), 1) or 1))
    _sub(factor, "kspace_encoding_step_2", str(_int(p.yaps("sPat", "lAccelFact3D"), 1) or 1))
    mode = _int(p.yaps("sPat", "ucRefScanMode"), 1) or 1
    _sub(parallel, "calibrationMode", _CALIBRATION.get(mode, "other"))
    if mode in _INTERLEAVING:
        _sub(parallel, "interleavingDimension", _INTERLEAVING[mode])


_SEQUENCE_TYPES = {
    1: "Flash",
    2: "SSFP",
    4: "EPI",
    8: "TurboSpinEcho",
    16: "ChemicalShiftImaging",
    32: "FID",
}


def _sequence(root: ET.Element, p: Protocol) -> None:
    sequence = _sub(root, "sequenceParameters")
    contrasts = _int(p.yaps("lContrasts"), 1) or 1
    for index, value in enumerate(_list(p.yaps("alTR"))):
        number = _number(value)
        if number is not None and (index == 0 or number > 0):
            _sub(sequence, "TR", _fmt(number / 1000.0))
    for index, value in enumerate(_list(p.yaps("alTE"))):
        number = _number(value)
        if number is not None and (index == 0 or (number > 0 and index < contrasts)):
            _sub(sequence, "TE", _fmt(number / 1000.0))
    for value in _list(p.yaps("alTI")):
        number = _number(value)
        if number is not None and number > 0:
            _sub(sequence, "TI", _fmt(number / 1000.0))
    # VB17 and earlier write one flip angle, dFlipAngleDegree; VD and later an array.
    flips = p.yaps("adFlipAngleDegree")
    for value in _list(flips if flips is not None else p.yaps("dFlipAngleDegree")):
        number = _number(value)
        if number is not None and number > 0:
            _sub(sequence, "flipAngle_deg", _fmt(number))
    code = _int(p.yaps("ucSequenceType"))
    if code is not None:
        _sub(sequence, "sequence_type", _SEQUENCE_TYPES.get(code, "Unknown"))
    spacing = _number(p.param("lEchoSpacing"))
    if spacing is not None:
        _sub(sequence, "echo_spacing", _fmt(spacing / 1000.0))


def _user_parameters(root: ET.Element, p: Protocol) -> None:
    """Only what a reconstruction needs: the GRAPPA reference lines (stylesheet names)."""
    values = [
        (name, _int(p.yaps("sPat", key)))
        for name, key in (
            ("EmbeddedRefLinesE1", "lRefLinesPE"),
            ("EmbeddedRefLinesE2", "lRefLines3D"),
        )
    ]
    present = [(name, value) for name, value in values if value is not None]
    if not present:
        return
    parameters = _sub(root, "userParameters")
    for name, value in present:
        parameter = _sub(parameters, "userParameterLong")
        _sub(parameter, "name", name)
        _sub(parameter, "value", str(value))


# (waveform_id, name, waveformType, trigger channel or None) of the PMU signals, as
# siemens_to_ismrmrd's makeWaveformHeader declares them; the learning phase has the
# same signals at id + 5.  The ECG waveform holds one channel per lead the scanner
# recorded, then the trigger: its trigger channel is the last, whose index depends
# on the leads, so none is declared (siemens_to_ismrmrd writes 4, right for 4 leads).
_PMU_WAVEFORMS = (
    (0, "ECG", "ecg", None),
    (1, "PULS", "pulse", 1),
    (2, "RESP", "respiratory", 1),
    (3, "EXT1", "other", 1),
    (4, "EXT2", "other", 1),
)
LEARNING_PHASE_OFFSET = 5


def waveform_information(root: ET.Element) -> None:
    """Append the ``waveformInformation`` of Siemens physiology and kept SYNCDATA.

    The ISMRMRD schema has no element for the ``waveform_id`` an entry
    describes: readers take ids 0-4 (ECG, pulse, respiratory, external 1
    and 2) by convention and the position of the entry otherwise.  So the
    entries are written in id order (0-9, then
    :data:`~pipeline.raw.twix.SYNCDATA_WAVEFORM_ID`), as siemens_to_ismrmrd
    does, and each also names its id in a ``waveformId`` user parameter,
    with ``Phase`` (Acquisition or Learning: PMU only) and, where the layout is fixed,
    ``TriggerChannel``.  Every id that :mod:`pipeline.raw.pmu` and
    :mod:`pipeline.raw.twix` can write is declared whether or not the
    measurement has it, since which packets a measurement holds is known
    only once it is read.
    """
    entries: list[tuple[int, str, str, int | None, str | None]] = [
        (ident + LEARNING_PHASE_OFFSET * learning, name, kind, trigger, phase)
        for learning, phase in ((0, "Acquisition"), (1, "Learning"))
        for ident, name, kind, trigger in _PMU_WAVEFORMS
    ]
    # A SYNCDATA packet that is not PMU data, kept verbatim (see pipeline.raw.twix).
    entries.append((SYNCDATA_WAVEFORM_ID, "SYNCDATA", "other", None, None))
    for ident, name, kind, trigger, phase in entries:
        info = _sub(root, "waveformInformation")
        _sub(info, "waveformName", name)
        _sub(info, "waveformType", kind)
        parameters = _sub(info, "userParameters")
        longs = [("waveformId", ident)] + ([] if trigger is None else [("TriggerChannel", trigger)])
        for key, value in longs:
            parameter = _sub(parameters, "userParameterLong")
            _sub(parameter, "name", key)
            _sub(parameter, "value", str(value))
        if phase is not None:
            parameter = _sub(parameters, "userParameterString")
            _sub(parameter, "name", "Phase")
            _sub(parameter, "value", phase)


# --- reading any ISMRMRD header ---------------------------------------------------


@dataclass(frozen=True)
class SubjectHints:
    """What an ISMRMRD header says about whose data it is (all PHI; any may be None)."""

    patient_id: str | None = field(default=None, repr=False)
    patient_name: str | None = field(default=None, repr=False)
    birth_date: str | None = field(default=None, repr=False)
    study_uid: str | None = field(default=None, repr=False)
    frame_of_reference_uid: str | None = field(default=None, repr=False)
    series_uid_root: str | None = field(default=None, repr=False)
    measurement_id: str | None = field(default=None, repr=False)
    # Siemens' study LOID or another converter's study ID: groups the
    # measurements of one exam when the header has no study instance UID.
    study_id: str | None = field(default=None, repr=False)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_header_xml(xml: str | bytes) -> ET.Element:
    """Parse an ISMRMRD header, or raise :class:`UnreadableInput` without quoting it."""
    try:
        return ET.fromstring(xml)
    except ET.ParseError as exc:
        line, column = exc.position
        raise UnreadableInput(
            f"the ISMRMRD header is not well-formed XML (line {line}, column {column})"
        ) from None


def subject_hints(xml: str) -> SubjectHints:
    """Identity fields of any ISMRMRD header, from any converter, with or without namespace."""
    root = parse_header_xml(xml)

    def find(section: str, name: str) -> str | None:
        for child in root:
            if _local(child.tag) == section:
                for grandchild in child:
                    if _local(grandchild.tag) == name and (grandchild.text or "").strip():
                        return (grandchild.text or "").strip()
        return None

    return SubjectHints(
        patient_id=find("subjectInformation", "patientID"),
        patient_name=find("subjectInformation", "patientName"),
        birth_date=find("subjectInformation", "patientBirthdate"),
        study_uid=find("studyInformation", "studyInstanceUID"),
        frame_of_reference_uid=find("measurementInformation", "frameOfReferenceUID"),
        series_uid_root=find("measurementInformation", "seriesInstanceUIDRoot"),
        measurement_id=find("measurementInformation", "measurementID"),
        study_id=find("studyInformation", "studyID"),
    )


@lru_cache(maxsize=1)
def _parse_buffer() -> Callable[[str], dict[str, object]]:
    """twixtools' XProtocol parser, loaded on first use without the twixtools package.

    ``import twixtools.twixprot`` runs the package's ``__init__``, which pulls in
    twixtools' reader, scipy and matplotlib: 1.2 s on an idle core, over 3 s on a
    busy one, paid by every worker process that converts a twix file.  The parser's
    own module (``twixprot.py``) needs only ``re``, ``struct`` and numpy, so it is
    loaded alone from the installed package, found without importing it.
    """
    spec = importlib.util.find_spec("twixtools")  # a top-level spec: __init__ is not run
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("twixtools is not installed: reinstall mricurate (make install)")
    source = Path(next(iter(spec.submodule_search_locations))) / "twixprot.py"
    module_spec = importlib.util.spec_from_file_location("_mricurate_twixprot", source)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"twixtools has no {source.name}: reinstall mricurate (make install)")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.parse_buffer  # type: ignore[no-any-return]
