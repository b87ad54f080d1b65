"""Existing ISMRMRD/HDF5 files (GE, Philips, older siemens_to_ismrmrd runs) as input.

Such files are re-anonymized, never copied: their header goes through the
same allowlist as a converted twix protocol, and their rows are read here in
blocks and written into a new file.  Anything else the file holds (images,
coil maps, arrays, other groups) is not carried; it is listed in
:attr:`IsmrmrdInput.other_datasets` so that the run can account for it.

Every way such a file can be unusable (not HDF5, truncated, no ISMRMRD group,
rows in another dtype) becomes :class:`~pipeline.errors.UnreadableInput` with a
reason that names no header value, because reasons reach run summaries.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.lib.recfunctions import assign_fields_by_name

from pipeline.errors import UnreadableInput
from pipeline.raw.blocks import (
    ACQUISITION_DTYPE,
    ACQUISITION_HEADER_DTYPE,
    WAVEFORM_DTYPE,
    AcquisitionBlock,
    WaveformBlock,
)

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# The HDF5 superblock sits at 0 or after a user block of 512 * 2**n bytes.
# Looking up to 1 MiB covers every user block seen in practice and keeps the
# sniff to a dozen 8-byte reads even on multi-gigabyte twix files.
_SIGNATURE_SEARCH_LIMIT = 1 << 20
ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"
_CARRIED = ("xml", "data", "waveforms")
_WHAT_TO_DO = (
    "re-export it from the scanner or the converter that wrote it, or remove it from SOURCE"
)


@dataclass(frozen=True)
class IsmrmrdInput:
    """One ISMRMRD dataset group of an HDF5 file, checked and ready to be read.

    ``other_datasets`` lists HDF5 paths in the file that are not carried into
    the new file (reconstructed images, coil maps, other groups).  They are
    names chosen by whoever wrote the file: keep them on the private side.
    """

    path: Path
    group: str
    xml: str
    acquisitions: int
    waveforms: int
    other_datasets: tuple[str, ...]


def hdf5_signature_offset(path: Path) -> int | None:
    """Where the HDF5 superblock signature is (0, 512, 1024, ...), or None."""
    try:
        with path.open("rb") as handle:
            offset = 0
            while offset <= _SIGNATURE_SEARCH_LIMIT:
                handle.seek(offset)
                head = handle.read(len(HDF5_SIGNATURE))
                if len(head) < len(HDF5_SIGNATURE):
                    return None
                if head == HDF5_SIGNATURE:
                    return offset
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return None
    return None


def is_ismrmrd_file(path: Path) -> bool:
    """Cheap sniff: is ``path`` an HDF5 file (and so possibly ISMRMRD)?

    Only the HDF5 signature is checked (at offset 0 or after a user block, per
    the HDF5 file format specification); whether the file really holds an
    ISMRMRD dataset is :func:`open_ismrmrd`'s question, so that an HDF5 file
    of another kind gets a clear reason instead of being taken for twix.
    """
    return hdf5_signature_offset(path) is not None


def ismrmrd_groups(path: Path) -> tuple[IsmrmrdInput, ...]:
    """Every ISMRMRD dataset group of ``path``, in name order.

    A file may hold several groups (converters write one measurement per
    group when asked to, e.g. ``siemens_to_ismrmrd -g``): each is a
    measurement of its own and is converted on its own.

    Raises
    ------
    UnreadableInput
        Not HDF5, truncated or corrupt HDF5, no ISMRMRD group, or a group
        whose header or rows are not ISMRMRD's.
    """
    if hdf5_signature_offset(path) is None:
        raise UnreadableInput(
            f"{path}: not an HDF5 file (no HDF5 signature), so not ISMRMRD; {_WHAT_TO_DO}"
        )
    try:
        with h5py.File(path, "r") as handle:
            groups = _ismrmrd_group_names(handle)
            if not groups:
                raise UnreadableInput(
                    f"{path}: HDF5 file without an ISMRMRD dataset (no group holding an "
                    f"'xml' header and 'data' rows); {_WHAT_TO_DO}"
                )
            datasets = _all_datasets(handle)
            return tuple(_checked_group(path, handle, name, groups, datasets) for name in groups)
    except OSError as exc:
        raise UnreadableInput(
            f"{path}: the HDF5 structure cannot be read (truncated or corrupt file: "
            f"{_hdf5_reason(exc)}); copy it again from its source; {_WHAT_TO_DO}"
        ) from None


def open_ismrmrd(path: Path, group: str | None = None) -> IsmrmrdInput:
    """Open the ISMRMRD dataset of ``path`` (its only group, or ``group``).

    A file with several ISMRMRD groups is refused rather than converted in
    part: taking the first would silently leave measurements behind.  Use
    :func:`ismrmrd_groups` to convert each of them.

    Raises
    ------
    UnreadableInput
        See :func:`ismrmrd_groups`; also when ``group`` is missing or the file
        holds several groups and none was named.
    """
    found = ismrmrd_groups(path)
    if group is not None:
        for source in found:
            if source.group == group:
                return source
        raise UnreadableInput(f"{path}: no ISMRMRD dataset group of the requested name")
    if len(found) > 1:
        raise UnreadableInput(
            f"{path}: the file holds {len(found)} ISMRMRD dataset groups (measurements); "
            "convert each group (pipeline.raw.ismrmrd_in.ismrmrd_groups), not only one"
        )
    return found[0]


def ismrmrd_blocks(
    source: IsmrmrdInput, *, block_rows: int = 512
) -> Iterator[AcquisitionBlock | WaveformBlock]:
    """Yield the acquisitions, then the waveforms, of ``source`` in blocks.

    Rows are read with one h5py slice per block and converted by HDF5 (by
    field name) into ISMRMRD's own dtypes, whatever padding the writer used.
    Each row's sample count is checked against its header, so a damaged row
    fails here, naming its index, rather than in a reader of the new file.

    Raises
    ------
    UnreadableInput
        The file changed or is damaged inside its data, or a row's length
        disagrees with its header.
    """
    if block_rows < 1:
        raise ValueError("block_rows must be at least 1")
    try:
        with h5py.File(source.path, "r") as handle:
            group = handle[source.group]
            for start in range(0, source.acquisitions, block_rows):
                stop = min(start + block_rows, source.acquisitions)
                rows = group["data"].astype(ACQUISITION_DTYPE)[start:stop]
                _check_acquisition_rows(source.path, rows, range(start, stop))
                yield AcquisitionBlock(rows)
            for start in range(0, source.waveforms, block_rows):
                stop = min(start + block_rows, source.waveforms)
                rows = group["waveforms"].astype(WAVEFORM_DTYPE)[start:stop]
                _check_waveform_rows(source.path, rows, start)
                yield WaveformBlock(rows)
    except (OSError, KeyError) as exc:
        raise UnreadableInput(
            f"{source.path}: ISMRMRD rows cannot be read (truncated or corrupt data, or the "
            f"file changed since it was opened: {_hdf5_reason(exc)}); copy it again from its source"
        ) from None


class AcquisitionReader:
    """Chosen acquisitions of ``source`` (samples too), a few rows per read; a context manager.

    For a reader that gathers the readouts of one slice (or one group of
    lines) at a time, whatever order the file holds them in: h5py reads a
    list of increasing row indices in one call, about as fast per row as a
    contiguous block, where a call per row costs ten times that.

    Raises
    ------
    UnreadableInput
        As :func:`ismrmrd_blocks`: damaged data, or rows that disagree with their headers.
    """

    def __init__(self, source: IsmrmrdInput) -> None:
        self.source = source
        self._handle: h5py.File | None = None
        self._rows: Any = None

    def __enter__(self) -> AcquisitionReader:
        with self._reading():
            self._handle = h5py.File(self.source.path, "r")
            self._rows = self._handle[self.source.group]["data"].astype(ACQUISITION_DTYPE)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def read(self, indices: np.ndarray, block_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(indices, rows)``, ``block_rows`` at most at a time, of increasing ``indices``."""
        if self._rows is None:
            raise RuntimeError("AcquisitionReader.read outside its with block")
        if len(indices) > 1 and not bool(np.all(np.diff(indices) > 0)):
            raise ValueError("AcquisitionReader.read needs increasing indices")
        for start in range(0, len(indices), max(1, block_rows)):
            chosen = indices[start : start + max(1, block_rows)]
            first, last = int(chosen[0]), int(chosen[-1])
            with self._reading():
                if last - first + 1 == len(chosen):
                    rows = self._rows[first : last + 1]
                else:
                    rows = self._rows[chosen]
            _check_acquisition_rows(self.source.path, rows, chosen)
            yield chosen, rows

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except (OSError, KeyError) as exc:
            raise UnreadableInput(
                f"{self.source.path}: ISMRMRD rows cannot be read (truncated or corrupt data, or "
                f"the file changed since it was opened: {_hdf5_reason(exc)}); copy it again from "
                "its source"
            ) from None


def acquisition_headers(
    source: IsmrmrdInput,
    *,
    fields: tuple[str, ...] | None = None,
    block_rows: int = 4096,
    block_bytes: int = 4 << 20,
) -> np.ndarray:
    """Every acquisition header of ``source`` (no samples), shape ``(acquisitions,)``.

    Lets a reader decide what to do with each readout (e.g. which lines form
    an image) before it reads any samples.  ``fields`` keeps only those
    header fields (340 bytes a readout for all of them).  Whole rows are read, about
    ``block_bytes`` (at most ``block_rows`` rows) at a time, and only their
    headers kept: reading the ``head`` field alone (``Dataset.fields``) makes
    libhdf5 convert every row's samples as well and never free them (h5py
    issue 2374), which kept a whole file's samples in memory.
    """
    dtype = ACQUISITION_HEADER_DTYPE
    if fields is not None:
        dtype = np.dtype([(name, ACQUISITION_HEADER_DTYPE[name]) for name in fields])
    out = np.empty(source.acquisitions, dtype=dtype)
    try:
        with h5py.File(source.path, "r") as handle:
            data = handle[source.group]["data"]
            start, rows_per_read = 0, min(block_rows, 16)
            while start < source.acquisitions:
                stop = min(start + rows_per_read, source.acquisitions)
                rows = data[start:stop]
                # h5py reads the file's own layout; copy by field name, not position.
                assign_fields_by_name(out[start:stop], rows["head"])
                widest = max(
                    d.nbytes + t.nbytes for d, t in zip(rows["data"], rows["traj"], strict=True)
                )
                rows_per_read = max(1, min(block_rows, block_bytes // max(widest, 1)))
                start = stop
    except (OSError, KeyError) as exc:
        raise UnreadableInput(
            f"{source.path}: ISMRMRD acquisition headers cannot be read ({_hdf5_reason(exc)}); "
            "copy it again from its source"
        ) from None
    return out


NOISE_FLAG = 1 << 18  # ACQ_IS_NOISE_MEASUREMENT (ISMRMRD flag 19)


def noise_only(source: IsmrmrdInput) -> bool:
    """True when every acquisition is a noise readout (a noise measurement file).

    Converters often write the noise adjustment scan as a file of its own;
    it is converted like any measurement, but has no image to export.
    """
    if not source.acquisitions:
        return False
    flags = acquisition_headers(source)["flags"]
    return bool(np.all((flags & np.uint64(NOISE_FLAG)) != 0))


# --- checks -----------------------------------------------------------------


def _ismrmrd_group_names(handle: h5py.File) -> list[str]:
    """Groups holding an ``xml`` header, or a table of acquisition-like rows.

    ISMRMRD image groups (``header``, ``data``, ``attributes``) inside a
    dataset group also have a ``data`` child; only rows with ``head`` and
    ``data`` fields make a group look like an ISMRMRD dataset without its header.
    """
    names: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Group):
            return
        xml = obj.get("xml", getlink=True)
        data = obj.get("data", getlink=True)
        if isinstance(xml, h5py.HardLink):
            names.append(name)
        elif isinstance(data, h5py.HardLink) and isinstance(obj["data"], h5py.Dataset):
            fields = obj["data"].dtype.names or ()
            if "head" in fields and "data" in fields:
                names.append(name)

    handle.visititems(visit)
    return sorted(names)


def _all_datasets(handle: h5py.File) -> list[str]:
    paths: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            paths.append(name)

    handle.visititems(visit)
    return sorted(paths)


def _checked_group(
    path: Path, handle: h5py.File, name: str, groups: list[str], datasets: list[str]
) -> IsmrmrdInput:
    group = handle[name]
    where = f"{path}: ISMRMRD dataset group {groups.index(name) + 1} of {len(groups)}"
    if "xml" not in group or not isinstance(group["xml"], h5py.Dataset):
        raise UnreadableInput(f"{where} has rows but no 'xml' header; {_WHAT_TO_DO}")
    xml = _read_xml(where, group["xml"])
    if "data" not in group or not isinstance(group["data"], h5py.Dataset):
        raise UnreadableInput(
            f"{where} has no acquisitions ('data'): it holds no raw k-space to convert "
            "(images only?); release the images through DICOM instead"
        )
    data = group["data"]
    if data.ndim != 1 or not _same_layout(data.dtype, ACQUISITION_DTYPE):
        raise UnreadableInput(
            f"{where}: 'data' is not in the ISMRMRD acquisition dtype (another format or "
            f"ISMRMRD version); convert it with a current ISMRMRD converter; {_WHAT_TO_DO}"
        )
    waveforms = 0
    if "waveforms" in group:
        wave = group["waveforms"]
        if (
            not isinstance(wave, h5py.Dataset)
            or wave.ndim != 1
            or not _same_layout(wave.dtype, WAVEFORM_DTYPE)
        ):
            raise UnreadableInput(
                f"{where}: 'waveforms' is not in the ISMRMRD waveform dtype; {_WHAT_TO_DO}"
            )
        waveforms = int(wave.shape[0])
    acquisitions = int(data.shape[0])
    if acquisitions:
        # Reading the last row touches the end of the data: a file cut short
        # inside its rows fails here, at open, rather than half-way through a write.
        data.astype(ACQUISITION_DTYPE)[acquisitions - 1 : acquisitions]
    # Everything not carried by this measurement nor by another group's.
    carried = {f"{g}/{child}" for g in groups for child in _CARRIED}
    others = tuple(p for p in datasets if p not in carried)
    return IsmrmrdInput(path, name, xml, acquisitions, waveforms, others)


def _read_xml(where: str, dataset: h5py.Dataset) -> str:
    try:
        raw = dataset[0] if dataset.shape else dataset[()]
    except (OSError, ValueError, IndexError):
        raise UnreadableInput(f"{where}: the 'xml' header cannot be read; {_WHAT_TO_DO}") from None
    if isinstance(raw, np.ndarray):
        raw = raw.tobytes()
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        root = ET.fromstring(text)
    except (UnicodeDecodeError, ET.ParseError):
        raise UnreadableInput(
            f"{where}: the 'xml' header is not well-formed UTF-8 XML; {_WHAT_TO_DO}"
        ) from None
    if root.tag != f"{{{ISMRMRD_NAMESPACE}}}ismrmrdHeader":
        raise UnreadableInput(
            f"{where}: the 'xml' header is not an ISMRMRD header (root element is not "
            f"ismrmrdHeader in the ISMRMRD namespace); {_WHAT_TO_DO}"
        )
    return text


def _same_layout(found: np.dtype, wanted: np.dtype) -> bool:
    """Same field names (any order, any padding), same scalar kinds and shapes.

    HDF5 converts compound types by field name, so order and offsets may
    differ; an extra or missing field, or a variable-length field of another
    base type, means another format.
    """
    if wanted.names is None:
        wanted_vlen = h5py.check_vlen_dtype(wanted)
        if wanted_vlen is not None:
            found_vlen = h5py.check_vlen_dtype(found)
            return found_vlen is not None and found_vlen == wanted_vlen
        if found.names is not None or h5py.check_vlen_dtype(found) is not None:
            return False
        if found.subdtype is not None or wanted.subdtype is not None:
            if found.subdtype is None or wanted.subdtype is None:
                return False
            return bool(found.shape == wanted.shape) and _same_layout(
                found.subdtype[0], wanted.subdtype[0]
            )
        return found.kind == wanted.kind and found.itemsize == wanted.itemsize
    if found.names is None or set(found.names) != set(wanted.names):
        return False
    assert found.fields is not None and wanted.fields is not None
    return all(_same_layout(found.fields[n][0], wanted.fields[n][0]) for n in wanted.names)


def _check_acquisition_rows(path: Path, rows: np.ndarray, numbers: range | np.ndarray) -> None:
    """``numbers``: the acquisition index of each row (for the reason)."""
    head = rows["head"]
    samples = head["number_of_samples"].astype(np.int64)
    expected_data = 2 * head["active_channels"].astype(np.int64) * samples
    expected_traj = head["trajectory_dimensions"].astype(np.int64) * samples
    data_len = np.fromiter((len(d) for d in rows["data"]), np.int64, len(rows))
    traj_len = np.fromiter((len(t) for t in rows["traj"]), np.int64, len(rows))
    bad = np.flatnonzero((data_len != expected_data) | (traj_len != expected_traj))
    if bad.size:
        raise UnreadableInput(
            f"{path}: acquisition {int(numbers[int(bad[0])])} holds a different number of samples "
            "than its header says (damaged rows); re-export the file from its source"
        )


def _check_waveform_rows(path: Path, rows: np.ndarray, start: int) -> None:
    head = rows["head"]
    expected = head["channels"].astype(np.int64) * head["number_of_samples"].astype(np.int64)
    found = np.fromiter((len(d) for d in rows["data"]), np.int64, len(rows))
    bad = np.flatnonzero(found != expected)
    if bad.size:
        raise UnreadableInput(
            f"{path}: waveform {start + int(bad[0])} holds a different number of samples "
            "than its header says (damaged rows); re-export the file from its source"
        )


def _hdf5_reason(exc: BaseException) -> str:
    """The HDF5 library's short reason, without the names it may quote.

    Its open errors can quote the file name and its lookup errors an object
    name; both are cut so that the reason can reach a summary.
    """
    if isinstance(exc, KeyError):
        return "an expected object is missing"
    text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    text = text.split("name =")[0].split("name=")[0].rstrip(" ,:(")
    return text[:200]
