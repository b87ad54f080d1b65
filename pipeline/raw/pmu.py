"""Siemens physiology (PMU) packets in SYNCDATA readouts, as ISMRMRD waveforms.

VD/VE files carry the scanner's physiological monitoring (ECG, pulse,
respiration, external triggers) in SYNCDATA readouts whose SeqData ID starts
with ``PMU``.  siemens_to_ismrmrd turns each packet into waveforms and this
module does the same, so that gating signals reach the release:

* ECG1..ECG4 together as one waveform, ``waveform_id`` 0: one channel per ECG
  lead, then one trigger channel (the OR of the leads' trigger bits);
* PULS, RESP, EXT1, EXT2 as ``waveform_id`` 1, 2, 3, 4, two channels each
  (signal, trigger);
* packets of the learning phase (``PMULearnPhase``) with 5 added to the id.

``time_stamp`` is the packet's time stamp, ``sample_time_us`` its duration
(in 100 µs units) spread over the samples, ``scan_counter`` the number of
acquisitions before it.  Anything else (another SeqData ID, XA's newer PMU
layout, a malformed packet) is not decoded here: the caller keeps it
verbatim (see :data:`pipeline.raw.twix.SYNCDATA_WAVEFORM_ID`).
"""

from __future__ import annotations

import struct

import numpy as np

from pipeline.raw.blocks import WAVEFORM_HEADER_DTYPE

SEQDATA_HEADER_BYTES = 60  # packet_size (u32), id (52 chars), swapped (u32)

ECG = {0x01010000: 0, 0x01020000: 1, 0x01030000: 2, 0x01040000: 3}
OTHER = {0x01050000: 1, 0x01060000: 2, 0x01070000: 3, 0x01080000: 4}  # PULS RESP EXT1 EXT2
END = 0x01FF0000
LEARNING_PHASE_OFFSET = 5


class NotPmu(Exception):
    """The packet is not PMU data this module can decode."""


def decode_pmu(
    packet: bytes, *, measurement_uid: int, scan_counter: int
) -> list[tuple[np.void, np.ndarray]]:
    """Waveforms ``(header, uint32 data of channels x samples)`` of one PMU packet.

    Raises
    ------
    NotPmu
        Not a PMU packet, or not one laid out as siemens_to_ismrmrd reads it.
    """
    if len(packet) < SEQDATA_HEADER_BYTES + 24:
        raise NotPmu("too short")
    ident = packet[4:56].split(b"\x00", 1)[0]
    if not ident.startswith(b"PMU"):
        raise NotPmu("not PMU data")
    learning = ident.startswith(b"PMULearnPhase")
    at = SEQDATA_HEADER_BYTES
    _, timestamp, _, duration = struct.unpack_from("<4I", packet, at)
    at += 16
    ecg: dict[int, np.ndarray] = {}
    other: dict[int, np.ndarray] = {}
    while True:
        if at + 4 > len(packet):
            raise NotPmu("no END marker")
        (magic,) = struct.unpack_from("<I", packet, at)
        at += 4
        if magic == END:
            break
        if magic not in ECG and magic not in OTHER:
            raise NotPmu("unknown signal")
        if at + 4 > len(packet):
            raise NotPmu("cut short")
        (period,) = struct.unpack_from("<I", packet, at)
        at += 4
        if period == 0:
            raise NotPmu("zero period")
        count = duration // period
        if at + 4 * count > len(packet):
            raise NotPmu("cut short")
        pairs = np.frombuffer(packet, dtype="<u2", count=2 * count, offset=at).reshape(count, 2)
        at += 4 * count
        (ecg if magic in ECG else other)[magic] = pairs
    offset = LEARNING_PHASE_OFFSET if learning else 0
    out: list[tuple[np.void, np.ndarray]] = []
    if ecg:
        leads = [ecg[key] for key in sorted(ecg)]
        n = leads[0].shape[0]
        if any(lead.shape[0] != n for lead in leads):
            raise NotPmu("ECG leads of different lengths")
        data = np.zeros((len(leads) + 1, n), dtype=np.uint32)
        for k, lead in enumerate(leads):
            data[k] = lead[:, 0]
            data[-1] |= lead[:, 1]
        out.append((_header(0 + offset, data, timestamp, duration), data))
    for magic in sorted(other):
        pairs = other[magic]
        data = pairs.T.astype(np.uint32)
        out.append((_header(OTHER[magic] + offset, data, timestamp, duration), data))
    for head, _ in out:
        head["measurement_uid"] = measurement_uid
        head["scan_counter"] = scan_counter
    return out


def _header(waveform_id: int, data: np.ndarray, timestamp: int, duration: int) -> np.void:
    head: np.void = np.zeros(1, dtype=WAVEFORM_HEADER_DTYPE)[0]
    channels, samples = data.shape
    head["version"] = 1
    head["time_stamp"] = timestamp
    head["number_of_samples"] = samples
    head["channels"] = channels
    head["waveform_id"] = waveform_id
    head["sample_time_us"] = duration * 100 / samples if samples else 0.0
    return head
