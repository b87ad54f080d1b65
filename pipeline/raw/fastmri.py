"""fastMRI-layout training files from our anonymized ISMRMRD files.

The layout is the one of the fastMRI knee and brain releases, so that
fastMRI's own ``SliceDataset`` and transforms read our files unchanged:

- ``kspace``: ``(slices, coils, readout, phase)`` complex64, as encoded, one
  slice per HDF5 chunk (what fastMRI's loader reads at a time).  The
  readout oversampling is kept (640 readout samples for a 320 x 320 knee
  image); the phase axis has the encoded matrix ``y``.  Each readout sits at
  column ``kspace_encode_step_1 + padding_left`` with
  ``padding_left = encoded_y // 2 - encodingLimits.kspace_encoding_step_1.center``:
  exactly the padding fastMRI's ``_retrieve_metadata`` derives from the same
  header, so its masks line up with the acquired lines (columns outside
  ``[padding_left, padding_right)`` stay zero, e.g. partial Fourier).  In the
  readout, sample ``center_sample`` lands on ``encoded_x // 2``.
- ``reconstruction_rss``: ``(slices, recon_x, recon_y)`` float32, the
  root-sum-of-squares over coils of the centred, orthonormal 2D inverse FFT
  (``fastmri.ifft2c``'s convention: ``fftshift(ifft2(ifftshift(k), norm="ortho"))``),
  centre-cropped to the recon matrix the way ``fastmri.data.transforms.center_crop``
  crops.  Axes follow ``kspace`` (readout first), because fastMRI crops the
  image of ``kspace`` to ``(recon_size[0], recon_size[1])`` = ``(x, y)``.
- ``ismrmrd_header``: the XML header as bytes.
- root attributes ``acquisition``, ``max``, ``norm``, ``patient_id``.

What becomes a slice: the 2D slices (``idx.slice``) of one image; for a 3D
slab (encoded z > 1, one slice index), each z position: the partitions are
placed by ``kspace_encode_step_2`` (centred by its encoding limits like the
lines), inverse-Fourier-transformed along kz (centred, orthonormal) and
centre-cropped to the recon z, so every slice's ``kspace`` is the 2D
k-space of one z position, the "hybrid" k-space 3D training sets use
(e.g. SKM-TEA, Calgary-Campinas).

The file is written slice by slice, and ``reconstruction_rss``, ``max`` and
``norm`` are computed as the slices go: memory holds one slice's lines (and a
few readouts being read), whatever the size of the measurement.  Each
slice's readouts are gathered from the ISMRMRD file by their row numbers, in
file order, so averages are summed in the order they were acquired.  A 3D
slab's partitions are transformed a few lines at a time into an unnamed
scratch file beside the output (as large as ``kspace``), read back z by z.
``norm`` is summed in float64.  The header keeps the encoded z, which
tells a reader that the file came from a 3D scan.  Noise,
calibration-only (ACS), phase-correction, navigator, feedback, dummy and
phase-stabilisation readouts and readouts of another encoding space are left
out; repeated lines (averages) are averaged; of several contrasts, cardiac
phases, repetitions or sets the first is kept (fastMRI files hold one image
series).  Every readout left out is counted by reason in the result.

Refused, with :class:`FastmriUnsupported`: non-Cartesian trajectories,
undersampled (parallel imaging) scans, whose zero-filled reconstruction is
not a valid training target, 3D scans of several slabs, recon matrices
larger than the encoded one (a centre crop cannot make them), and data that
the header's matrix does not describe: lines or partitions outside the
encoded matrix, readouts whose samples do not fit its readout length
(spectroscopy, research sequences), a 2D encoding with readouts of several
partitions, image readouts with different coil counts.  Such a measurement is
a valid ISMRMRD file all the same (``convert`` releases it without a
training file); only a file that cannot be read (not HDF5, cut short, rows
that disagree with their own headers, a header that is not ISMRMRD's) is
:class:`~pipeline.errors.UnreadableInput`.  Neither names a path: in a run
the export reads a temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline.atomic import TEMP_PREFIX
from pipeline.errors import CurationError, InputError, UnreadableInput
from pipeline.raw.ismrmrd_in import (
    ISMRMRD_NAMESPACE,
    AcquisitionReader,
    acquisition_headers,
    open_ismrmrd,
)
from pipeline.raw.ismrmrd_out import durable_sha256, new_hdf5
from pipeline.reasons import Reason
from pipeline.storage import hidden_write_error

_NS = {"m": ISMRMRD_NAMESPACE}


class FastmriUnsupported(InputError):
    """A valid ISMRMRD file whose data has no faithful fastMRI layout."""

    reason = Reason.NO_FASTMRI_LAYOUT


# What a refusal for the layout means for the measurement (its ISMRMRD file stands).
_NOT_DESCRIBED = (
    "the header's matrix does not describe the data (spectroscopy or a research sequence?)"
)


def _bit(flag: int) -> int:
    """ISMRMRD numbers its acquisition flags from 1."""
    return 1 << (flag - 1)


# Readouts that are not lines of the image (ISMRMRD flag numbers), by the
# reason a result reports them under.  A calibration line that is also an
# imaging line (flag 21, ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING) is kept.
_NOT_IMAGE: tuple[tuple[str, int], ...] = (
    ("noise", _bit(19)),
    ("phase correction", _bit(24)),
    ("navigator", _bit(23)),
    ("feedback", _bit(26) | _bit(28)),
    ("dummy scan", _bit(27)),
    ("surface coil correction", _bit(29)),
    ("phase stabilisation", _bit(30) | _bit(31)),
)
_CALIBRATION = _bit(20)
_CALIBRATION_AND_IMAGING = _bit(21)
_REVERSE = _bit(22)
_FIRST_ONLY = ("contrast", "phase", "repetition", "set")
#: The header fields the plan reads (54 of a header's 340 bytes a readout).
HEADER_FIELDS = (
    "flags", "idx", "encoding_space_ref", "number_of_samples", "active_channels",
    "discard_pre", "discard_post", "center_sample",
)  # fmt: skip


@dataclass(frozen=True)
class FastmriExport:
    """What :func:`export_fastmri` wrote (no PHI: the header is already anonymized)."""

    output: Path
    kspace_shape: tuple[int, int, int, int]  # slices, coils, readout, phase
    reconstruction_shape: tuple[int, int, int]  # slices, recon x, recon y
    acquisition: str
    max: float
    norm: float
    patient_id: str
    padding_left: int
    padding_right: int
    readouts_used: int
    readouts_left_out: Mapping[str, int]  # reason -> count
    three_d: bool = False  # slices are z positions of a 3D slab (see the module)
    sha256: str = ""  # of the written file, hashed while it was fsynced


@dataclass(frozen=True)
class Geometry:
    """What the ISMRMRD header says about the first encoding, as fastMRI reads it."""

    encoded: tuple[int, int, int]
    recon: tuple[int, int, int]
    step1_center: int
    step1_maximum: int
    step2_center: int
    step2_maximum: int
    trajectory: str
    acceleration: tuple[int, int]
    protocol_name: str
    patient_id: str

    @property
    def padding_left(self) -> int:
        return self.encoded[1] // 2 - self.step1_center

    @property
    def padding_right(self) -> int:
        return self.padding_left + self.step1_maximum + 1

    @property
    def three_d(self) -> bool:
        return self.encoded[2] > 1

    @property
    def partition_offset(self) -> int:
        """Where partition 0 sits on the kz axis (centre partition at ``z // 2``)."""
        return self.encoded[2] // 2 - self.step2_center


def header_geometry(xml: str) -> Geometry:
    """Read the first encoding's sizes and limits the way fastMRI's loader does.

    Missing encoding limits get ISMRMRD's implicit defaults (lines 0 to
    ``y - 1``, centre ``y // 2``); missing matrix sizes are an error.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        raise UnreadableInput("the ISMRMRD header is not well-formed XML") from None
    encoding = root.find("m:encoding", _NS)
    if encoding is None:
        raise UnreadableInput("the ISMRMRD header has no encoding section")

    def number(path: str, default: int | None = None) -> int:
        node = encoding.find(path, _NS)
        if node is None or not (node.text or "").strip():
            if default is None:
                raise UnreadableInput(
                    f"the ISMRMRD header lacks {path.replace('m:', '')}; a fastMRI file needs it"
                )
            return default
        try:
            return int(float(node.text or ""))
        except ValueError:
            raise UnreadableInput(
                f"{path.replace('m:', '')} in the ISMRMRD header is not a number"
            ) from None

    def size(space: str) -> tuple[int, int, int]:
        return (
            number(f"m:{space}/m:matrixSize/m:x"),
            number(f"m:{space}/m:matrixSize/m:y"),
            number(f"m:{space}/m:matrixSize/m:z", 1),
        )

    encoded, recon = size("encodedSpace"), size("reconSpace")
    limits = "m:encodingLimits/m:kspace_encoding_step_1"
    limits2 = "m:encodingLimits/m:kspace_encoding_step_2"
    trajectory = encoding.find("m:trajectory", _NS)
    accel = "m:parallelImaging/m:accelerationFactor"

    def text(path: str) -> str:
        node = root.find(path, _NS)
        return (node.text or "").strip() if node is not None else ""

    return Geometry(
        encoded=encoded,
        recon=recon,
        step1_center=number(f"{limits}/m:center", encoded[1] // 2),
        step1_maximum=number(f"{limits}/m:maximum", encoded[1] - 1),
        step2_center=number(f"{limits2}/m:center", encoded[2] // 2),
        step2_maximum=number(f"{limits2}/m:maximum", encoded[2] - 1),
        trajectory=(trajectory.text or "").strip() if trajectory is not None else "cartesian",
        acceleration=(
            number(f"{accel}/m:kspace_encoding_step_1", 1),
            number(f"{accel}/m:kspace_encoding_step_2", 1),
        ),
        protocol_name=text("m:measurementInformation/m:protocolName"),
        patient_id=text("m:subjectInformation/m:patientID"),
    )


def export_fastmri(
    source: Path,
    output: Path,
    *,
    acquisition: str | None = None,
    headers: np.ndarray | None = None,
) -> FastmriExport:
    """Write the fastMRI-layout file of one (already anonymized) ISMRMRD file.

    Parameters
    ----------
    source : Path
        An ISMRMRD/HDF5 file written by mricurate (one measurement).
    output : Path
        Where the fastMRI file goes; written under a temporary name beside it
        and renamed, so ``output`` is either complete or untouched.
    acquisition : str, optional
        The ``acquisition`` attribute (e.g. ``CORPD_FBK``) when the header has
        no protocol name; a protocol name that survived anonymization wins,
        because it is what the scan was.
    headers : ndarray, optional
        The :data:`HEADER_FIELDS` of every acquisition of ``source``, as its
        writer wrote them (:func:`~pipeline.raw.ismrmrd_out.write_ismrmrd_temp`);
        without them they are read from the file, which reads every row.

    Returns
    -------
    FastmriExport

    Raises
    ------
    UnreadableInput
        ``source`` is not a readable ISMRMRD file: not HDF5, damaged or cut
        short, rows that disagree with their own headers, a header that is
        not ISMRMRD's.
    FastmriUnsupported
        Non-Cartesian, undersampled, several 3D slabs, no image readouts, a
        recon matrix larger than the encoded one, or data the encoded matrix
        does not describe (lines, partitions or samples outside it, several
        partitions of a 2D encoding, changing coil counts).

    Neither error's detail names a path (``source`` is a temporary file in a run).
    """
    with _unnamed(source):
        return _export(source, output, acquisition, headers)


@contextlib.contextmanager
def _unnamed(source: Path) -> Iterator[None]:
    """Errors of reading ``source`` without its path.

    :mod:`pipeline.raw.ismrmrd_in` names the file it reads (for an input,
    its own path is what the private account needs); the export reads a file
    of ours, under a temporary name during a run, which no reason may carry.
    """
    try:
        yield
    except InputError as exc:
        named = os.fspath(source)
        if named not in exc.detail:
            raise
        detail = exc.detail.replace(f"{named}: ", "").replace(named, "the file")
        raise type(exc)(detail, exc.reason) from None


def _export(
    source: Path, output: Path, acquisition: str | None, headers: np.ndarray | None
) -> FastmriExport:
    src = open_ismrmrd(source)
    geometry = header_geometry(src.xml)
    _check_supported(geometry)
    if headers is None:
        headers = acquisition_headers(src, fields=HEADER_FIELDS)
    elif len(headers) != src.acquisitions:
        raise ValueError(f"{len(headers)} headers given for {src.acquisitions} acquisitions")
    plan = _plan_lines(headers, geometry)
    c, x, y = plan.coils, geometry.encoded[0], geometry.encoded[1]
    s = geometry.recon[2] if geometry.three_d else plan.slices
    rx, ry = geometry.recon[0], geometry.recon[1]
    label = geometry.protocol_name or (acquisition or "")
    peak, squares = 0.0, 0.0
    with _atomic_hdf5(output) as (handle, durable), AcquisitionReader(src) as reader:
        # Slice by slice: memory holds one slice's lines (and a few rows being
        # read), whatever the size of the measurement.  Every element is
        # written, so no chunk is filled first: a coil's part of a chunk then
        # goes straight to the file, with no chunk-sized buffer in libhdf5.
        kspace = handle.create_dataset(
            "kspace", shape=(s, c, x, y), dtype=np.complex64, chunks=_slice_chunks(c, x, y),
            fill_time="never",
        )  # fmt: skip
        rss = handle.create_dataset("reconstruction_rss", shape=(s, rx, ry), dtype=np.float32)
        slices = contextlib.closing(
            _slab_slices(reader, plan, geometry, output.parent)
            if geometry.three_d
            else _slices_2d(reader, plan, geometry)
        )
        # No enumerate(): the tuple it keeps would hold the last slice's lines
        # while the next ones are made.
        n = 0
        with slices as made:
            for lines in made:
                image = _write_slice(kspace, n, lines, rx, ry)
                del lines  # before the next slice's lines are made
                rss[n] = image
                peak = max(peak, float(image.max()))
                # float64 sums of float32 squares: the whole volume's norm, slice by slice.
                # numpy's pairwise sum, not np.dot: OpenBLAS splits a dot product over
                # its threads, so its rounding (and the file's bytes) followed the core count.
                flat = image.ravel().astype(np.float64)
                squares += float(np.sum(np.square(flat, out=flat)))
                n += 1
        handle.create_dataset(
            "ismrmrd_header", data=src.xml.encode("utf-8"), dtype=h5py.string_dtype("utf-8")
        )
        norm = float(np.sqrt(squares))
        handle.attrs["acquisition"] = label
        handle.attrs["max"] = peak
        handle.attrs["norm"] = norm
        handle.attrs["patient_id"] = geometry.patient_id
    return FastmriExport(
        output=output,
        kspace_shape=(s, c, x, y),
        reconstruction_shape=(s, rx, ry),
        acquisition=label,
        max=peak,
        norm=norm,
        patient_id=geometry.patient_id,
        padding_left=geometry.padding_left,
        padding_right=geometry.padding_right,
        readouts_used=int(plan.selected.sum()),
        readouts_left_out=dict(plan.left_out),
        three_d=geometry.three_d,
        sha256=durable.sha256,
    )


def _slice_chunks(coils: int, x: int, y: int) -> tuple[int, int, int, int]:
    """One slice per chunk (what fastMRI's loader reads); HDF5 caps a chunk below 4 GiB."""
    per_coil = x * y * np.dtype(np.complex64).itemsize
    return (1, max(1, min(coils, (2**32 - 1) // per_coil)), x, y)


def _write_slice(kspace: h5py.Dataset, n: int, lines: np.ndarray, rx: int, ry: int) -> np.ndarray:
    """Write slice ``n`` of line-major ``(phase, coils, readout)`` lines; return its RSS image.

    Coil by coil, into fastMRI's ``(coils, readout, phase)`` order: each coil
    is a contiguous part of the slice's chunk, and the transposed copy of one
    coil is all the slice costs beyond its lines.
    """
    total: np.ndarray | None = None
    for coil in range(lines.shape[1]):
        k = np.ascontiguousarray(lines[:, coil, :].T)
        kspace[n, coil] = k
        power = _coil_power(k, rx, ry)
        # Coil after coil, in float32: what numpy's sum over the coil axis does.
        total = power if total is None else np.add(total, power, out=total)
    assert total is not None, "a plan has at least one coil"
    return np.asarray(np.sqrt(total), dtype=np.float32)


def root_sum_of_squares(kspace: np.ndarray, recon_x: int, recon_y: int) -> np.ndarray:
    """``(slices, recon_x, recon_y)`` float32 RSS image of ``(slices, coils, x, y)`` k-space."""
    out = np.empty((kspace.shape[0], recon_x, recon_y), dtype=np.float32)
    for s in range(kspace.shape[0]):
        total = sum(_coil_power(coil, recon_x, recon_y) for coil in kspace[s])
        out[s] = np.sqrt(total)
    return out


def _coil_power(kspace: np.ndarray, recon_x: int, recon_y: int) -> np.ndarray:
    """``|image|^2`` of one coil's ``(x, y)`` k-space, cropped as fastMRI crops (float32)."""
    nx, ny = kspace.shape
    x0, y0 = (nx - recon_x) // 2, (ny - recon_y) // 2
    # The 2D transform is separable: transform the readout, crop it (the
    # oversampling goes), then transform the phase axis of what is left.
    image = np.fft.fftshift(
        np.fft.ifft(np.fft.ifftshift(kspace, axes=0), axis=0, norm="ortho"), axes=0
    )[x0 : x0 + recon_x]
    image = np.fft.fftshift(
        np.fft.ifft(np.fft.ifftshift(image, axes=1), axis=1, norm="ortho"), axes=1
    )[:, y0 : y0 + recon_y]
    return np.asarray(np.abs(image) ** 2)


# --- which readouts go where ----------------------------------------------


@dataclass(frozen=True)
class _Plan:
    selected: np.ndarray  # bool per acquisition
    slice_row: np.ndarray  # row in kspace's slice axis, per acquisition
    column: np.ndarray  # column in kspace's phase axis, per acquisition
    offset: np.ndarray  # where the first usable sample goes in the readout, per acquisition
    coils: int
    slices: int
    left_out: Counter[str]


def _check_supported(geometry: Geometry) -> None:
    ex, ey, ez = geometry.encoded
    rx, ry, rz = geometry.recon
    if geometry.trajectory.lower() != "cartesian":
        raise FastmriUnsupported(
            "non-Cartesian trajectory; fastMRI files hold Cartesian k-space only"
        )
    if max(geometry.acceleration) > 1:
        raise FastmriUnsupported(
            "undersampled scan (parallel imaging acceleration "
            f"{geometry.acceleration[0]}x{geometry.acceleration[1]}); a zero-filled "
            "reconstruction is not a training target, fastMRI files are fully sampled"
        )
    if min(ex, ey, ez, rx, ry, rz) < 1 or rx > ex or ry > ey or (ez > 1 and rz > ez):
        raise FastmriUnsupported(
            f"recon matrix {rx}x{ry}x{rz} is not inside the encoded matrix "
            f"{ex}x{ey}x{ez}; a centre crop cannot make it"
        )
    if geometry.padding_left < 0 or geometry.padding_right > ey:
        raise FastmriUnsupported(
            f"encodingLimits kspace_encoding_step_1 (centre {geometry.step1_center}, "
            f"maximum {geometry.step1_maximum}) do not fit the encoded matrix y = {ey}; "
            + _NOT_DESCRIBED
        )
    first_partition = geometry.partition_offset
    if ez > 1 and (first_partition < 0 or first_partition + geometry.step2_maximum + 1 > ez):
        raise FastmriUnsupported(
            f"encodingLimits kspace_encoding_step_2 (centre {geometry.step2_center}, "
            f"maximum {geometry.step2_maximum}) do not fit the encoded matrix z = {ez}; "
            + _NOT_DESCRIBED
        )


def _plan_lines(heads: np.ndarray, geometry: Geometry) -> _Plan:
    """Decide, from headers only, which readouts form the image and where they go."""
    flags = heads["flags"].astype(np.uint64)
    idx = heads["idx"]
    left_out: Counter[str] = Counter()
    keep = np.ones(len(heads), dtype=bool)

    def drop(reason: str, mask: np.ndarray) -> None:
        nonlocal keep
        hit = keep & mask
        if hit.any():
            left_out[reason] += int(hit.sum())
        keep &= ~mask

    for reason, bits in _NOT_IMAGE:
        drop(reason, (flags & np.uint64(bits)) != 0)
    calibration_only = ((flags & np.uint64(_CALIBRATION)) != 0) & (
        (flags & np.uint64(_CALIBRATION_AND_IMAGING)) == 0
    )
    drop("calibration only", calibration_only)
    drop("other encoding space", heads["encoding_space_ref"] != 0)
    drop("no samples", heads["number_of_samples"] == 0)
    for counter in _FIRST_ONLY:
        if keep.any():
            first = idx[counter][keep].min()
            drop(f"{counter} after the first", idx[counter] != first)
    if not keep.any():
        raise FastmriUnsupported(
            "no image readouts (noise, calibration or other non-image data only)"
        )
    coils = np.unique(heads["active_channels"][keep])
    if coils.size != 1:
        raise FastmriUnsupported(
            f"the image readouts have {coils.size} different coil counts (from "
            f"{int(coils[0])} to {int(coils[-1])}); a fastMRI file has one coil axis"
        )
    if coils[0] == 0:
        raise FastmriUnsupported("the image readouts have no coils")
    # Rows only for slices that have image lines, in slice-index order (the
    # rows of readouts left out are never used); for a 3D slab, rows are kz.
    present = np.unique(idx["slice"][keep])
    if geometry.three_d:
        if present.size > 1:
            raise FastmriUnsupported(f"3D scan of {present.size} slabs; export one slab per file")
        ez = geometry.encoded[2]
        slice_row = idx["kspace_encode_step_2"].astype(np.int64) + geometry.partition_offset
        outside = keep & ((slice_row < 0) | (slice_row >= ez))
        if outside.any():
            raise FastmriUnsupported(
                f"{int(outside.sum())} readouts have kspace_encode_step_2 outside "
                f"the encoded matrix (z = {ez}) once centred by encodingLimits; " + _NOT_DESCRIBED
            )
        rows = ez
    else:
        partitions = np.unique(idx["kspace_encode_step_2"][keep])
        if partitions.size > 1:
            # Their lines would be averaged as if they were repeats of one line.
            raise FastmriUnsupported(
                f"readouts of {partitions.size} partitions (kspace_encode_step_2) in a 2D "
                "encoding (encoded z = 1); " + _NOT_DESCRIBED
            )
        slice_row = np.searchsorted(present, idx["slice"]).astype(np.int64)
        rows = int(present.size)
    column = idx["kspace_encode_step_1"].astype(np.int64) + geometry.padding_left
    outside = keep & ((column < 0) | (column >= geometry.encoded[1]))
    if outside.any():
        raise FastmriUnsupported(
            f"{int(outside.sum())} readouts have kspace_encode_step_1 outside the "
            f"encoded matrix (y = {geometry.encoded[1]}) once centred by encodingLimits; "
            + _NOT_DESCRIBED
        )
    offset = _readout_offsets(heads, keep, geometry.encoded[0])
    return _Plan(keep, slice_row, column, offset, int(coils[0]), rows, left_out)


def _readout_offsets(heads: np.ndarray, keep: np.ndarray, ex: int) -> np.ndarray:
    """Where each readout's first usable sample goes; refused unless every image readout fits.

    A full readout is taken as it is (some writers leave center_sample 0); a
    shorter one (asymmetric echo) is placed by its centre sample.  Decided
    from the headers, so that no sample is read (nor anything written) for a
    measurement whose readouts the matrix does not describe.
    """
    samples = heads["number_of_samples"].astype(np.int64)
    pre, post = heads["discard_pre"].astype(np.int64), heads["discard_post"].astype(np.int64)
    width = samples - pre - post
    centre = heads["center_sample"].astype(np.int64) - pre
    offset = np.where(width == ex, 0, ex // 2 - centre)
    misfit = np.flatnonzero(keep & ((width < 1) | (offset < 0) | (offset + width > ex)))
    if misfit.size:
        n = int(misfit[0])
        raise FastmriUnsupported(
            f"{misfit.size} readouts have usable samples that do not fit the encoded matrix "
            f"x = {ex} (the first, acquisition {n}: {int(width[n])} samples, centre "
            f"{int(centre[n])}); " + _NOT_DESCRIBED
        )
    return offset


# Samples read per h5py call (a few rows), and lines of a 3D slab transformed at once.
_READ_BYTES = 4 << 20
_SLAB_GROUP_BYTES = 8 << 20


def _grouped(plan: _Plan, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image readouts ordered by ``key``, and the sorted keys (split by searchsorted)."""
    chosen = np.flatnonzero(plan.selected)
    order = np.argsort(key[chosen], kind="stable")
    return chosen[order], key[chosen][order]


def _fill(
    reader: AcquisitionReader, plan: _Plan, indices: np.ndarray, lines: np.ndarray,
    rows_of: np.ndarray, columns_of: np.ndarray,
) -> None:  # fmt: skip
    """Add readouts ``indices`` into ``lines[rows_of[n], columns_of[n]]``, then average repeats.

    In file order, as the readouts were acquired: repeated lines (averages)
    are summed in that order, then divided by their count.
    """
    counts = np.zeros(lines.shape[:2], dtype=np.int32)
    per_row = plan.coils * int(lines.shape[-1]) * np.dtype(np.complex64).itemsize
    for chosen, rows in reader.read(np.sort(indices), _READ_BYTES // per_row):
        for n, row in zip(chosen, rows, strict=True):
            r, y = rows_of[n], columns_of[n]
            _place(row, lines[r, y], plan.coils, int(plan.offset[n]))
            counts[r, y] += 1
    repeated = counts > 1
    if repeated.any():
        lines[repeated] /= counts[repeated][:, None, None].astype(np.float32)


def _slices_2d(
    reader: AcquisitionReader, plan: _Plan, geometry: Geometry
) -> Generator[np.ndarray, None, None]:
    """Each slice's image readouts as ``(phase, coils, readout)`` complex64 lines.

    Line-major, so each readout is one contiguous write (placing it straight
    into fastMRI's phase-last order is a strided write, ~4x slower).
    """
    ex, ey = geometry.encoded[0], geometry.encoded[1]
    ordered, rows = _grouped(plan, plan.slice_row)
    bounds = np.searchsorted(rows, np.arange(plan.slices + 1))
    row0 = np.zeros(len(plan.selected), dtype=np.int64)  # one slice at a time: its row 0
    for n in range(plan.slices):
        lines = np.zeros((1, ey, plan.coils, ex), dtype=np.complex64)
        _fill(reader, plan, ordered[bounds[n] : bounds[n + 1]], lines, row0, plan.column)
        yield lines[0]
        del lines  # one slice's lines at a time


def _slab_slices(
    reader: AcquisitionReader, plan: _Plan, geometry: Geometry, folder: Path
) -> Generator[np.ndarray, None, None]:
    """The z positions of a 3D slab, each as ``(phase, coils, readout)`` complex64 lines.

    The partitions are inverse-transformed along kz (centred, orthonormal) a
    group of lines at a time, all partitions of those lines together, and the
    recon z positions kept (centre crop) go to an unnamed scratch file beside
    the output, laid out z by z; then each z position is read back whole.
    The slab passes through the scratch file once, never through memory.
    """
    ex, ey, ez = geometry.encoded
    rz = geometry.recon[2]
    z0 = (ez - rz) // 2
    line_bytes = plan.coils * ex * np.dtype(np.complex64).itemsize
    group = max(1, _SLAB_GROUP_BYTES // (ez * line_bytes))
    ordered, columns = _grouped(plan, plan.column)
    with tempfile.TemporaryFile(prefix=TEMP_PREFIX, dir=folder) as scratch:
        fd = scratch.fileno()
        os.ftruncate(fd, rz * ey * line_bytes)
        for y0 in range(0, ey, group):
            y1 = min(y0 + group, ey)
            lo, hi = np.searchsorted(columns, [y0, y1])
            lines = np.zeros((ez, y1 - y0, plan.coils, ex), dtype=np.complex64)
            _fill(reader, plan, ordered[lo:hi], lines, plan.slice_row, plan.column - y0)
            planes = np.fft.fftshift(
                np.fft.ifft(np.fft.ifftshift(lines, axes=0), axis=0, norm="ortho"), axes=0
            )[z0 : z0 + rz]
            del lines
            for z in range(rz):
                plane = np.ascontiguousarray(planes[z], dtype=np.complex64)
                _pwrite_all(fd, plane, (z * ey + y0) * line_bytes)
            del planes
        for z in range(rz):
            out = np.empty((ey, plan.coils, ex), dtype=np.complex64)
            _pread_all(fd, out, z * ey * line_bytes)
            yield out
            del out  # one z position at a time


def _pwrite_all(fd: int, array: np.ndarray, offset: int) -> None:
    """All of a contiguous ``array`` at ``offset`` (a write may stop short, e.g. at 2 GiB)."""
    view = array.reshape(-1).view(np.uint8).data
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def _pread_all(fd: int, array: np.ndarray, offset: int) -> None:
    """Fill a contiguous ``array`` from ``offset`` of a file known to hold it."""
    view = array.reshape(-1).view(np.uint8).data
    while view:
        done = os.preadv(fd, [view], offset)
        if done == 0:
            raise RuntimeError("the scratch file of a 3D slab is shorter than it was made")
        view, offset = view[done:], offset + done


def _place(row: np.void, line: np.ndarray, coils: int, offset: int) -> None:
    """Add one readout's samples to ``line`` (``(coils, ex)``) from ``offset`` on."""
    head = row["head"]
    samples = int(head["number_of_samples"])
    pre, post = int(head["discard_pre"]), int(head["discard_post"])
    data = np.asarray(row["data"], dtype=np.float32).view(np.complex64)
    data = data.reshape(coils, samples)[:, pre : samples - post]
    if int(head["flags"]) & _REVERSE:
        data = data[:, ::-1]
    line[:, offset : offset + data.shape[1]] += data


@dataclass
class _Durable:
    """What :func:`_atomic_hdf5` made durable: the file's SHA-256, once renamed."""

    sha256: str = ""


@contextlib.contextmanager
def _atomic_hdf5(path: Path) -> Iterator[tuple[h5py.File, _Durable]]:
    """An HDF5 file under a temporary name beside ``path``, renamed on success.

    HDF5 writes by file name, so :func:`pipeline.atomic.atomic_open`'s file
    object does not fit; the temporary name has the same prefix, so
    :func:`pipeline.atomic.remove_stale_temps` cleans up after a crash.  The
    file is hashed while it is fsynced (what the runner records).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, created = new_hdf5(path.parent)  # created, not truncated: see new_hdf5
    durable = _Durable()
    try:
        with created as handle:
            yield handle, durable
        durable.sha256 = durable_sha256(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        ours = hidden_write_error(exc, tmp)
        if ours is not None:
            raise ours from exc  # chained: see pipeline.raw.ismrmrd_out.write_ismrmrd
        raise


# The folder a run keeps in each output (pipeline.batch.runner.STATE_DIR).
STATE_DIR = ".mricurate"


def export_fastmri_tree(source: Path, output: Path) -> tuple[int, int, list[tuple[str, str]]]:
    """Write a fastMRI-layout file for every image measurement of a ``convert`` OUTPUT.

    Noise measurements (``*-noise.h5``) are skipped.  The inputs are our own
    anonymized files, so paths and reasons here hold no PHI.

    Returns
    -------
    (written, skipped, failed)
        ``failed`` lists (relative path, reason) of files that could not be exported.
    """
    if not source.is_dir():
        raise CurationError(f"SOURCE {source} is not a folder written by 'mricurate convert'")
    if output.resolve().is_relative_to(source.resolve()):
        raise CurationError(f"OUTPUT {output} must not be inside SOURCE {source}")
    output.mkdir(parents=True, exist_ok=True)
    written = skipped = 0
    failed: list[tuple[str, str]] = []
    for path in sorted(source.rglob("*.h5")):
        relpath = path.relative_to(source).as_posix()
        if path.name.startswith(TEMP_PREFIX) or STATE_DIR in path.relative_to(source).parts:
            continue
        if path.stem.endswith("-noise"):
            skipped += 1
            continue
        target = output / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            export_fastmri(path, target)
        except InputError as exc:
            failed.append((relpath, f"{exc.reason}: {exc.detail}"))
            continue
        written += 1
    return written, skipped, failed
