"""The ISMRMRD/HDF5 writer: what ismrmrd.Dataset reads back, and nothing on failure."""

from __future__ import annotations

import hashlib
import os
import stat
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
from pipeline.raw.ismrmrd_out import HASH_BUFFER, durable_sha256, new_hdf5, write_ismrmrd

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
