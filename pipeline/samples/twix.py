"""Synthetic Siemens twix files for tests and the conversion bench.

The MDHs are built with twixtools' own ctypes definitions (``mdh_def``) and
the multi-raid table with its ``hdr_def``, not with the reader's numpy
layouts, so a test that reads these files back checks the reader against an
independent description of the format.  Files are written readout by readout
(one slice of samples in memory at a time), so the bench can make files of
several gigabytes without holding them.

The protocol header is a minimal one with the buffers real files have
(Config, Dicom, Meas, MeasYaps, Phoenix, Spice) and the few values the
converter reads (dwell time, receiver channels, software version, protocol
name); it may carry a planted patient name to check it goes nowhere.
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
MIN_HEADER_BYTES = 16384  # real headers are far larger; a VB17 reader relies on > 10,000


@dataclass(frozen=True)
class SyntheticMeasurement:
    """Shape and content of one generated measurement."""

    protocol_name: str = "synthetic_gre"
    patient_name: str = "DOE^JANE"
    channels: int = 4
    samples: int = 64
    lines: int = 8
    slices: int = 2
    partitions: int = 1
    noise: bool = False  # every readout NOISEADJSCAN (a noise adjustment measurement)
    ref_lines: int = 0  # first lines of each slice are PATREFSCAN (ACS) readouts
    syncdata_every: int = 0  # a non-PMU SYNCDATA packet after every n-th readout (0: none)
    pmu_every: int = 0  # a PMU physiology packet (ECG1, ECG2, PULS, RESP) after every n-th
    meas_id: int = 101
    file_id: int = 7
    dwell_time_ns: int = 2500
    max_channels: int = 32
    software_version: str = "syngo MR E11"
    seed: int = 0

    @property
    def readouts(self) -> int:
        return self.lines * self.slices * self.partitions


def protocol_header(meas: SyntheticMeasurement) -> bytes:
    """A measurement header: ``hdr_len``, buffer count, then named buffers."""
    dicom = (
        '<XProtocol>\n{\n  <ParamMap."DICOM">\n  {\n'
        f'    <ParamString."SoftwareVersions">  {{ "{meas.software_version}"  }}\n'
        f'    <ParamString."tProtocolName">  {{ "{meas.protocol_name}"  }}\n'
        f'    <ParamString."tPatientName">  {{ "{meas.patient_name}"  }}\n'
        "  }\n}\n"
    )
    config = (
        '<XProtocol>\n{\n  <ParamMap."">\n  {\n'
        f'    <ParamString."tPatientName">  {{ "{meas.patient_name}"  }}\n'
        f'    <ParamString."SequenceDescription">  {{ "{meas.protocol_name}"  }}\n'
        "  }\n}\n"
    )
    meas_buffer = (
        '<XProtocol>\n{\n  <ParamMap."MEAS">\n  {\n'
        f'    <ParamLong."iMaxNoOfRxChannels">  {{ {meas.max_channels}  }}\n'
        f'    <ParamLong."alDwellTime">  {{ {meas.dwell_time_ns}  }}\n'
        f'    <ParamString."SoftwareVersions">  {{ "{meas.software_version}"  }}\n'
        "  }\n}\n"
    )
    yaps = (
        "### ASCCONV BEGIN ###\n"
        f'tProtocolName\t = \t"{meas.protocol_name}"\n'
        f"sRXSPEC.alDwellTime[0]\t = \t{meas.dwell_time_ns}\n"
        f"sKSpace.lBaseResolution\t = \t{meas.samples // 2}\n"
        f"sKSpace.lPhaseEncodingLines\t = \t{meas.lines}\n"
        f"sSliceArray.lSize\t = \t{meas.slices}\n"
        "### ASCCONV END ###\n"
    )
    buffers = [
        ("Config", config),
        ("Dicom", dicom),
        ("Meas", meas_buffer),
        ("MeasYaps", yaps),
        ("Phoenix", yaps),
        ("Spice", "<XProtocol>\n{\n}\n"),
    ]
    body = b"".join(
        name.encode() + b"\x00" + len(text.encode()).to_bytes(4, "little") + text.encode()
        for name, text in buffers
    )
    length = max(MIN_HEADER_BYTES, 8 + len(body))
    length += -length % 32
    return (
        length.to_bytes(4, "little")
        + len(buffers).to_bytes(4, "little")
        + body
        + b"\x00" * (length - 8 - len(body))
    )


def _readouts(meas: SyntheticMeasurement) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """(slice, partition, line, complex64 channels x samples) in acquisition order."""
    rng = np.random.default_rng(meas.seed)
    for sli in range(meas.slices):
        for par in range(meas.partitions):
            block = rng.standard_normal(
                (meas.lines, meas.channels, 2 * meas.samples), dtype=np.float32
            )
            block *= np.float32(1e-6)  # the scale of real k-space samples
            samples = block.view(np.complex64)
            for lin in range(meas.lines):
                yield sli, par, lin, samples[lin]


def _flags(meas: SyntheticMeasurement, sli: int, lin: int) -> list[str]:
    flags = ["ONLINE"]
    if meas.noise:
        flags = ["NOISEADJSCAN"]
    elif lin < meas.ref_lines:
        flags.append("PATREFSCAN")
    if lin == 0:
        flags.append("FIRSTSCANINSLICE")
    if lin == meas.lines - 1:
        flags.append("LASTSCANINSLICE")
    if lin % 2 == 1 and not meas.noise:
        flags.append("REFLECT")
    return flags


def _fill(
    mdh: ctypes.Structure,
    meas: SyntheticMeasurement,
    counter: int,
    sli: int,
    par: int,
    lin: int,
    data: np.ndarray,
) -> None:
    mdh.MeasUID = meas.meas_id
    mdh.ScanCounter = counter
    mdh.TimeStamp = 20_000_000 + 100 * counter
    mdh.PMUTimeStamp = 10_000_000 + 100 * counter
    mdh.SamplesInScan = data.shape[1]
    mdh.UsedChannels = data.shape[0]
    mdh.Counter.Lin = lin
    mdh.Counter.Sli = sli
    mdh.Counter.Par = par
    mdh.Counter.Eco = counter % 2
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
    for name in _flags(meas, sli, lin):
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
    for sli, par, lin, data in _readouts(meas):
        counter += 1
        scan = mdh_def.Scan_header()
        _fill(scan, meas, counter, sli, par, lin, data)
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
        fh.write(protocol_header(meas))
        counter = 0
        for sli, par, lin, data in _readouts(meas):
            counter += 1
            parts = []
            for c in range(data.shape[0]):
                mdh = mdh_def.VB17_header()
                _fill(mdh, meas, counter, sli, par, lin, data)
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
