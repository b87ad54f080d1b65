"""Writing ISMRMRD/HDF5 files from blocks of acquisitions, atomically.

ISMRMRD's own Python ``Dataset.append_acquisition`` resizes the dataset and
writes one row per call; with tens of thousands of readouts that is most of
the conversion time.  Here each block (hundreds of rows already in ISMRMRD's
compound dtype) is written with one call into a chunked, resizable
dataset, with the same layout (``/dataset/xml``, ``/dataset/data``,
``/dataset/waveforms``) that the C++ and Python ISMRMRD readers expect.

That call is libhdf5's ``H5Dwrite`` itself for acquisition rows
(:class:`_AcquisitionTable`), its variable-length members pointing at the
blocks' own sample arrays: h5py's path copies every sample once more into
memory of its own first, and holds the GIL for the whole write.  Called this
way the GIL is released, so the reader decodes the next block on another
thread meanwhile (:func:`_read_ahead`).  The bytes written are the same.

The file is built under a temporary name in the target folder and renamed
into place only when complete: an error in the blocks (a twix file that
turns out to be cut short) leaves nothing at the output path.  While it is
written, the disk is asked to start writing what is already there
(:class:`_EarlyWriteback`), so the fsync that makes it durable finds most of
it written.  Its SHA-256 (what the runner records) is computed from the page
cache while the fsync waits for the disk, so the hash adds no pass of its
own to the wall time.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import queue
import secrets
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5s, h5t
from h5py._objects import phil
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
    keep_freed_memory()
    tmp, handle = new_hdf5(folder)
    kept: list[np.ndarray] = []
    kept_dtype = np.dtype([(name, ACQUISITION_HEADER_DTYPE[name]) for name in keep_headers])
    with removed_on_error(tmp):
        acquisitions = waveforms = sample_bytes = 0
        with handle, _EarlyWriteback(tmp) as writeback:
            group = handle.create_group(GROUP)
            xml = group.create_dataset("xml", shape=(1,), dtype=h5py.special_dtype(vlen=bytes))
            xml[0] = xml_header.encode("utf-8")
            data: _AcquisitionTable | None = None
            waveform_set = None
            for block in _read_ahead(blocks):
                n = len(block)
                if n == 0:
                    continue
                if isinstance(block, AcquisitionBlock):
                    if data is None:
                        data = _AcquisitionTable(_table(group, "data", ACQUISITION_DTYPE))
                    data.append(block.rows)
                    acquisitions += n
                    block_bytes = _sample_bytes(block.rows)
                    sample_bytes += block_bytes
                    writeback.wrote(block_bytes)
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
                # Let the block go now: memory holds only what the read-ahead holds besides.
                del block
        os.chmod(tmp, mode)
    headers = None
    if keep_headers:
        headers = np.concatenate(kept) if kept else np.empty(0, dtype=kept_dtype)
    return IsmrmrdTemp(tmp, acquisitions, waveforms, sample_bytes, headers)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
#: Free memory glibc keeps at the top of a heap, and the size from which it maps
#: allocations apart (returned to the system at once when freed).
TRIM_THRESHOLD, MMAP_THRESHOLD = 16 << 20, 4 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse in this process (once; False: not glibc).

    A conversion allocates and frees the same few sizes over and over: the
    reader's runs of samples (1 MiB) on the read-ahead thread, libhdf5's
    image of each heap collection it writes out (tens of KiB).  With glibc's
    defaults these are mapped apart or given back to the system as soon as
    they are freed, and faulted in again, zeroed, by the next allocation:
    65,000-71,000 page faults for a 500 MB file against 17,000-21,000 kept
    (0.57-0.59 s of system time against 0.42-0.44).  Allocations from 4 MiB up (the fastMRI export's slices)
    are still mapped apart and given back at once, and at most 16 MiB is
    kept free at the top of a heap, so the peak RSS stays what it was (113
    MiB converting, 161 MiB with the fastMRI export, against 164 untuned).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # The mmap threshold first: setting either ends glibc's adjusting both by itself.
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


#: Sample bytes written between two requests to start writing the file to disk.
WRITEBACK_BYTES = 64 << 20
_SYNC_FILE_RANGE_WRITE = 2  # <fcntl.h>: start writing dirty pages, do not wait


@functools.cache
def _sync_file_range() -> Any:
    """libc's ``sync_file_range`` (Linux; None elsewhere)."""
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


class _EarlyWriteback:
    """Asks the disk to start writing a file being written, every ``every`` bytes written.

    A 500 MB output is far below the kernel's dirty limits, so without this
    nothing of it reaches the disk before its fsync, which then writes all of
    it while the conversion waits.  ``sync_file_range(SYNC_FILE_RANGE_WRITE)``
    starts the writeback of what is dirty so far and returns; it is called on
    a thread of its own (it may wait for the device's queue), one at a time.
    It only moves work earlier: durability is the fsync's, which still
    follows, so a failed request is ignored (an I/O error shows at the fsync).
    """

    def __init__(self, path: Path, every: int = WRITEBACK_BYTES) -> None:
        self.started = 0  # requests the kernel accepted
        self._every = every
        self._since = 0
        self._call = _sync_file_range()
        self._fd = -1
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        if self._call is not None:
            self._fd = os.open(path, os.O_RDONLY)
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="writeback")

    def __enter__(self) -> _EarlyWriteback:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def wrote(self, n: int) -> None:
        """``n`` more bytes were written."""
        self._since += n
        if self._pool is None or self._since < self._every:
            return
        if self._pending is not None and not self._pending.done():
            return  # the last request is still being made
        self._since = 0
        self._pending = self._pool.submit(self._start)

    def _start(self) -> None:
        if self._call(self._fd, 0, 0, _SYNC_FILE_RANGE_WRITE) == 0:
            self.started += 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


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


def _read_ahead(
    blocks: Iterable[AcquisitionBlock | WaveformBlock],
) -> Iterator[AcquisitionBlock | WaveformBlock]:
    """``blocks``, read one block ahead on a thread of its own while the caller writes.

    The caller's writes release the GIL (:class:`_AcquisitionTable`), so the
    next block is read and decoded meanwhile on the other core.  The thread
    hands a block over and waits until the caller has taken it before it
    makes the next: two blocks at most are in memory (the one being written,
    the next one), as when h5py copied the block being written.  An
    exception of ``blocks`` is raised here, where the block would have come;
    when the caller stops early (its write failed) the thread is stopped and
    ``blocks`` closed.
    """
    handoff: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    taken = threading.Semaphore(0)
    stop = threading.Event()

    def hand(item: tuple[str, Any]) -> bool:
        """Hand ``item`` over; wait until it is taken (False: the caller stopped)."""
        handoff.put(item)
        while not taken.acquire(timeout=0.1):
            if stop.is_set():
                return False
        return True

    def produce() -> None:
        items = iter(blocks)
        try:
            for block in items:
                if not hand(("block", block)):
                    return
                del block  # not held here while the next one is made
            hand(("end", None))
        except BaseException as exc:  # raised to the caller, in its thread
            hand(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    reader = threading.Thread(target=produce, name="ismrmrd-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            kind, value = handoff.get()
            taken.release()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
            del value
    finally:
        stop.set()
        reader.join()


#: Acquisition rows in memory as libhdf5 reads them for the direct write: the header as
#: stored, then ``traj`` and ``data`` as ``hvl_t`` (size_t length, pointer) pairs.
_HVL = np.dtype([("len", np.uintp), ("p", np.uintp)])
_DIRECT_DTYPE = np.dtype([("head", ACQUISITION_HEADER_DTYPE), ("traj", _HVL), ("data", _HVL)])
_H5P_DEFAULT = 0


@functools.cache
def _h5dwrite() -> Any:
    """libhdf5's ``H5Dwrite``, from the very library h5py loaded (None: not found)."""
    if h5py.version.hdf5_version_tuple < (1, 10) or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None  # hid_t is 64 bits from 1.10 on
    try:
        # Bytes: any mapped file may have a name that is not UTF-8 (SQLite maps its -shm file).
        with open("/proc/self/maps", "rb") as maps:
            mapped = [line.split(None, 5) for line in maps]
    except OSError:
        return None
    paths = {os.fsdecode(fields[5].strip()) for fields in mapped if len(fields) == 6}
    loaded = sorted(
        p for p in paths if os.path.basename(p).startswith("libhdf5") and "_hl" not in p
    )
    for path in loaded:
        try:
            library = ctypes.CDLL(path, mode=os.RTLD_NOLOAD)  # the copy already loaded
        except OSError:
            continue
        versions = [ctypes.c_uint() for _ in range(3)]
        get_version = getattr(library, "H5get_libversion", None)
        write = getattr(library, "H5Dwrite", None)
        if get_version is None or write is None:
            continue
        get_version(*[ctypes.byref(v) for v in versions])
        if tuple(v.value for v in versions) != h5py.version.hdf5_version_tuple[:3]:
            continue
        write.argtypes = [ctypes.c_int64] * 5 + [ctypes.c_void_p]
        write.restype = ctypes.c_int
        return write
    return None


class _AcquisitionTable:
    """``/dataset/data``, appended to block by block.

    Rows whose ``traj`` and ``data`` are C-contiguous float32 arrays (what
    the readers make) are written by ``H5Dwrite`` itself: a memory type
    whose variable-length members are ``hvl_t`` pairs pointing at those
    arrays, so libhdf5 copies each sample straight into its heap, where
    h5py would first copy it into memory of its own; the call releases the
    GIL (ctypes does, and h5py's lock is held meanwhile, so no other h5py
    call can enter libhdf5).  Any other rows, or a failed direct write (its
    error is then h5py's, with the errno it reports), go through h5py.
    """

    def __init__(self, dataset: h5py.Dataset, *, direct: bool = True) -> None:
        self.dataset = dataset
        self.rows = 0
        self.direct_rows = 0  # of them, written by the direct call
        self._write: Any = _h5dwrite() if direct else None
        self._memory_type: Any = None
        if self._write is not None:
            stored = dataset.id.get_type()
            memory = h5t.create(h5t.COMPOUND, _DIRECT_DTYPE.itemsize)
            fields = _DIRECT_DTYPE.fields
            assert fields is not None
            memory.insert(b"head", fields["head"][1], stored.get_member_type(0))
            for name in ("traj", "data"):
                memory.insert(name.encode(), fields[name][1], h5t.vlen_create(h5t.NATIVE_FLOAT))
            self._memory_type = memory

    def append(self, rows: np.ndarray) -> None:
        start, n = self.rows, len(rows)
        self.dataset.resize((start + n,))
        table = self._direct_rows(rows) if self._write is not None else None
        if table is not None and self._write_direct(table, start, n):
            self.direct_rows += n
        else:
            self.dataset[start : start + n] = rows
        self.rows = start + n

    @staticmethod
    def _direct_rows(rows: np.ndarray) -> np.ndarray | None:
        """The rows as ``H5Dwrite`` reads them (None: a member is not a float32 array)."""
        table = np.empty(len(rows), dtype=_DIRECT_DTYPE)
        table["head"] = rows["head"]
        for name in ("traj", "data"):
            column = table[name]
            lengths, pointers = column["len"], column["p"]
            for i, values in enumerate(rows[name]):
                if (
                    type(values) is not np.ndarray
                    or values.dtype != np.float32
                    or not values.flags.c_contiguous
                ):
                    return None
                lengths[i] = values.size
                pointers[i] = values.__array_interface__["data"][0] if values.size else 0
        return table

    def _write_direct(self, table: np.ndarray, start: int, n: int) -> bool:
        file_space = self.dataset.id.get_space()
        file_space.select_hyperslab((start,), (n,))
        memory_space = h5s.create_simple((n,))
        with phil:  # no other thread's h5py call inside libhdf5 meanwhile
            status = self._write(
                self.dataset.id.id,
                self._memory_type.id,
                memory_space.id,
                file_space.id,
                _H5P_DEFAULT,
                table.ctypes.data,
            )
        return bool(status >= 0)


def _sample_bytes(rows: np.ndarray) -> int:
    head = rows["head"]
    return 8 * int(np.sum(head["number_of_samples"].astype(np.int64) * head["active_channels"]))


def _table(group: h5py.Group, name: str, dtype: np.dtype) -> h5py.Dataset:
    return group.create_dataset(
        name, shape=(0,), maxshape=(None,), chunks=(CHUNK_ROWS,), dtype=dtype
    )
