"""Siemens twix (``meas_*.dat``) files, streamed into ISMRMRD acquisition blocks.

A twix file is either one VB17 measurement (protocol header, then readouts
with one MDH per channel) or a VD/VE/XA multi-raid file: a 10 KiB table of up
to 64 measurements (offset, length, IDs, patient and protocol name), each a
protocol header followed by readouts (one scan header, then a channel header
before each channel's samples).  A measurement ends with an ACQEND MDH.

:func:`open_twix` reads the table and every MDH (headers only, a few hundred
bytes per readout) so that a cut-off or malformed file is refused before any
output exists, and so the runner knows which measurement is a noise
adjustment.  :func:`measurement_blocks` then makes one sequential pass over a
measurement with large buffered reads, decodes consecutive readouts of one
shape together (numpy over the read buffer, not Python per readout) and
yields acquisitions in blocks ready for one write each; it never holds more than one block in memory, unlike
``twixtools.read_twix`` which builds a Python object per readout for the whole
file.

Messages never carry header values (the header holds the patient's name):
they say which measurement, where, and how many bytes are missing.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import UnreadableInput
from pipeline.raw.blocks import (
    ACQUISITION_DTYPE,
    WAVEFORM_DTYPE,
    WAVEFORM_HEADER_DTYPE,
    AcquisitionBlock,
    WaveformBlock,
)
from pipeline.raw.input_hash import InputHash
from pipeline.raw.mdh import (
    CHANNEL_HEADER_DTYPE,
    DMA_LENGTH_MASK,
    SCAN_HEADER_DTYPE,
    VB17_MDH_DTYPE,
    EvalInfo,
    acquisition_headers,
    noise_dwell_time_us,
    vb17_as_scan_headers,
)
from pipeline.raw.pmu import NotPmu, decode_pmu


class TwixVersion(enum.StrEnum):
    """The two twix layouts (a str: compares equal to "VB" / "VD")."""

    VB = "VB"  # VB17 and earlier: one measurement, one MDH per channel
    VD = "VD"  # VD, VE and XA: multi-raid table, scan header + channel headers


VB = TwixVersion.VB
VD = TwixVersion.VD

#: ``waveform_id`` of a SYNCDATA packet kept verbatim (ISMRMRD leaves ids >= 1024 to users):
#: anything but the PMU physiology that :mod:`pipeline.raw.pmu` decodes (other SeqData
#: IDs, VB17 packets and XA's newer PMU layout, which siemens_to_ismrmrd drops).  Its data
#: are the packet's bytes after the scan header (Siemens' 60-byte SeqData header with
#: ``packet_size`` and the ID, then the payload) zero-padded to a multiple of 4 bytes, as
#: uint32 (folded over several channels past 65,535 words); ``time_stamp`` is the MDH's,
#: ``scan_counter`` the number of acquisitions before it (as siemens_to_ismrmrd).
SYNCDATA_WAVEFORM_ID = 1024

READ_CHUNK = 8 * 2**20  # bytes per read(): large sequential reads, few system calls
#: Samples decoded together at most: runs of 1 MiB keep numpy's calls few (about 500 for
#: 500 MB) while their arrays stay small enough for malloc to reuse the memory of those
#: freed before them (runs of 8 MiB grew a worker's peak RSS by 25 MiB, of 1 MiB by 5).
RUN_BYTES = 2**20
MAX_MEASUREMENTS = 64

_RAID_ENTRY_DTYPE = np.dtype(
    [
        ("measId", "<u4"),
        ("fileId", "<u4"),
        ("off", "<u8"),
        ("len", "<u8"),
        ("patName", "S64"),
        ("protName", "S64"),
    ]
)
_RAID_HEADER_DTYPE = np.dtype(
    [("hdSize", "<u4"), ("count", "<u4"), ("entry", _RAID_ENTRY_DTYPE, (MAX_MEASUREMENTS,))]
)
RAID_HEADER_SIZE = _RAID_HEADER_DTYPE.itemsize  # 9,736 bytes

_ACQEND = EvalInfo.ACQEND.mask
_SYNCDATA = EvalInfo.SYNCDATA.mask
_NOISE = EvalInfo.NOISEADJSCAN.mask
_BUFFER_NAME = re.compile(rb"(\w{4,})\x00(.{4})", re.DOTALL)


@dataclass(frozen=True)
class TwixMeasurement:
    """One measurement of a twix file: where it is and what its header says.

    ``header_bytes`` and ``patient_name`` are PHI: never log them.
    """

    index: int
    meas_id: int
    file_id: int
    header_bytes: bytes = field(repr=False)
    patient_name: str = field(repr=False)
    protocol_name: str
    is_noise: bool
    offset: int  # first byte of the protocol header
    length: int  # bytes from offset to the end of the measurement
    data_offset: int  # first MDH
    acquisitions: int  # readouts that become ISMRMRD acquisitions (not SYNCDATA, not ACQEND)
    syncdata: int  # SYNCDATA packets (physiology and the like)


@dataclass(frozen=True)
class TwixFile:
    """A twix file's layout, as :func:`open_twix` found it."""

    path: Path
    version: TwixVersion
    size: int
    measurements: tuple[TwixMeasurement, ...]


@dataclass(frozen=True)
class _Protocol:
    """What the conversion needs from the protocol header (no PHI)."""

    dwell_time_ns: int
    max_channels: int
    software_version: str
    protocol_name: str


# ---------------------------------------------------------------------------
# Reading the file


class _Reader:
    """Sequential reads through a file in large chunks, with views into the buffer.

    A view stays valid until the next call; callers copy what they keep.
    With an :class:`~pipeline.raw.input_hash.InputHash`, every chunk read is
    also hashed, on the hash's thread: two buffers take turns, so the next
    chunk is read while the last one is being hashed.
    """

    def __init__(
        self, path: Path, chunk: int = READ_CHUNK, digest: InputHash | None = None
    ) -> None:
        self._fh = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        if hasattr(os, "posix_fadvise"):  # one pass front to back: read ahead further
            os.posix_fadvise(self._fh.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        self._chunk = chunk
        self._digest = digest
        self._buf = bytearray(chunk)
        # The other buffer, and the hash of each still reading it (the current one last).
        self._spare = bytearray(chunk if digest is not None else 0)
        self._hashing: Future[None] | None = None
        self._spare_hashing: Future[None] | None = None
        self._start = 0
        self._len = 0

    def close(self) -> None:
        self._fh.close()

    def size(self) -> int:
        """The file's size now (it may have changed since it was opened)."""
        return os.fstat(self._fh.fileno()).st_size

    def view(self, pos: int, n: int) -> memoryview | None:
        """``n`` bytes at ``pos``, or None when the file ends before them."""
        offset = pos - self._start
        if offset >= 0 and offset + n <= self._len:
            return memoryview(self._buf)[offset : offset + n]
        size = max(self._chunk, n)
        if self._digest is not None:
            # Read into the other buffer once its hash is done with it.
            if self._spare_hashing is not None:
                self._spare_hashing.result()
            self._buf, self._spare = self._spare, self._buf
            self._spare_hashing, self._hashing = self._hashing, None
        if len(self._buf) < size:
            self._buf = bytearray(size)
        self._fh.seek(pos)
        got = 0
        target = memoryview(self._buf)[:size]
        while got < size:
            k = self._fh.readinto(target[got:])
            if not k:
                break
            got += k
        self._start, self._len = pos, got
        if self._digest is not None:
            self._hashing = self._digest.feed(pos, memoryview(self._buf)[:got])
        if got < n:
            return None
        return memoryview(self._buf)[:n]

    def buffered(self, pos: int) -> memoryview:
        """Every byte already read from ``pos`` on (call right after ``view(pos, ...)``)."""
        return memoryview(self._buf)[pos - self._start : self._len]


def _pread(fd: int, n: int, pos: int) -> bytes:
    out = b""
    while len(out) < n:
        part = os.pread(fd, n - len(out), pos + len(out))
        if not part:
            break
        out += part
    return out


def _u32(data: bytes | memoryview, pos: int = 0) -> int:
    return int.from_bytes(data[pos : pos + 4], "little")


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("latin-1")


def _cut_short(what: str, declared: int, missing: int) -> UnreadableInput:
    return UnreadableInput(
        f"{what} declares {declared:,} bytes, the file ends {missing:,} bytes early: "
        "the file was cut short; copy it again from the scanner or its archive"
    )


# ---------------------------------------------------------------------------
# Layout of one readout


@dataclass(frozen=True)
class _Layout:
    """Sizes of the MDH structures of one twix version."""

    vb: bool
    header_size: int  # MDH read first (VB: the first channel's MDH)
    channel_header_size: int  # before each channel's samples (VB: the MDH itself)
    first_size: int  # bytes before the first channel header (VD: the scan header; VB: 0)

    def readout_size(self, channels: int, samples: int) -> int:
        return self.first_size + channels * (self.channel_header_size + 8 * samples)


_VB_LAYOUT = _Layout(
    vb=True,
    header_size=VB17_MDH_DTYPE.itemsize,
    channel_header_size=VB17_MDH_DTYPE.itemsize,
    first_size=0,
)
_VD_LAYOUT = _Layout(
    vb=False,
    header_size=SCAN_HEADER_DTYPE.itemsize,
    channel_header_size=CHANNEL_HEADER_DTYPE.itemsize,
    first_size=SCAN_HEADER_DTYPE.itemsize,
)


def _field_offset(dtype: np.dtype, name: str) -> int:
    fields = dtype.fields
    assert fields is not None
    return int(fields[name][1])


_EVAL_OFFSET = {
    True: _field_offset(VB17_MDH_DTYPE, "EvalInfoMask"),
    False: _field_offset(SCAN_HEADER_DTYPE, "EvalInfoMask"),
}
_SAMPLES_OFFSET = {
    True: _field_offset(VB17_MDH_DTYPE, "SamplesInScan"),
    False: _field_offset(SCAN_HEADER_DTYPE, "SamplesInScan"),
}


def _readout_span(header: bytes | memoryview, layout: _Layout) -> tuple[int, int, int, int]:
    """(eval mask, length in bytes, channels, samples) of the readout whose MDH this is."""
    eval_info = int.from_bytes(
        header[_EVAL_OFFSET[layout.vb] : _EVAL_OFFSET[layout.vb] + 8], "little"
    )
    at = _SAMPLES_OFFSET[layout.vb]
    samples = int.from_bytes(header[at : at + 2], "little")
    channels = int.from_bytes(header[at + 2 : at + 4], "little")
    if eval_info & (_ACQEND | _SYNCDATA):
        # Their DMA length is right; that of readouts may not be (twixtools: PackBit).
        length = _u32(header) & DMA_LENGTH_MASK
    else:
        length = layout.readout_size(channels, samples)
    return eval_info, length, channels, samples


def _ends_early(
    index: int, number: int, pos: int, start: int, length: int, end: int, file_end: bool
) -> UnreadableInput:
    where = "the file" if file_end else "the measurement"
    return UnreadableInput(
        f"measurement {index + 1}: readout {number} at byte {pos - start:,} of the measurement "
        f"declares {length:,} bytes, {where} ends {pos + length - end:,} bytes early: "
        "the file was cut short or is damaged; copy it again from the scanner or its archive"
    )


def _no_acqend(index: int) -> UnreadableInput:
    return UnreadableInput(
        f"measurement {index + 1} ends without its end-of-acquisition marker (ACQEND): "
        "the file was cut short; copy it again from the scanner or its archive"
    )


def _bad_length(index: int, number: int) -> UnreadableInput:
    return UnreadableInput(
        f"measurement {index + 1}: readout {number} declares a length shorter than its own "
        "header: the file is damaged or not a twix file of a known version"
    )


# ---------------------------------------------------------------------------
# open_twix


def open_twix(path: Path) -> TwixFile:
    """Read a twix file's layout and check every measurement is whole.

    Raises
    ------
    UnreadableInput
        Not a twix file, an unknown layout, or cut short (with how many bytes
        are missing and where).  Messages carry no header value.
    """
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        head = _pread(fd, RAID_HEADER_SIZE, 0)
        if size < 8:
            raise UnreadableInput(f"{size} bytes: too short to be a Siemens twix file")
        first, second = _u32(head, 0), _u32(head, 4)
        if first < 10000 and second <= MAX_MEASUREMENTS:
            measurements = _open_multi_raid(fd, head, size, second)
            version = VD
        elif _BUFFER_NAME.match(head, 8):
            measurements = (_open_vb(fd, size, first),)
            version = VB
        else:
            config = head.find(b"Config\x00")
            if config >= 0:
                raise UnreadableInput(
                    f"unknown twix version: a Siemens protocol header (Config) at byte {config:,}, "
                    f"but the file starts with {first:,} and {second:,}, neither a VB17 measurement "
                    "header nor a VD/VE/XA multi-raid header"
                )
            raise UnreadableInput(
                "not a Siemens twix file: it starts with neither a VB17 measurement header nor "
                "a VD/VE/XA multi-raid header"
            )
    finally:
        os.close(fd)
    return TwixFile(path=path, version=version, size=size, measurements=measurements)


def _open_multi_raid(fd: int, head: bytes, size: int, count: int) -> tuple[TwixMeasurement, ...]:
    if count == 0:
        raise UnreadableInput(
            "unknown twix version: a VD/VE/XA multi-raid header that lists no measurement"
        )
    if len(head) < RAID_HEADER_SIZE:
        raise _cut_short("the multi-raid header", RAID_HEADER_SIZE, RAID_HEADER_SIZE - len(head))
    raid = np.frombuffer(head, dtype=_RAID_HEADER_DTYPE, count=1)[0]
    out = []
    for k in range(count):
        entry = raid["entry"][k]
        offset, length = int(entry["off"]), int(entry["len"])
        if length == 0 and count == 1:
            length = size - offset  # twixtools: some single-raid files leave it 0
        if offset < RAID_HEADER_SIZE or length <= 0:
            raise UnreadableInput(
                f"unknown twix version: measurement {k + 1} of the multi-raid header has offset "
                f"{offset:,} and length {length:,}"
            )
        if offset + length > size:
            raise _cut_short(f"measurement {k + 1}", length, offset + length - size)
        out.append(
            _open_measurement(
                fd,
                index=k,
                offset=offset,
                length=length,
                layout=_VD_LAYOUT,
                meas_id=int(entry["measId"]),
                file_id=int(entry["fileId"]),
                patient_name=_text(bytes(entry["patName"])),
                protocol_name=_text(bytes(entry["protName"])),
            )
        )
    return tuple(out)


def _open_vb(fd: int, size: int, header_length: int) -> TwixMeasurement:
    if header_length > size:
        raise _cut_short("the protocol header", header_length, header_length - size)
    return _open_measurement(
        fd,
        index=0,
        offset=0,
        length=size,
        layout=_VB_LAYOUT,
        meas_id=None,  # VB17 has no table: the first MDH's MeasUID
        file_id=0,
        patient_name="",
        protocol_name=None,
    )


def _open_measurement(
    fd: int,
    *,
    index: int,
    offset: int,
    length: int,
    layout: _Layout,
    meas_id: int | None,
    file_id: int,
    patient_name: str,
    protocol_name: str | None,
) -> TwixMeasurement:
    header_length = _u32(_pread(fd, 4, offset))
    if header_length < 8 or header_length > length:
        if header_length > length:
            raise _cut_short(
                f"the protocol header of measurement {index + 1}",
                header_length,
                header_length - length,
            )
        raise UnreadableInput(
            f"measurement {index + 1} has no protocol header: the file is damaged or not a twix file"
        )
    header = _pread(fd, header_length, offset)
    if not _BUFFER_NAME.search(header, 8, 8 + 64):
        raise UnreadableInput(
            f"measurement {index + 1} has no protocol header: the file is damaged or not a twix file"
        )
    if protocol_name is None:
        protocol_name = _protocol(header).protocol_name
    acquisitions = syncdata = noise = 0
    pos, end = offset + header_length, offset + length
    number = 0
    while True:
        if end - pos < layout.header_size:
            raise _no_acqend(index)
        mdh = _pread(fd, layout.header_size, pos)
        eval_info, span, _, _ = _readout_span(mdh, layout)
        number += 1
        if meas_id is None:
            meas_id = int.from_bytes(mdh[4:8], "little", signed=True)
        if eval_info & _ACQEND:
            break
        if span < layout.header_size:
            raise _bad_length(index, number)
        if pos + span > end:
            raise _ends_early(index, number, pos, offset, span, end, file_end=layout.vb)
        if eval_info & _SYNCDATA:
            syncdata += 1
        else:
            acquisitions += 1
            noise += bool(eval_info & _NOISE)
        pos += span
    return TwixMeasurement(
        index=index,
        meas_id=meas_id or 0,
        file_id=file_id,
        header_bytes=header,
        patient_name=patient_name,
        protocol_name=protocol_name,
        is_noise=acquisitions > 0 and noise == acquisitions,
        offset=offset,
        length=length,
        data_offset=offset + header_length,
        acquisitions=acquisitions,
        syncdata=syncdata,
    )


# ---------------------------------------------------------------------------
# The protocol header


def protocol_buffers(header: bytes) -> dict[str, bytes]:
    """The named buffers of a measurement header (Config, Dicom, Meas, MeasYaps, ...)."""
    count = _u32(header, 4)
    pos, out = 8, {}
    for _ in range(count):
        match = _BUFFER_NAME.search(header, pos, pos + 48)
        if match is None:
            break
        name = match.group(1).decode("latin-1")
        start = match.end()
        size = int.from_bytes(match.group(2), "little")
        out[name] = header[start : start + size]
        pos = start + size
    return out


def _first(pattern: bytes, *texts: bytes) -> bytes | None:
    for text in texts:
        match = re.search(pattern, text)
        if match:
            return match.group(1)
    return None


def _protocol(header: bytes) -> _Protocol:
    buffers = protocol_buffers(header)
    yaps, meas, dicom = (
        buffers.get("MeasYaps", b""),
        buffers.get("Meas", b""),
        buffers.get("Dicom", b""),
    )
    dwell = _first(rb"sRXSPEC\.alDwellTime\[0\]\s*=\s*(\d+)", yaps, meas)
    if dwell is None:
        dwell = _first(rb'<ParamLong\."alDwellTime">\s*\{\s*(\d+)', meas)
    channels = _first(rb'<ParamLong\."iMaxNoOfRxChannels">\s*\{\s*(\d+)', meas, header)
    software = _first(rb'<ParamString\."SoftwareVersions">\s*\{\s*"([^"]*)"', dicom, meas)
    name = _first(rb'<ParamString\."tProtocolName">\s*\{\s*"([^"]*)"', dicom, meas)
    if name is None:
        name = _first(rb'tProtocolName\s*=\s*"+([^"]*)"', yaps)
    return _Protocol(
        dwell_time_ns=int(dwell) if dwell else 0,
        max_channels=int(channels) if channels else 0,
        software_version=(software or b"").decode("latin-1"),
        protocol_name=(name or b"").decode("latin-1"),
    )


# ---------------------------------------------------------------------------
# measurement_blocks


_EMPTY_TRAJ = np.zeros(0, dtype=np.float32)


def measurement_blocks(
    twix: TwixFile,
    meas: TwixMeasurement,
    *,
    block_rows: int = 512,
    block_bytes: int = 16 * 2**20,
    max_run: int | None = None,
    digest: InputHash | None = None,
) -> Iterator[AcquisitionBlock | WaveformBlock]:
    """Stream one measurement as ISMRMRD acquisition (and waveform) blocks.

    One sequential pass with :data:`READ_CHUNK`-sized reads.  A block is
    yielded when it holds ``block_rows`` readouts or ``block_bytes`` of
    samples, whichever comes first, which bounds memory whatever the file
    size.  ACQEND ends the stream and is not an acquisition; SYNCDATA packets
    become waveforms (see :data:`SYNCDATA_WAVEFORM_ID`).  Consecutive readouts
    of one shape are decoded together, ``max_run`` at most (None: up to
    :data:`RUN_BYTES` of samples; 1: one by one, what the tests compare with).
    ``digest`` is fed every chunk read: the input's hash without a read of its own.

    Raises
    ------
    UnreadableInput
        The data end early (the file changed since :func:`open_twix`, or the
        measurement was built by hand): raised mid-stream, so a writer that is
        consuming the blocks must discard what it wrote.
    """
    layout = _VB_LAYOUT if twix.version == VB else _VD_LAYOUT
    protocol = _protocol(meas.header_bytes)
    reader = _Reader(twix.path, digest=digest)
    try:
        yield from _stream(reader, meas, layout, protocol, block_rows, block_bytes, max_run)
    finally:
        reader.close()


def _stream(
    reader: _Reader,
    meas: TwixMeasurement,
    layout: _Layout,
    protocol: _Protocol,
    block_rows: int,
    block_bytes: int,
    max_run: int | None = None,
) -> Iterator[AcquisitionBlock | WaveformBlock]:
    """Walk the readouts; consecutive ones of one shape are decoded together (a *run*).

    Each readout's MDH gives its length, so the walk is sequential, but a run
    of readouts with the same channels and samples (nearly all of an imaging
    measurement) lies in the read buffer as an array of one structured dtype:
    its MDHs are checked and its samples copied out with a few numpy calls
    instead of a dozen Python operations per readout.  ``max_run=1`` takes
    readouts one at a time (what the tests compare the runs with).  Blocks end
    where they would one readout at a time: after ``block_rows`` readouts or
    once ``block_bytes`` of samples are pending.
    """
    pending: list[_Run] = []
    waveforms: list[tuple[bytes, bytes, int]] = []
    pending_rows = pending_bytes = 0
    emitted = 0
    pos, end = meas.data_offset, meas.offset + meas.length
    number = 0

    def flush() -> Iterator[AcquisitionBlock | WaveformBlock]:
        nonlocal pending_rows, pending_bytes, emitted
        if pending:
            yield AcquisitionBlock(_acquisition_rows(pending, layout, protocol, meas))
            emitted += pending_rows
            pending.clear()
            pending_rows = pending_bytes = 0
        if waveforms:
            yield WaveformBlock(_waveform_rows(waveforms, layout, protocol))
            waveforms.clear()

    while True:
        if end - pos < layout.header_size:
            yield from flush()
            raise _no_acqend(meas.index)
        view = reader.view(pos, layout.header_size)
        if view is None:
            yield from flush()
            raise _ends_early(
                meas.index, number + 1, pos, meas.offset, layout.header_size, reader.size(), True
            )
        eval_info, span, channels, n_samples = _readout_span(view, layout)
        number += 1
        if eval_info & _ACQEND:
            break
        if span < layout.header_size:
            raise _bad_length(meas.index, number)
        if pos + span > end:
            raise _ends_early(meas.index, number, pos, meas.offset, span, end, file_end=layout.vb)
        view = reader.view(pos, span)
        if view is None:
            raise _ends_early(
                meas.index, number, pos, meas.offset, span, reader.size(), file_end=True
            )
        if eval_info & _SYNCDATA:
            header = bytes(view[: layout.header_size])
            waveforms.append((header, bytes(view[layout.header_size :]), emitted + pending_rows))
            pos += span
            continue
        # This readout is whole; as many as follow it of the same shape, in the buffer,
        # in the measurement and in this block, are taken with it.
        sample_bytes = 8 * channels * n_samples
        limit = min(
            block_rows - pending_rows,
            max(1, -(-(block_bytes - pending_bytes) // sample_bytes)) if sample_bytes else 1 << 30,
            (end - pos) // span,
            max_run or max(1, RUN_BYTES // max(1, sample_bytes)),
        )
        buffered = reader.buffered(pos)
        count = _run_length(
            buffered, layout, span, channels, n_samples, min(limit, len(buffered) // span)
        )
        pending.append(_decode_run(buffered, layout, count, channels, n_samples))
        number += count - 1
        pending_rows += count
        pending_bytes += count * sample_bytes
        pos += count * span
        if pending_rows >= block_rows or pending_bytes >= block_bytes:
            yield from flush()
    yield from flush()


@dataclass(frozen=True)
class _Run:
    """Consecutive readouts of one shape, copied out of the read buffer."""

    headers: np.ndarray  # (k, header size) uint8: the scan header (VB: the first channel's MDH)
    samples: np.ndarray  # (k, channels * 2 * samples) float32, re/im interleaved
    channel_ids: np.ndarray  # (k, channels) int64


_PROBE_DTYPES: dict[tuple[bool, int], np.dtype] = {}
_READOUT_DTYPES: dict[tuple[bool, int, int], np.dtype] = {}


def _probe_dtype(layout: _Layout, span: int) -> np.dtype:
    """The three MDH fields that decide a readout's shape, at stride ``span``."""
    key = (layout.vb, span)
    dtype = _PROBE_DTYPES.get(key)
    if dtype is None:
        at = _SAMPLES_OFFSET[layout.vb]
        dtype = np.dtype(
            {
                "names": ["eval", "samples", "channels"],
                "formats": ["<u8", "<u2", "<u2"],
                "offsets": [_EVAL_OFFSET[layout.vb], at, at + 2],
                "itemsize": span,
            }
        )
        _PROBE_DTYPES[key] = dtype
    return dtype


def _readout_dtype(layout: _Layout, channels: int, samples: int) -> np.dtype:
    """One whole readout: (VD) scan header, then per channel its header and samples."""
    key = (layout.vb, channels, samples)
    dtype = _READOUT_DTYPES.get(key)
    if dtype is None:
        head = VB17_MDH_DTYPE if layout.vb else CHANNEL_HEADER_DTYPE
        # A channel's samples as one opaque item: numpy copies each with one memcpy.
        channel = np.dtype([("h", head), ("d", f"V{8 * samples}")])
        fields: list[tuple[str, object]] = [] if layout.vb else [("scan", SCAN_HEADER_DTYPE)]
        dtype = np.dtype([*fields, ("ch", channel, (channels,))])
        assert dtype.itemsize == layout.readout_size(channels, samples)
        _READOUT_DTYPES[key] = dtype
    return dtype


def _run_length(
    buffered: memoryview, layout: _Layout, span: int, channels: int, samples: int, limit: int
) -> int:
    """How many readouts from the first (already checked) have its shape: 1 to ``limit``."""
    if limit <= 1:
        return 1
    probe = np.frombuffer(buffered, dtype=_probe_dtype(layout, span), count=limit)
    same = (probe["eval"] & np.uint64(_ACQEND | _SYNCDATA)) == 0
    same &= probe["samples"] == samples
    same &= probe["channels"] == channels
    return limit if bool(same.all()) else int(np.argmin(same))


def _decode_run(
    buffered: memoryview, layout: _Layout, count: int, channels: int, samples: int
) -> _Run:
    dtype = _readout_dtype(layout, channels, samples)
    per_channel = np.frombuffer(buffered, dtype=dtype, count=count)["ch"]
    # Plain bytes: structured copies and concatenations are slow in numpy.
    as_bytes = np.frombuffer(buffered, dtype=np.uint8, count=count * dtype.itemsize)
    headers = as_bytes.reshape(count, dtype.itemsize)[:, : layout.header_size].copy()
    data = np.empty((count, channels * 2 * samples), dtype=np.float32)
    if samples and channels:
        data.view(f"V{8 * samples}").reshape(count, channels)[...] = per_channel["d"]  # the copy
    return _Run(headers, data, per_channel["h"]["ChannelId"].astype(np.int64))


def _acquisition_rows(
    runs: list[_Run], layout: _Layout, protocol: _Protocol, meas: TwixMeasurement
) -> np.ndarray:
    headers = runs[0].headers if len(runs) == 1 else np.concatenate([r.headers for r in runs])
    raw = headers.view(VB17_MDH_DTYPE if layout.vb else SCAN_HEADER_DTYPE).reshape(-1)
    scan = vb17_as_scan_headers(raw) if layout.vb else raw
    n = scan.shape[0]
    channel_masks = np.zeros((n, 16), dtype=np.uint64)
    # Runs of one channel count (the usual case) are one (n, channels) array.
    same_channels = len({r.channel_ids.shape[1] for r in runs}) == 1
    groups = (
        [np.concatenate([r.channel_ids for r in runs])]
        if same_channels
        else [r.channel_ids for r in runs]
    )
    first = 0
    for ids in groups:
        rows = np.broadcast_to(np.arange(first, first + len(ids))[:, None], ids.shape)
        keep = ids < 1024
        picked = ids[keep]
        np.bitwise_or.at(
            channel_masks,
            (rows[keep], picked // 64),
            np.left_shift(np.uint64(1), (picked % 64).astype(np.uint64)),
        )
        first += len(ids)
    available = protocol.max_channels
    noise_dwell = noise_dwell_time_us(
        scan["SamplesInScan"],
        vb=layout.vb,
        xa="syngo MR XA" in protocol.software_version,
        protocol_name=meas.protocol_name,
    )
    rows_out = np.empty(n, dtype=ACQUISITION_DTYPE)
    head = acquisition_headers(
        scan,
        channel_masks,
        available_channels=available,
        sample_time_us=protocol.dwell_time_ns / 1000.0,
        noise_sample_time_us=noise_dwell,
        measurement_uid=None if layout.vb else meas.meas_id,
    )
    if available == 0:
        head["available_channels"] = head["active_channels"]
    rows_out["head"] = head
    traj = rows_out["traj"]
    data = rows_out["data"]
    i = 0
    for run in runs:
        for line in run.samples:  # views into the run's one array: no copy per readout
            traj[i] = _EMPTY_TRAJ
            data[i] = line
            i += 1
    return rows_out


def _waveform_rows(
    waveforms: list[tuple[bytes, bytes, int]], layout: _Layout, protocol: _Protocol
) -> np.ndarray:
    """Waveforms of SYNCDATA packets: decoded PMU signals, or the packet verbatim."""
    decode = not layout.vb and "syngo MR XA" not in protocol.software_version
    mdh_dtype = VB17_MDH_DTYPE if layout.vb else SCAN_HEADER_DTYPE
    found: list[tuple[np.void, np.ndarray]] = []
    for header, payload, acquisitions_before in waveforms:
        mdh = np.frombuffer(header, dtype=mdh_dtype, count=1)[0]
        uid = int(np.int64(mdh["MeasUID"]) & 0xFFFFFFFF)
        if decode:
            try:
                found.extend(
                    decode_pmu(payload, measurement_uid=uid, scan_counter=acquisitions_before)
                )
                continue
            except NotPmu:
                pass
        found.append(_verbatim(payload, uid, acquisitions_before, int(mdh["TimeStamp"])))
    rows = np.zeros(len(found), dtype=WAVEFORM_DTYPE)
    for i, (head, data) in enumerate(found):
        rows["head"][i] = head
        rows["data"][i] = np.ascontiguousarray(data, dtype=np.uint32).reshape(-1)
    return rows


def _verbatim(
    payload: bytes, measurement_uid: int, scan_counter: int, time_stamp: int
) -> tuple[np.void, np.ndarray]:
    n_words = -(-len(payload) // 4)
    # number_of_samples is 16 bits: a long packet is folded into "channels".
    channels = max(1, -(-n_words // 65535))
    n_samples = -(-n_words // channels)
    padded = payload + b"\x00" * (4 * n_samples * channels - len(payload))
    head: np.void = np.zeros(1, dtype=WAVEFORM_HEADER_DTYPE)[0]
    head["version"] = 1
    head["measurement_uid"] = measurement_uid
    head["scan_counter"] = scan_counter
    head["time_stamp"] = time_stamp
    head["number_of_samples"] = n_samples
    head["channels"] = channels
    head["waveform_id"] = SYNCDATA_WAVEFORM_ID
    return head, np.frombuffer(padded, dtype="<u4")
