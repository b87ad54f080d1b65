"""Writing ISMRMRD/HDF5 files from blocks of acquisitions, atomically.

ISMRMRD's own Python ``Dataset.append_acquisition`` resizes the dataset and
writes one row per call; with tens of thousands of readouts that is most of
the conversion time.  Here each block (hundreds of rows already in ISMRMRD's
compound dtype) is written with one h5py slice assignment into a chunked,
resizable dataset, with the same layout (``/dataset/xml``, ``/dataset/data``,
``/dataset/waveforms``) that the C++ and Python ISMRMRD readers expect.

The file is built under a temporary name in the target folder and renamed
into place only when complete: an error in the blocks (a twix file that
turns out to be cut short) leaves nothing at the output path.  Its SHA-256
(what the runner records) is computed from the page cache while the fsync
waits for the disk, so the hash adds no pass of its own to the wall time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from numpy.lib.recfunctions import assign_fields_by_name

from pipeline.atomic import TEMP_PREFIX
from pipeline.raw.blocks import (
    ACQUISITION_DTYPE,
    ACQUISITION_HEADER_DTYPE,
    WAVEFORM_DTYPE,
    AcquisitionBlock,
    WaveformBlock,
)
from pipeline.storage import hidden_write_error

GROUP = "dataset"
CHUNK_ROWS = 256  # rows per HDF5 chunk of the header table; samples live in the vlen heap


@dataclass(frozen=True)
class IsmrmrdWriteStats:
    """What :func:`write_ismrmrd` wrote."""

    acquisitions: int
    waveforms: int
    bytes: int  # size of the written file
    sample_bytes: int  # k-space samples (float32 re/im) among them
    sha256: str  # of the written file's bytes


def write_ismrmrd(
    path: Path,
    xml_header: str,
    blocks: Iterable[AcquisitionBlock | WaveformBlock],
    *,
    mode: int = 0o644,
) -> IsmrmrdWriteStats:
    """Write an ISMRMRD/HDF5 file at ``path`` from an XML header and row blocks.

    Parameters
    ----------
    path
        Final location; replaced atomically, never left half-written.
    xml_header
        The ISMRMRD XML header, stored as ``ismrmrd.Dataset.write_xml_header`` does.
    blocks
        Consumed once, in order; any exception they raise propagates after the
        temporary file is removed.
    mode
        Permission bits of the finished file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    written = write_ismrmrd_temp(path.parent, xml_header, blocks, mode=mode)
    with removed_on_error(written.path):
        sha256 = durable_sha256(written.path)
        os.replace(written.path, path)
    return IsmrmrdWriteStats(
        acquisitions=written.acquisitions,
        waveforms=written.waveforms,
        bytes=path.stat().st_size,
        sample_bytes=written.sample_bytes,
        sha256=sha256,
    )


@dataclass(frozen=True)
class IsmrmrdTemp:
    """What :func:`write_ismrmrd_temp` wrote: a whole file, not yet durable."""

    path: Path
    acquisitions: int
    waveforms: int
    sample_bytes: int
    headers: np.ndarray | None = None  # the fields asked for of every acquisition header


def write_ismrmrd_temp(
    folder: Path,
    xml_header: str,
    blocks: Iterable[AcquisitionBlock | WaveformBlock],
    *,
    mode: int = 0o644,
    keep_headers: tuple[str, ...] = (),
) -> IsmrmrdTemp:
    """Write an ISMRMRD/HDF5 file under a new temporary name in ``folder``, not yet fsynced.

    For a caller that renames it itself (the runner commits its temp files),
    and that can read it meanwhile: it must make it durable
    (:func:`durable_sha256`) before it is renamed, and remove it if it is not.
    On an error nothing is left behind.  ``keep_headers`` names acquisition
    header fields to return for every acquisition, as written (a reader of
    the new file then need not read every row back for them).
    """
    tmp, handle = new_hdf5(folder)
    kept: list[np.ndarray] = []
    kept_dtype = np.dtype([(name, ACQUISITION_HEADER_DTYPE[name]) for name in keep_headers])
    with removed_on_error(tmp):
        acquisitions = waveforms = sample_bytes = 0
        with handle:
            group = handle.create_group(GROUP)
            xml = group.create_dataset("xml", shape=(1,), dtype=h5py.special_dtype(vlen=bytes))
            xml[0] = xml_header.encode("utf-8")
            data = waveform_set = None
            for block in blocks:
                n = len(block)
                if n == 0:
                    continue
                if isinstance(block, AcquisitionBlock):
                    if data is None:
                        data = _table(group, "data", ACQUISITION_DTYPE)
                    data.resize((acquisitions + n,))
                    data[acquisitions : acquisitions + n] = block.rows
                    acquisitions += n
                    sample_bytes += _sample_bytes(block.rows)
                    if keep_headers:
                        part = np.empty(n, dtype=kept_dtype)
                        assign_fields_by_name(part, block.rows["head"])
                        kept.append(part)
                else:
                    if waveform_set is None:
                        waveform_set = _table(group, "waveforms", WAVEFORM_DTYPE)
                    waveform_set.resize((waveforms + n,))
                    waveform_set[waveforms : waveforms + n] = block.rows
                    waveforms += n
                # Let the block go before the reader builds the next one: one block in memory.
                del block
        os.chmod(tmp, mode)
    headers = None
    if keep_headers:
        headers = np.concatenate(kept) if kept else np.empty(0, dtype=kept_dtype)
    return IsmrmrdTemp(tmp, acquisitions, waveforms, sample_bytes, headers)


@contextlib.contextmanager
def removed_on_error(tmp: Path) -> Iterator[None]:
    """Remove ``tmp`` if the block fails; a full disk libhdf5 reported in words says so."""
    try:
        yield
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        ours = hidden_write_error(exc, tmp)
        if ours is not None:
            # Chained, not replaced: libhdf5 can crash when the objects of a file whose
            # write failed are freed, so they must outlive the report of our failure.
            raise ours from exc
        raise


HASH_BUFFER = 4 << 20  # bytes per read of a file hashed while it is fsynced (two such buffers)


def durable_sha256(path: Path) -> str:
    """fsync ``path`` and return its SHA-256, hashed from the page cache while the fsync waits.

    The fsync runs on a thread of its own; this one reads into two buffers in
    turn while a third thread hashes the other (read() and hashlib release the
    GIL), so the copy out of the page cache and the hash overlap too.
    """
    sha = hashlib.sha256()
    buffers = (bytearray(HASH_BUFFER), bytearray(HASH_BUFFER))
    hashing: list[Future[None] | None] = [None, None]
    with (
        open(path, "rb", buffering=0) as fh,
        ThreadPoolExecutor(1) as syncer,
        ThreadPoolExecutor(1) as hasher,
    ):
        synced = syncer.submit(os.fsync, fh.fileno())
        turn = 0
        while True:
            pending = hashing[turn]
            if pending is not None:
                pending.result()  # its buffer is free again
            n = fh.readinto(buffers[turn])
            if not n:
                break
            hashing[turn] = hasher.submit(sha.update, memoryview(buffers[turn])[:n])
            turn ^= 1
        for pending in hashing:
            if pending is not None:
                pending.result()
        synced.result()
    return sha.hexdigest()


def new_hdf5(folder: Path) -> tuple[Path, h5py.File]:
    """A new HDF5 file under a temporary name in ``folder``, open for writing.

    Created, never truncated (h5py's mode ``"x"``, ``O_EXCL``): ext4 starts
    writing back a file truncated to nothing when it is closed
    (``auto_da_alloc``), which a ``mkstemp`` name opened with ``"w"`` is, and
    that costs the writer's CPU time before the fsync, which would write it anyway.
    Owner-only (0600, as ``mkstemp`` made it) before anything but HDF5's
    superblock is in it: a candidate is not yet leak-checked.
    """
    while True:
        tmp = folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}.h5"
        try:
            created = h5py.File(tmp, "x")
        except FileExistsError:
            continue
        except BaseException:
            tmp.unlink(missing_ok=True)  # libhdf5 may fail after it made the file
            raise
        try:
            os.chmod(tmp, 0o600)
        except BaseException:
            created.close()
            tmp.unlink(missing_ok=True)
            raise
        return tmp, created


def _sample_bytes(rows: np.ndarray) -> int:
    head = rows["head"]
    return 8 * int(np.sum(head["number_of_samples"].astype(np.int64) * head["active_channels"]))


def _table(group: h5py.Group, name: str, dtype: np.dtype) -> h5py.Dataset:
    return group.create_dataset(
        name, shape=(0,), maxshape=(None,), chunks=(CHUNK_ROWS,), dtype=dtype
    )
