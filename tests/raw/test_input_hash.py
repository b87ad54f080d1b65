"""pipeline.raw.input_hash: the input's SHA-256 from the reader's own bytes is the file's."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from pipeline.raw.input_hash import InputHash
from pipeline.raw.twix import READ_CHUNK, measurement_blocks, open_twix
from pipeline.read.content import file_sha256
from pipeline.samples.twix import SyntheticMeasurement, write_vb17_twix, write_vd_twix


def _vd_two(path: Path) -> None:
    common = {"channels": 2, "samples": 64, "lines": 5, "slices": 2}
    write_vd_twix(
        path,
        [
            SyntheticMeasurement(noise=True, meas_id=1, **common),  # type: ignore[arg-type]
            SyntheticMeasurement(pmu_every=3, meas_id=2, **common),  # type: ignore[arg-type]
        ],
    )


def _vd_chunks(path: Path) -> None:
    # About 11 MB: more than one READ_CHUNK, so chunks are read that overlap the last.
    write_vd_twix(path, [SyntheticMeasurement(channels=8, samples=512, lines=64, slices=5)])
    assert path.stat().st_size > READ_CHUNK


def _vb17(path: Path) -> None:
    write_vb17_twix(path, SyntheticMeasurement(channels=3, samples=32, lines=4, slices=2))


WRITERS = {"vd-noise-and-image": _vd_two, "vd-several-chunks": _vd_chunks, "vb17": _vb17}


@pytest.mark.parametrize("make", WRITERS.values(), ids=WRITERS.keys())
def test_the_reader_fed_hash_is_the_files_sha256(tmp_path: Path, make: object) -> None:
    path = tmp_path / "meas.dat"
    make(path)  # type: ignore[operator]
    twix = open_twix(path)
    with InputHash(path) as digest:
        for meas in twix.measurements:
            for _ in measurement_blocks(twix, meas, digest=digest):
                pass
        assert digest.hexdigest() == file_sha256(path)


def test_a_reader_that_stops_early_still_gets_the_whole_files_hash(tmp_path: Path) -> None:
    path = tmp_path / "meas.dat"
    _vd_chunks(path)
    twix = open_twix(path)
    with InputHash(path) as digest:
        blocks = measurement_blocks(twix, twix.measurements[0], digest=digest, block_rows=16)
        for _ in itertools.islice(blocks, 3):  # the first chunk only: the rest is read at the end
            pass
        blocks.close()
        assert digest.hexdigest() == file_sha256(path)


def test_only_the_second_measurement_read(tmp_path: Path) -> None:
    """The first measurement is a gap the hash reads itself, the tail after the second too."""
    path = tmp_path / "meas.dat"
    _vd_two(path)
    twix = open_twix(path)
    with InputHash(path) as digest:
        for _ in measurement_blocks(twix, twix.measurements[1], digest=digest):
            pass
        assert digest.hexdigest() == file_sha256(path)


def test_asked_before_anything_is_read_then_fed(tmp_path: Path) -> None:
    path = tmp_path / "meas.dat"
    _vd_two(path)
    twix = open_twix(path)
    with InputHash(path) as digest:
        first = digest.hexdigest()
        for meas in twix.measurements:  # chunks fed after the hash is done change nothing
            for _ in measurement_blocks(twix, meas, digest=digest):
                pass
        assert digest.hexdigest() == first == file_sha256(path)


def test_overlapping_and_backward_chunks_count_once(tmp_path: Path) -> None:
    path = tmp_path / "bytes.bin"
    data = bytes(range(256)) * 64
    path.write_bytes(data)
    view = memoryview(data)
    with InputHash(path) as digest:
        assert digest.feed(0, view[0:1000]) is not None
        assert digest.feed(500, view[500:1500]) is not None  # overlaps: only 1000-1500 is new
        assert digest.feed(200, view[200:900]) is None  # nothing new
        digest.feed(4000, view[4000:5000])  # 1500-4000 is read from the file
        assert digest.hexdigest() == file_sha256(path)


def test_an_input_no_reader_feeds_is_hashed_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "bytes.bin"
    path.write_bytes(b"ismrmrd, read by h5py" * 10_000)
    with InputHash(path) as digest:
        digest.in_background()
        assert digest.hexdigest() == file_sha256(path)


def test_an_unreadable_input_raises_oserror_from_hexdigest(tmp_path: Path) -> None:
    with InputHash(tmp_path / "gone.dat") as digest, pytest.raises(FileNotFoundError):
        digest.hexdigest()
