"""The ISMRMRD/HDF5 writer: what ismrmrd.Dataset reads back, and nothing on failure."""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest

from pipeline.atomic import TEMP_PREFIX
from pipeline.errors import UnreadableInput
from pipeline.raw.blocks import (
    ACQUISITION_DTYPE,
    ACQUISITION_HEADER_DTYPE,
    WAVEFORM_DTYPE,
    AcquisitionBlock,
    WaveformBlock,
)
from pipeline.raw.ismrmrd_out import (
    HASH_BUFFER,
    _AcquisitionTable,
    _EarlyWriteback,
    _h5dwrite,
    _read_ahead,
    _table,
    durable_sha256,
    keep_freed_memory,
    new_hdf5,
    write_ismrmrd,
)
from pipeline.raw.twix import measurement_blocks, open_twix
from tests.reference import ROOT, reference_marks

XML = '<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"></ismrmrdHeader>'


def acquisitions(start: int, n: int, channels: int = 3, samples: int = 40) -> AcquisitionBlock:
    rng = np.random.default_rng(start)
    rows = np.zeros(n, dtype=ACQUISITION_DTYPE)
    for i in range(n):
        head = rows["head"][i]
        head["version"] = 1
        head["scan_counter"] = start + i
        head["number_of_samples"] = samples
        head["active_channels"] = head["available_channels"] = channels
        head["idx"]["kspace_encode_step_1"] = (start + i) % 7
        head["flags"] = 1 << 18 if i == 0 else 0
        head["read_dir"] = (1.0, 0.0, 0.0)
        rows["traj"][i] = np.zeros(0, dtype=np.float32)
        rows["data"][i] = rng.standard_normal(2 * channels * samples).astype(np.float32)
    return AcquisitionBlock(rows)


def waveforms(n: int) -> WaveformBlock:
    rows = np.zeros(n, dtype=WAVEFORM_DTYPE)
    for i in range(n):
        rows["head"][i]["version"] = 1
        rows["head"][i]["number_of_samples"] = 5
        rows["head"][i]["channels"] = 2
        rows["head"][i]["waveform_id"] = 1024
        rows["data"][i] = np.arange(10, dtype=np.uint32) + i
    return WaveformBlock(rows)


def test_ismrmrd_dataset_reads_back_what_was_written(tmp_path: Path) -> None:
    blocks: list[AcquisitionBlock | WaveformBlock] = [
        acquisitions(0, 5),
        waveforms(2),
        acquisitions(5, 600),  # more than one HDF5 chunk
        AcquisitionBlock(np.zeros(0, dtype=ACQUISITION_DTYPE)),
        acquisitions(605, 1),
        waveforms(1),
    ]
    out = tmp_path / "sub" / "out.h5"
    stats = write_ismrmrd(out, XML, blocks)
    assert (stats.acquisitions, stats.waveforms) == (606, 3)
    assert stats.bytes == out.stat().st_size
    assert stats.sample_bytes == 606 * 3 * 40 * 8
    assert stats.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()  # hashed while fsynced
    assert out.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in out.parent.iterdir()] == ["out.h5"]

    written = np.concatenate([b.rows for b in blocks if isinstance(b, AcquisitionBlock)])
    dataset = ismrmrd.Dataset(str(out), "dataset", create_if_needed=False)
    try:
        xml = dataset.read_xml_header()
        assert (xml.decode() if isinstance(xml, bytes) else xml) == XML
        assert dataset.number_of_acquisitions() == 606
        for i in (0, 1, 5, 255, 256, 604, 605):
            acq = dataset.read_acquisition(i)
            expected = written[i]
            head = np.frombuffer(acq.getHead(), dtype=ACQUISITION_HEADER_DTYPE)[0]
            assert head.tobytes() == expected["head"].tobytes()
            assert np.array_equal(acq.data.view(np.float32).ravel(), expected["data"])
            assert acq.scan_counter == i
        assert dataset.number_of_waveforms() == 3
        wave = dataset.read_waveform(2)
        assert wave.waveform_id == 1024
        assert np.array_equal(wave.data.ravel(), np.arange(10, dtype=np.uint32))
    finally:
        dataset.close()


def test_the_layout_is_ismrmrds_own(tmp_path: Path) -> None:
    """Same HDF5 types as ismrmrd's own writer produces, so its readers see no difference."""
    ours, theirs = tmp_path / "ours.h5", tmp_path / "theirs.h5"
    block = acquisitions(0, 3)
    write_ismrmrd(ours, XML, [block, waveforms(1)])
    reference = ismrmrd.Dataset(str(theirs), "dataset", create_if_needed=True)
    try:
        reference.write_xml_header(XML)
        acq = ismrmrd.Acquisition.from_array(
            block.rows["data"][0].view(np.complex64).reshape(3, 40)
        )
        reference.append_acquisition(acq)
        wave = ismrmrd.Waveform.from_array(np.zeros((2, 5), dtype=np.uint32))
        reference.append_waveform(wave)
    finally:
        reference.close()
    with h5py.File(ours, "r") as mine, h5py.File(theirs, "r") as own:
        assert set(mine["dataset"]) == set(own["dataset"]) == {"xml", "data", "waveforms"}
        for name in ("xml", "data", "waveforms"):
            assert mine["dataset"][name].id.get_type() == own["dataset"][name].id.get_type(), name
        assert mine["dataset/data"].maxshape == (None,)
        assert mine["dataset/data"].chunks is not None
    write_ismrmrd(ours, XML, [block])
    with h5py.File(ours, "r") as mine:
        assert set(mine["dataset"]) == {"xml", "data"}  # no waveforms table without waveforms


def _failing(after: int) -> Iterator[AcquisitionBlock | WaveformBlock]:
    yield acquisitions(0, after)
    yield waveforms(1)
    raise UnreadableInput("measurement 1: readout 9 ... the file ends 100 bytes early")


def test_an_error_in_the_blocks_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.h5"
    with pytest.raises(UnreadableInput, match="ends 100 bytes early"):
        write_ismrmrd(out, XML, _failing(8))
    assert list(tmp_path.iterdir()) == []


def test_an_error_keeps_an_existing_output_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out.h5"
    write_ismrmrd(out, XML, [acquisitions(0, 2)])
    before = out.read_bytes()
    with pytest.raises(UnreadableInput):
        write_ismrmrd(out, XML, _failing(4))
    assert out.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]


@pytest.mark.parametrize("size", [0, 1, HASH_BUFFER, 2 * HASH_BUFFER + 12_345])
def test_durable_sha256_is_the_files_sha256(tmp_path: Path, size: int) -> None:
    """Two buffers in turn: every block hashed once, in order, whatever the size."""
    path = tmp_path / "f.bin"
    path.write_bytes(np.random.default_rng(size).bytes(size))
    assert durable_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_new_temp_file_is_the_owners_alone_and_never_an_existing_one(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        first, handle = new_hdf5(tmp_path)
        handle.close()
        second, other = new_hdf5(tmp_path)
        other.close()
    finally:
        os.umask(old_umask)
    assert first != second and first.name.startswith(TEMP_PREFIX)
    assert {stat.S_IMODE(p.stat().st_mode) for p in (first, second)} == {0o600}


def _mixed_blocks() -> list[AcquisitionBlock]:
    """Blocks of every kind the direct write must take as h5py does, or leave to h5py."""
    plain = acquisitions(0, 300)
    other_shape = acquisitions(300, 7, channels=2, samples=17)
    radial = acquisitions(307, 5)
    for i in range(5):  # a trajectory of 2 floats per sample: a non-empty traj member
        radial.rows["head"][i]["trajectory_dimensions"] = 2
        radial.rows["traj"][i] = np.arange(80, dtype=np.float32) + i
    views = acquisitions(312, 4)
    whole = np.stack(list(views.rows["data"]))
    for i in range(4):  # views into one array, as the twix reader makes them
        views.rows["data"][i] = whole[i]
    strided = acquisitions(316, 3)
    strided.rows["data"][1] = np.repeat(strided.rows["data"][1], 2)[::2]  # not contiguous
    return [plain, other_shape, radial, views, strided, acquisitions(319, 256)]


def _table_file(path: Path, blocks: list[AcquisitionBlock], *, direct: bool) -> int:
    with h5py.File(path, "x") as handle:
        group = handle.create_group("dataset")
        table = _AcquisitionTable(_table(group, "data", ACQUISITION_DTYPE), direct=direct)
        for block in blocks:
            table.append(block.rows)
        assert table.rows == sum(len(b) for b in blocks)
        return table.direct_rows


def test_the_direct_write_writes_the_bytes_h5py_writes(tmp_path: Path) -> None:
    """``H5Dwrite`` on the rows' own arrays: the same file, byte for byte, as h5py's write."""
    blocks = _mixed_blocks()
    direct = _table_file(tmp_path / "direct.h5", blocks, direct=True)
    # Every block of float32 contiguous arrays went direct; the one with a strided array not.
    assert direct == sum(len(b) for b in blocks) - 3
    assert _table_file(tmp_path / "h5py.h5", blocks, direct=False) == 0
    assert (tmp_path / "direct.h5").read_bytes() == (tmp_path / "h5py.h5").read_bytes()
    with h5py.File(tmp_path / "direct.h5", "r") as handle:
        rows = handle["dataset/data"][...]
    written = np.concatenate([b.rows for b in blocks])
    assert rows["head"].tobytes() == written["head"].tobytes()
    for got, want in zip(rows, written, strict=True):
        assert np.array_equal(got["data"], np.asarray(want["data"], dtype=np.float32))
        assert np.array_equal(got["traj"], want["traj"])


def test_rows_of_other_types_are_left_to_h5py(tmp_path: Path) -> None:
    """float64 samples: h5py converts them (into bytes that are not always the same: the
    heap objects it writes then hold uninitialized padding, which is why no reader of ours
    makes them)."""
    doubles = acquisitions(0, 2)
    doubles.rows["data"][0] = doubles.rows["data"][0].astype(np.float64)
    assert _table_file(tmp_path / "mixed.h5", [doubles, acquisitions(2, 3)], direct=True) == 3
    with h5py.File(tmp_path / "mixed.h5", "r") as handle:
        rows = handle["dataset/data"][...]
    assert rows["data"][0].dtype == np.float32
    assert np.array_equal(rows["data"][0], doubles.rows["data"][0].astype(np.float32))
    assert np.array_equal(rows["data"][3], acquisitions(2, 3).rows["data"][1])


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=reference_marks("twix", n)) for n in ("gre.dat", "epi.dat")]
)
def test_real_twix_files_convert_to_the_same_bytes_either_way(name: str, tmp_path: Path) -> None:
    twix = open_twix(ROOT / "twix" / name)
    for meas in twix.measurements:
        blocks = [b for b in measurement_blocks(twix, meas) if isinstance(b, AcquisitionBlock)]
        direct = _table_file(tmp_path / f"direct-{meas.index}.h5", blocks, direct=True)
        assert direct == sum(len(b) for b in blocks) > 0
        _table_file(tmp_path / f"h5py-{meas.index}.h5", blocks, direct=False)
        ours = (tmp_path / f"direct-{meas.index}.h5").read_bytes()
        assert ours == (tmp_path / f"h5py-{meas.index}.h5").read_bytes()


def test_read_ahead_reads_on_its_own_thread_and_at_most_one_block_ahead() -> None:
    made: list[int] = []
    threads: set[int] = set()

    def blocks() -> Iterator[AcquisitionBlock | WaveformBlock]:
        for i in range(6):
            threads.add(threading.get_ident())
            made.append(i)
            yield acquisitions(i, 1)

    seen = []
    for block in _read_ahead(blocks()):
        time.sleep(0.05)  # the reader runs as far ahead as it may meanwhile
        seen.append(int(block.rows["head"]["scan_counter"][0]))
        # The next one is made (and waits to be taken) while this one is written: no more.
        assert len(made) - len(seen) <= 1
    assert seen == list(range(6))
    assert threads and threading.get_ident() not in threads


def test_read_ahead_raises_the_readers_error_where_its_block_would_come() -> None:
    got = []
    with pytest.raises(UnreadableInput, match="ends 100 bytes early"):
        for block in _read_ahead(_failing(3)):
            got.append(len(block))
    assert got == [3, 1]


def test_read_ahead_stops_the_reader_when_the_writer_stops() -> None:
    closed = threading.Event()

    def endless() -> Iterator[AcquisitionBlock | WaveformBlock]:
        try:
            n = 0
            while True:
                yield acquisitions(n, 1)
                n += 1
        finally:
            closed.set()

    ahead = _read_ahead(endless())
    next(ahead)
    # What a failed write does, leaving its loop (on a thread: a reader never stopped hangs it).
    closing = threading.Thread(target=ahead.close, daemon=True)
    closing.start()
    closing.join(5)
    assert not closing.is_alive()
    assert closed.wait(5)
    assert not [t for t in threading.enumerate() if t.name == "ismrmrd-read-ahead"]


_CONVERT = """
import resource, sys
from pathlib import Path
import pipeline.raw.ismrmrd_out as out
from pipeline.raw.twix import measurement_blocks, open_twix
if sys.argv[2] == "untuned":
    out.keep_freed_memory = lambda: False
twix = open_twix(Path(sys.argv[1]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
written = out.write_ismrmrd_temp(Path(sys.argv[1]).parent, "<x/>",
                                 measurement_blocks(twix, twix.measurements[0]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
written.path.unlink()
"""


def test_a_conversion_reuses_the_memory_it_frees(tmp_path: Path) -> None:
    """Freed blocks are kept by malloc, not faulted in again block by block (glibc only)."""
    if not keep_freed_memory():
        pytest.skip("not glibc's malloc")
    from pipeline.samples.twix import SyntheticMeasurement, write_vd_twix

    source = tmp_path / "meas.dat"
    write_vd_twix(source, [SyntheticMeasurement(channels=15, samples=640, lines=256, slices=3)])

    def faults(mode: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", _CONVERT, str(source), mode],
            capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2],
        )  # fmt: skip
        return int(done.stdout.split()[-1])

    # 115 MB converted in a fresh process: ~11,800 page faults tuned, ~21,800 with
    # glibc's defaults (the gap grows with the file: ~18,000 and ~67,000 for 500 MB).
    tuned, untuned = faults("tuned"), faults("untuned")
    assert tuned < 0.7 * untuned, (tuned, untuned)


class _CacheStat(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in ("cache", "dirty", "writeback", "evicted", "recently_evicted")
    ]


def _dirty_pages(path: Path) -> tuple[int, int] | None:
    """(pages cached, of them dirty) of ``path``: Linux's cachestat(2), None without it."""
    libc = ctypes.CDLL(None, use_errno=True)
    whole = (ctypes.c_uint64 * 2)(0, 0)  # offset 0, length 0: the whole file
    found = _CacheStat()
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.syscall(451, fd, ctypes.byref(whole), ctypes.byref(found), 0) != 0:  # x86_64
            return None
    finally:
        os.close(fd)
    return found.cache, found.dirty


def _file_system(path: Path) -> str:
    """The type of the file system ``path`` is on (the longest mount point above it)."""
    best, kind = "", ""
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            point, fs_type = line.split()[1:3]
            if str(path.resolve()).startswith(point.rstrip("/") + "/") and len(point) > len(best):
                best, kind = point, fs_type
    return kind


def test_early_writeback_has_the_disk_write_the_file_while_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    chunk = np.random.default_rng(0).bytes(1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with _EarlyWriteback(path, every=4 << 20) as writeback:
            for _ in range(32):
                os.write(fd, chunk)
                writeback.wrote(len(chunk))
        pages = _dirty_pages(path)
        if pages is None or os.uname().machine != "x86_64":
            pytest.skip("no cachestat(2) here to see which pages are dirty")
        cached, dirty = pages
        if _file_system(tmp_path) in {"tmpfs", "ramfs"}:
            pytest.skip("a file system in memory: no disk to write back to")
        # With the kernel's defaults (30 s, 10% of memory) all 32 MiB would still be dirty.
        assert writeback.started >= 2
        assert dirty < cached // 2, (cached, dirty)
    finally:
        os.close(fd)


def test_libhdf5_is_found_beside_mapped_files_whose_names_are_not_utf8(tmp_path: Path) -> None:
    """SQLite maps the catalog's -shm file: a Latin-1 private folder must not hide libhdf5."""
    named = os.path.join(os.fsencode(tmp_path), b"privat_\xe9.db-shm")
    with open(named, "wb") as handle:
        handle.write(b"\0" * 4096)
    with open(named, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ):
        _h5dwrite.cache_clear()
        try:
            assert _h5dwrite() is not None
        finally:
            _h5dwrite.cache_clear()
