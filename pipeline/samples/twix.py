"""Synthetic Siemens twix files for tests and the conversion bench.

The MDHs are built with twixtools' own ctypes definitions (``mdh_def``) and
the multi-raid table with its ``hdr_def``, not with the reader's numpy
layouts, so a test that reads these files back checks the reader against an
independent description of the format.  Files are written readout by readout
(one slice of samples in memory at a time), so the bench can make files of
several gigabytes without holding them.

The protocol header is written from a template modelled on a real VE11C
header (twixtools' example ``gre.dat``): the buffers real files have
(Config, Dicom, Meas, MeasYaps, Phoenix, Spice), each parameter in the buffer
and the XProtocol/ASCCONV spelling the scanner uses, and every parameter that
:func:`pipeline.raw.protocol.ismrmrd_header` reads, so a synthetic file goes
through the whole conversion (header, allowlist, schema) like a real one.
The sizes follow the generated data (readout samples with 2x oversampling,
lines, slices, partitions, channels).  Every identifying field a real header
has (patient, birth date, sex, weight, height, institution and address,
station, device serial number, referring physician, study description, the
exam date inside the LOIDs and UIDs) carries a planted value from
:class:`SyntheticMeasurement`, so a test can check none of it is released.
``vb17=True`` writes the VB17 flavour: the bare ASCCONV marker, a VB17
baseline, ``dFlipAngleDegree`` instead of ``adFlipAngleDegree``, and none of
the parameters VB17 lacks (table position, recon dependencies).
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from twixtools import hdr_def, mdh_def

RAID_TABLE_BYTES = 10240  # twixtools and the scanners leave 10 KiB for the table
# Real headers are far larger (gre.dat: 786 KB); a VB17 reader relies on > 10,000.
# Both flavours are padded to this size, so a header's length does not depend on
# the flavour for the shapes tests use.
MIN_HEADER_BYTES = 65536
GYROMAGNETIC_HZ_PER_T = 42_577_478.92  # 1H, CODATA 2018


@dataclass(frozen=True)
class SyntheticMeasurement:
    """Shape, content and planted identity of one generated measurement.

    The identity fields are made up and are PHI as far as a test is
    concerned: none of them may reach a release.
    """

    protocol_name: str = "CORPD_FBK"  # a fastMRI-style label
    patient_name: str = "DOE^JANE"
    patient_id: str = "PID-SYN-40417"
    birth_date: str = "19580312"  # YYYYMMDD
    sex: str = "F"  # F, M or O
    weight_kg: float = 71.5
    height_m: float = 1.68
    institution: str = "Synthetic Memorial Hospital"
    institution_address: str = "Ludgate Hill 12,Springfield,District,DE,53111"
    station_name: str = "SYNMR-ROOM-3"
    serial: str = "176543"  # device serial number: also in the UIDs and LOIDs
    referring_physician: str = "HOUSE^GREGORY"
    study_description: str = "Knie DOE JANE"  # operators type names into it
    exam_date: str = "20240311"  # YYYYMMDD, in the exam's LOID and frame of reference
    exam_time: str = "093015"  # hhmmss
    patient_loid: int = 81234560
    study_loid: int = 81234565
    patient_position: str = "FFS"  # knees go in feet first
    body_part: str = "KNEE"  # tBodyPartExamined (a head scan's raw data is held by rules/deface)
    field_strength_t: float = 2.89362
    tr_us: int = 2_800_000
    te_us: int = 27_000
    flip_angle_deg: float = 150.0
    readout_fov_mm: float = 140.0
    phase_fov_mm: float = 140.0
    slice_thickness_mm: float = 3.0
    channels: int = 4
    samples: int = 64  # per readout, with the 2x readout oversampling
    lines: int = 8
    slices: int = 2
    partitions: int = 1
    contrasts: int = 1  # echoes per line (Counter.Eco), TE = te_us, 2 * te_us ...
    noise: bool = False  # every readout NOISEADJSCAN (a noise adjustment measurement)
    ref_lines: int = 0  # first lines of each slice are PATREFSCAN (ACS) readouts
    syncdata_every: int = 0  # a non-PMU SYNCDATA packet after every n-th readout (0: none)
    pmu_every: int = 0  # a PMU physiology packet (ECG1, ECG2, PULS, RESP) after every n-th
    meas_id: int = 101
    file_id: int = 7
    dwell_time_ns: int = 2500
    max_channels: int = 0  # iMaxNoOfRxChannels; 0: the number of channels, as real files have
    software_version: str = "syngo MR E11"
    seed: int = 0

    @property
    def readouts(self) -> int:
        return self.lines * self.slices * self.partitions * self.contrasts

    @property
    def rx_channels(self) -> int:
        return self.max_channels or self.channels

    @property
    def uid_root(self) -> str:
        """The scanner's DICOM UID root: Siemens' root and the serial number."""
        return f"1.3.12.2.1107.5.2.19.{self.serial}"

    @property
    def frame_of_reference(self) -> str:
        return f"{self.uid_root}.1.{self.exam_date}{self.exam_time}412.0.0.0"


def expected_kspace(meas: SyntheticMeasurement) -> np.ndarray:
    """The samples written: complex64 ``(slices, partitions, lines, contrasts, channels, samples)``.

    For tests, at test sizes: the whole measurement in memory.
    """
    shape = (meas.slices, meas.partitions, meas.lines, meas.contrasts, meas.channels, meas.samples)
    out = np.empty(shape, np.complex64)
    for sli, par, lin, eco, data in _readouts(meas):
        out[sli, par, lin, eco] = data
    return out


# --- the protocol header ----------------------------------------------------------
#
# XProtocol parameters are written as the scanner writes them (two-space gaps,
# <Precision> on doubles, an empty ``{ }`` for an unset value); twixtools'
# ``parse_buffer`` and the regular expressions of pipeline.raw.twix read them.


def _string(name: str, value: str) -> str:
    return (
        f'<ParamString."{name}">  {{ "{value}"  }}' if value else f'<ParamString."{name}">  {{ }}'
    )


def _long(name: str, *values: int) -> str:
    body = " ".join(str(v) for v in values)
    return f'<ParamLong."{name}">  {{ {body}  }}' if values else f'<ParamLong."{name}">  {{ }}'


def _double(name: str, *values: float) -> str:
    if not values:
        return f'<ParamDouble."{name}">  {{ }}'
    body = " ".join(f"{v:.6f}" for v in values)
    return f'<ParamDouble."{name}">  {{ <Precision> 6  {body}  }}'


def _map(name: str, params: list[str], depth: int = 2) -> str:
    pad = "  " * depth
    inner = "".join(f"{pad}  {p}\n" for p in params)
    return f'{pad}<ParamMap."{name}"> \n{pad}{{\n{pad}  \n{inner}{pad}}}\n'


def _xprotocol(maps: list[str]) -> str:
    return '<XProtocol> \n{\n  \n  <ParamMap.""> \n  {\n' + "".join(maps) + "  }\n}\n"


_SEX = {"F": 1, "M": 2, "O": 3}


def _config(m: SyntheticMeasurement, *, vb17: bool) -> str:
    exam_uid = f"6_0_{m.study_loid}_{m.exam_date}_{m.exam_time}_650"
    return _xprotocol(
        [
            _map(
                "RECOMPOSE",
                [
                    _string("PatientID", m.patient_id),
                    _string("PatientBirthDay", m.birth_date),
                    _long("PatientSex", _SEX.get(m.sex, 3)),
                    _string("tPatientName", m.patient_name),
                    _string("PatientLOID", f"6.0.{m.patient_loid}"),
                    _string("StudyLOID", f"6.0.{m.study_loid}"),
                    _string("SeriesLOID", f"6.0.{m.study_loid + 4}"),
                    _string("tStudyDescription", m.study_description),
                ],
            ),
            _map(
                "DERIVED",
                [
                    _long("ImageLines", m.lines),
                    _long("ImageColumns", m.samples // 2),
                    _double("phaseOversampling"),
                ],
            ),
            _map(
                "SliceDescription",
                [
                    _string("FrameOfReference", m.frame_of_reference),
                    _string("PatientPosition", m.patient_position),
                ],
            ),
            _map(
                "RAIDLocal",
                [
                    _long("MeasUID", m.meas_id),
                    _string("ProtocolName", m.protocol_name),
                    _string("PatientName", m.patient_name),
                    _string("PatientBirthDay", m.birth_date),
                ],
            ),
            _map("ExamMemoryService", [_string("ExamMemoryUID", exam_uid)] if not vb17 else []),
            _map("Sequence", [_string("SequenceDescription", m.protocol_name)]),
        ]
    )


def _dicom(m: SyntheticMeasurement, *, vb17: bool) -> str:
    flip = _double("dFlipAngleDegree" if vb17 else "adFlipAngleDegree", m.flip_angle_deg)
    params = [
        _long("EchoTrainLength", 1),
        _string("SoftwareVersions", m.software_version),
        _string("Manufacturer", "SIEMENS"),
        _string("ManufacturersModelName", "Skyra"),
        _string("LongModelName", "NUMARIS/4"),
        _string("InstitutionAddress", m.institution_address),
        _string("DeviceSerialNumber", m.serial),
        _string("InstitutionName", m.institution),
        _string("StationName", m.station_name),
        _string("Modality", "MR"),
        flip,
        _long("lFrequency", _frequency(m)),
        _long("lBaseResolution", m.samples // 2),
        _long("lPhaseEncodingLines", m.lines),
        _double("flUsedPatientWeight", m.weight_kg),
        _string("tBodyPartExamined", m.body_part),
        _string("tPatientPosition", m.patient_position),
        _long("lPatientSex", _SEX.get(m.sex, 3)),
        _string("tPatientName", m.patient_name),
        _string("tReferringPhysician", m.referring_physician),
        _string("tProtocolName", m.protocol_name),
        _double("flReadoutOSFactor", 2.0),
        _double("flMagneticFieldStrength", m.field_strength_t),
    ]
    if not vb17:
        params += [_long(f"lGlobalTablePos{axis}") for axis in ("Sag", "Cor", "Tra")]
    return _xprotocol([_map("DICOM", params)])


def _frequency(m: SyntheticMeasurement) -> int:
    return round(GYROMAGNETIC_HZ_PER_T * m.field_strength_t)


def _meas(m: SyntheticMeasurement, *, vb17: bool) -> str:
    three_d = m.partitions > 1
    exam_uid = f"6_0_{m.study_loid}_{m.exam_date}_{m.exam_time}_650"
    header = [
        _string("tPatientName", m.patient_name),
        _string("PatientLOID", f"6.0.{m.patient_loid}"),
        _string("StudyLOID", f"6.0.{m.study_loid}"),
        _string("tProtocolName", m.protocol_name),
        _string("tStudyDescription", m.study_description),
    ]
    yaps = [
        _long("iMaxNoOfRxChannels", m.rx_channels),
        _long("iNoOfFourierColumns", m.samples),
        _long("iNoOfFourierLines", m.lines),
        _long("iNoOfFourierPartitions", m.partitions),
        _long("iRoFTLength", m.samples),
        _long("iPEFTLength", m.lines),
        _long("i3DFTLength", m.partitions if three_d else 1),
        _long("iNSet", 1),
        _double("flUsedPatientWeight", m.weight_kg),
        _double("flPatientHeight", m.height_m * 1000.0),
        _long("lPatientSex", _SEX.get(m.sex, 3)),
        _string("tFrameOfReference", m.frame_of_reference),
        _string("tBodyPartExamined", m.body_part),
        _string("tPatientPosition", m.patient_position),
        _double("flReadoutOSFactor", 2.0),
        _double("flMagneticFieldStrength", m.field_strength_t),
        _long("lFrequency", _frequency(m)),
        _long("alRegridRampupTime", 0, 0),
        _long("lEchoSpacing"),
        _string("tSequenceFileName", "%SiemensSeq%\\tse"),
    ]
    if not vb17:
        yaps += [_long("ReconMeasDependencies", 0, 0, 0)]
        yaps += [_long(f"lGlobalTablePos{axis}") for axis in ("Sag", "Cor", "Tra")]
    dicom = [
        _string("SoftwareVersions", m.software_version),
        _string("Manufacturer", "SIEMENS"),
        _string("ManufacturersModelName", "Skyra"),
        _string("InstitutionAddress", m.institution_address),
        _string("DeviceSerialNumber", m.serial),
        _string("InstitutionName", m.institution),
        _string("StationName", m.station_name),
        _string("DICOM_UID_ROOT", m.uid_root),
    ]
    recompose = [
        _string("PatientID", m.patient_id),
        _string("PatientBirthDay", m.birth_date),
        _string("PatientName", m.patient_name),
        _string("PatientPosition", m.patient_position),
        _string("FrameOfReference", m.frame_of_reference),
        _long("MeasUID", m.meas_id),
        _long("ImageLines", m.lines),
        _long("ImageColumns", m.samples // 2),
        _double("phaseOversampling"),
    ]
    maps = [
        _map("HEADER", header),
        _map("EXAM_MEMORY", [] if vb17 else [_string("ExamMemoryUID", exam_uid)]),
        _map("MEAS", [_long("alDwellTime", m.dwell_time_ns)]),
        _map("YAPS", yaps),
        _map("DICOM", dicom),
        _map("RECOMPOSE", recompose),
    ]
    return _xprotocol(maps)


def _ascconv(m: SyntheticMeasurement, *, vb17: bool) -> str:
    """The MeasYaps text: the sequence's own protocol (ASCCONV)."""
    three_d = m.partitions > 1
    if vb17:
        lines = ["### ASCCONV BEGIN ###", "ulVersion\t = \t21710006"]
    else:
        lines = [
            "### ASCCONV BEGIN object=MrProtDataImpl@MrProtocolData version=51130001 "
            "converter=%MEASCONST%/ConverterList/Prot_Converter.txt ###",
            "ulVersion\t = \t51130001",
        ]
    baseline = "N4_VB17A_LATEST_20090307" if vb17 else "N4_VE11C_LATEST_20160120"

    def add(key: str, value: object) -> None:
        lines.append(f"{key}\t = \t{value}")

    add("tSequenceFileName", '"%SiemensSeq%\\tse"')
    add("tProtocolName", f'"{m.protocol_name}"')
    add("lContrasts", m.contrasts)
    add("lAverages", 1)
    add("lRepetitions", 0)
    add("ucSequenceType", 8)  # TurboSpinEcho, as fastMRI's knee protocols
    add("sProtConsistencyInfo.tBaselineString", f'"{baseline}"')
    add("sProtConsistencyInfo.flNominalB0", m.field_strength_t)
    add("sTXSPEC.asNucleusInfo[0].tNucleus", '"1H"')
    add("sTXSPEC.asNucleusInfo[0].lFrequency", _frequency(m))
    add("sRXSPEC.alDwellTime[0]", m.dwell_time_ns)
    add("alTR[0]", m.tr_us)
    for k in range(m.contrasts):
        add(f"alTE[{k}]", m.te_us * (k + 1))
    if vb17:
        add("dFlipAngleDegree", m.flip_angle_deg)
    else:
        add("adFlipAngleDegree[0]", m.flip_angle_deg)
    add("sSliceArray.lSize", m.slices)
    for k in range(m.slices):
        slice_ = f"sSliceArray.asSlice[{k}]"
        add(f"{slice_}.dThickness", m.slice_thickness_mm)
        add(f"{slice_}.dPhaseFOV", m.phase_fov_mm)
        add(f"{slice_}.dReadoutFOV", m.readout_fov_mm)
        add(f"{slice_}.sPosition.dSag", -2.5)
        add(f"{slice_}.sPosition.dCor", 53.9)
        add(f"{slice_}.sPosition.dTra", -54.0 + 4.0 * k)
        add(f"{slice_}.sNormal.dTra", 1.0)
    add("sKSpace.lBaseResolution", m.samples // 2)
    add("sKSpace.lPhaseEncodingLines", m.lines)
    add("sKSpace.lPartitions", m.partitions)
    add("sKSpace.lImagesPerSlab", m.partitions)
    add("sKSpace.ucDimension", 4 if three_d else 2)
    add("sKSpace.ucTrajectory", 1)
    add("sKSpace.dSliceOversamplingForDialog", 0.0)
    add("sFastImaging.lTurboFactor", 1)
    add("sFastImaging.lSegments", 1)
    add("sFastImaging.ucSegmentationMode", 1)
    add("sPhysioImaging.lPhases", 1)
    add("sPat.lAccelFactPE", 1)
    add("sPat.lAccelFact3D", 1)
    add("sPat.ucPATMode", 1)
    add("sPat.ucRefScanMode", 1)
    if m.ref_lines:
        add("sPat.lRefLinesPE", m.ref_lines)
    select = "sCoilSelectMeas.aRxCoilSelectData[0]"
    add(f"{select}.tNucleus", '"1H"')
    add(f"{select}.asList.__attribute__.size", m.channels)
    for c in range(m.channels):
        element = f"{select}.asList[{c}]"
        add(f"{element}.lElementSelected", 1)
        add(f"{element}.lRxChannelConnected", c + 1)
        add(f"{element}.lADCChannelConnected", c)
        add(f"{element}.sCoilElementID.tCoilID", '"KneeCoil"')
        add(f"{element}.sCoilElementID.lCoilCopy", 1)
        add(f"{element}.sCoilElementID.tElement", f'"K{c + 1:02d}"')
    lines.append("### ASCCONV END ###")
    return "\n".join(lines) + "\n"


def protocol_header(meas: SyntheticMeasurement, *, vb17: bool = False) -> bytes:
    """A measurement header: ``hdr_len``, buffer count, then named buffers.

    ``vb17``: the VB17 flavour of the protocol (see the module docstring).
    The header is padded to a multiple of 32 bytes, at least
    :data:`MIN_HEADER_BYTES`, as scanners align the first readout.
    """
    yaps = _ascconv(meas, vb17=vb17)
    phoenix = '<XProtocol> \n{\n  <Name> "Phoenix" \n  \n  <ParamMap.""> \n  {\n  }\n}\n' + yaps
    buffers = [
        ("Config", _config(meas, vb17=vb17)),
        ("Dicom", _dicom(meas, vb17=vb17)),
        ("Meas", _meas(meas, vb17=vb17)),
        ("MeasYaps", yaps),
        ("Phoenix", phoenix),
        ("Spice", '<XProtocol> \n{\n  <Name> "Spice" \n}\n'),
    ]
    body = b"".join(
        name.encode() + b"\x00" + len(data).to_bytes(4, "little") + data
        for name, data in ((n, t.encode("latin-1")) for n, t in buffers)
    )
    length = max(MIN_HEADER_BYTES, 8 + len(body))
    length += -length % 32
    return (
        length.to_bytes(4, "little")
        + len(buffers).to_bytes(4, "little")
        + body
        + b"\x00" * (length - 8 - len(body))
    )


_Readout = tuple[int, int, int, int, np.ndarray]


def _readouts(meas: SyntheticMeasurement) -> Iterator[_Readout]:
    """(slice, partition, line, echo, complex64 channels x samples) in acquisition order."""
    rng = np.random.default_rng(meas.seed)
    echoes = meas.contrasts
    for sli in range(meas.slices):
        for par in range(meas.partitions):
            block = rng.standard_normal(
                (meas.lines * echoes, meas.channels, 2 * meas.samples), dtype=np.float32
            )
            block *= np.float32(1e-6)  # the scale of real k-space samples
            samples = block.view(np.complex64)
            for lin in range(meas.lines):
                for eco in range(echoes):
                    yield sli, par, lin, eco, samples[lin * echoes + eco]


def _flags(meas: SyntheticMeasurement, lin: int, eco: int) -> list[str]:
    flags = ["ONLINE"]
    if meas.noise:
        flags = ["NOISEADJSCAN"]
    elif lin < meas.ref_lines:
        flags.append("PATREFSCAN")
    if lin == 0 and eco == 0:
        flags.append("FIRSTSCANINSLICE")
    if lin == meas.lines - 1 and eco == meas.contrasts - 1:
        flags.append("LASTSCANINSLICE")
    if lin % 2 == 1 and not meas.noise:
        flags.append("REFLECT")
    return flags


def _fill(
    mdh: ctypes.Structure,
    meas: SyntheticMeasurement,
    counter: int,
    readout: _Readout,
) -> None:
    sli, par, lin, eco, data = readout
    mdh.MeasUID = meas.meas_id
    mdh.ScanCounter = counter
    mdh.TimeStamp = 20_000_000 + 100 * counter
    mdh.PMUTimeStamp = 10_000_000 + 100 * counter
    mdh.SamplesInScan = data.shape[1]
    mdh.UsedChannels = data.shape[0]
    mdh.Counter.Lin = lin
    mdh.Counter.Sli = sli
    mdh.Counter.Par = par
    mdh.Counter.Eco = eco
    mdh.Counter.Ida = 3
    mdh.CutOff.Pre = 2
    mdh.CutOff.Post = 1
    mdh.CenterCol = data.shape[1] // 2
    mdh.CenterLin = meas.lines // 2
    mdh.TimeSinceLastRF = 1234
    mdh.SliceData.SlicePos.Sag = -2.5
    mdh.SliceData.SlicePos.Cor = 53.9
    mdh.SliceData.SlicePos.Tra = -54.0 + 4.0 * sli
    quaternion = (0.7069765, -0.01357464, 0.01357464, 0.7069765)
    for k, value in enumerate(quaternion):
        mdh.SliceData.Quaternion[k] = value
    for k in range(4):
        mdh.IceProgramPara[k] = 10 + k
    for name in _flags(meas, lin, eco):
        mdh_def.add_flag(mdh, name)


def _syncdata_payload(counter: int) -> bytes:
    """A SeqData packet that is not PMU data: kept verbatim by the converter."""
    body = counter.to_bytes(4, "little") * 8
    return (
        len(body).to_bytes(4, "little")
        + b"SYNTHETIC".ljust(52, b"\x00")
        + (0).to_bytes(4, "little")
        + body
    )


#: Signals of the synthetic PMU packets: (magic, period); 20 ms of data per packet.
PMU_SIGNALS = ((0x01010000, 1), (0x01020000, 1), (0x01050000, 2), (0x01060000, 4))
PMU_DURATION = 20


def pmu_payload(counter: int, *, learning: bool = False) -> bytes:
    """A VD/VE PMU SeqData packet (layout of twixtools' ``PMUblock``), values from ``counter``."""
    body = struct.pack("<4I", 1000 + counter, 2000 + 10 * counter, counter, PMU_DURATION)
    for k, (magic, period) in enumerate(PMU_SIGNALS):
        count = PMU_DURATION // period
        values = (np.arange(count, dtype=np.uint16) * (k + 1) + counter) % 4096
        triggers = (np.arange(count) % 7 == k).astype(np.uint16)
        pairs = np.stack([values, triggers], axis=1).astype("<u2")
        body += struct.pack("<2I", magic, period) + pairs.tobytes()
    body += struct.pack("<I", 0x01FF0000)
    ident = b"PMULearnPhase" if learning else b"PMUData"
    return struct.pack("<I", len(body)) + ident.ljust(52, b"\x00") + struct.pack("<I", 0) + body


def _write_syncdata(fh: BinaryIO, meas: SyntheticMeasurement, counter: int, payload: bytes) -> None:
    sync = mdh_def.Scan_header(
        MeasUID=meas.meas_id, ScanCounter=0, TimeStamp=20_000_000 + 100 * counter
    )
    mdh_def.add_flag(sync, "SYNCDATA")
    mdh_def.set_dma_len(sync, ctypes.sizeof(sync) + len(payload))
    fh.write(bytes(sync) + payload)


def _write_vd_measurement(fh: BinaryIO, meas: SyntheticMeasurement) -> None:
    fh.write(protocol_header(meas))
    counter = 0
    for readout in _readouts(meas):
        data = readout[-1]
        counter += 1
        scan = mdh_def.Scan_header()
        _fill(scan, meas, counter, readout)
        scan.PTABPosZ = -1_040_015
        mdh_def.set_dma_len(scan, ctypes.sizeof(scan) + data.shape[0] * (32 + 8 * data.shape[1]))
        parts = [bytes(scan)]
        for c in range(data.shape[0]):
            channel = mdh_def.Channel_header(MeasUID=meas.meas_id, ScanCounter=counter, ChannelId=c)
            parts.append(bytes(channel))
            parts.append(data[c].tobytes())
        fh.write(b"".join(parts))
        if meas.syncdata_every and counter % meas.syncdata_every == 0:
            _write_syncdata(fh, meas, counter, _syncdata_payload(counter))
        if meas.pmu_every and counter % meas.pmu_every == 0:
            learning = counter == meas.pmu_every  # the first packet: the learning phase
            _write_syncdata(fh, meas, counter, pmu_payload(counter, learning=learning))
    end = mdh_def.Scan_header(MeasUID=meas.meas_id, ScanCounter=counter + 1)
    mdh_def.add_flag(end, "ACQEND")
    mdh_def.set_dma_len(end, ctypes.sizeof(end) + 160)
    fh.write(bytes(end) + b"\x00" * 160)


def write_vd_twix(path: Path, measurements: list[SyntheticMeasurement]) -> None:
    """Write a VD/VE multi-raid twix file with these measurements, streaming."""
    table = np.zeros(1, dtype=hdr_def.MultiRaidFileHeader)[0]
    table["hdr"]["count_"] = len(measurements)
    with open(path, "xb") as fh:
        fh.write(b"\x00" * RAID_TABLE_BYTES)
        for k, meas in enumerate(measurements):
            offset = fh.tell()
            _write_vd_measurement(fh, meas)
            entry = table["entry"][k]
            entry["measId_"] = meas.meas_id
            entry["fileId_"] = meas.file_id
            entry["off_"] = offset
            entry["len_"] = fh.tell() - offset
            entry["patName_"] = meas.patient_name.encode("latin-1")
            entry["protName_"] = meas.protocol_name.encode("latin-1")
            fh.write(b"\x00" * (-fh.tell() % 512))
        fh.seek(0)
        fh.write(table.tobytes())


def write_vb17_twix(path: Path, meas: SyntheticMeasurement) -> None:
    """Write a VB17 twix file: one measurement, one 128-byte MDH before every channel."""
    with open(path, "xb") as fh:
        fh.write(protocol_header(meas, vb17=True))
        counter = 0
        for readout in _readouts(meas):
            data = readout[-1]
            counter += 1
            parts = []
            for c in range(data.shape[0]):
                mdh = mdh_def.VB17_header()
                _fill(mdh, meas, counter, readout)
                mdh.ChannelId = c
                mdh.PTABPosNeg = 1234
                mdh_def.set_dma_len(mdh, data.shape[0] * (ctypes.sizeof(mdh) + 8 * data.shape[1]))
                parts.append(bytes(mdh))
                parts.append(data[c].tobytes())
            fh.write(b"".join(parts))
        end = mdh_def.VB17_header(MeasUID=meas.meas_id, ScanCounter=counter + 1)
        mdh_def.add_flag(end, "ACQEND")
        mdh_def.set_dma_len(end, ctypes.sizeof(end))
        fh.write(bytes(end))
        fh.write(b"\x00" * (-fh.tell() % 512))
