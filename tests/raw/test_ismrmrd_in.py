"""Reading ISMRMRD files written by others: sniff, open, checks, rows in blocks."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest

from pipeline.errors import UnreadableInput
from pipeline.raw.blocks import ACQUISITION_DTYPE, WAVEFORM_DTYPE, AcquisitionBlock, WaveformBlock
from pipeline.raw.ismrmrd_in import (
    acquisition_headers,
    is_ismrmrd_file,
    ismrmrd_blocks,
    ismrmrd_groups,
    noise_only,
    open_ismrmrd,
)
from pipeline.reasons import Reason
from pipeline.samples.ismrmrd import IsmrmrdTruth

Sample = Callable[..., tuple[Path, IsmrmrdTruth]]


# --- sniff ------------------------------------------------------------------


def test_sniff_finds_hdf5_at_offset_0(sample: Sample) -> None:
    path, _ = sample()
    assert is_ismrmrd_file(path)


def test_sniff_finds_hdf5_after_a_user_block(tmp_path: Path) -> None:
    path = tmp_path / "userblock.h5"
    with h5py.File(path, "w", userblock_size=1024) as handle:
        handle.create_dataset("x", data=[1])
    assert path.read_bytes()[:8] != b"\x89HDF\r\n\x1a\n"
    assert is_ismrmrd_file(path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x89HDF",
        b"\x00" * 600,
        b"MEAS" * 2000,
        b"\x00" * 100 + b"\x89HDF\r\n\x1a\n" + b"\x00" * 900,
        b"\x00" * 1536 + b"\x89HDF\r\n\x1a\n" + b"\x00" * 900,
    ],
    ids=["empty", "short", "zeros", "twix-like", "signature at 100", "signature at 1536"],
)
def test_sniff_rejects_non_hdf5(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.h5"
    path.write_bytes(content)
    assert not is_ismrmrd_file(path)


def test_sniff_of_a_missing_file_is_false(tmp_path: Path) -> None:
    assert not is_ismrmrd_file(tmp_path / "missing.h5")


# --- open -------------------------------------------------------------------


def test_open_reports_counts_and_header(sample: Sample) -> None:
    path, _ = sample(slices=2, coils=2, noise_scans=1, averages=2, waveforms=5)
    source = open_ismrmrd(path)
    assert source.group == "dataset"
    assert source.acquisitions == 1 + 2 * 24 * 2  # noise + slices * lines * averages
    assert source.waveforms == 5
    assert source.other_datasets == ()
    assert "<protocolName>CORPD_FBK</protocolName>" in source.xml


@pytest.mark.ismrmrd_tools
def test_open_lists_what_is_not_carried(shepp_logan: Callable[..., Path]) -> None:
    path = shepp_logan("-m", "16", "-c", "2", "-C")
    source = open_ismrmrd(path)
    assert (source.acquisitions, source.waveforms) == (17, 0)
    # The generator also stores its phantom, coil maps and coil images.
    assert source.other_datasets == ("dataset/coil_images", "dataset/csm", "dataset/phantom")


def test_a_file_with_an_image_group_inside_the_dataset_is_one_measurement(sample: Sample) -> None:
    path, _ = sample(slices=1, coils=2)
    with h5py.File(path, "r+") as handle:
        image = handle["dataset"].create_group("image_0")
        image.create_dataset("data", data=np.zeros((1, 1, 1, 4, 4), dtype=np.float32))
        image.create_dataset("header", data=np.zeros(1, dtype=np.uint8))
    source = open_ismrmrd(path)
    assert source.other_datasets == ("dataset/image_0/data", "dataset/image_0/header")


def test_several_groups_are_each_a_measurement_and_open_refuses_to_pick(sample: Sample) -> None:
    path, _ = sample(slices=1, coils=2)
    with h5py.File(path, "r+") as handle:
        handle.copy("dataset", "second")
        handle.create_dataset("loose", data=[1, 2, 3])
    groups = ismrmrd_groups(path)
    assert [g.group for g in groups] == ["dataset", "second"]
    assert all(g.other_datasets == ("loose",) for g in groups)
    with pytest.raises(UnreadableInput, match="2 ISMRMRD dataset groups"):
        open_ismrmrd(path)
    assert open_ismrmrd(path, "second").acquisitions == groups[0].acquisitions


def test_bad_input_is_unreadable_with_a_clear_reason(bad_input: tuple[Path, str]) -> None:
    path, phrase = bad_input
    with pytest.raises(UnreadableInput) as caught:
        open_ismrmrd(path)
    assert phrase in caught.value.detail
    assert str(path) in caught.value.detail  # which file: for the private account
    assert caught.value.reason is Reason.UNREADABLE


@pytest.mark.parametrize("cut", [200, 4000])
def test_cut_short_by_a_little_is_unreadable(sample: Sample, cut: int) -> None:
    path, _ = sample(slices=1, coils=2)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    with pytest.raises(UnreadableInput, match="truncated or corrupt"):
        open_ismrmrd(path)


def test_rows_without_a_header_are_unreadable(sample: Sample) -> None:
    path, _ = sample(slices=1, coils=2)
    with h5py.File(path, "r+") as handle:
        del handle["dataset/xml"]
    with pytest.raises(UnreadableInput, match="no 'xml' header"):
        open_ismrmrd(path)


def test_a_header_without_rows_is_unreadable(sample: Sample) -> None:
    path, _ = sample(slices=1, coils=2)
    with h5py.File(path, "r+") as handle:
        del handle["dataset/data"]
    with pytest.raises(UnreadableInput, match="no acquisitions"):
        open_ismrmrd(path)


@pytest.mark.parametrize(
    ("xml", "phrase"),
    [(b"<notIsmrmrd/>", "not an ISMRMRD header"), (b"<ismrmrdHeader", "not well-formed")],
)
def test_a_foreign_header_is_unreadable(sample: Sample, xml: bytes, phrase: str) -> None:
    path, _ = sample(slices=1, coils=2)
    with h5py.File(path, "r+") as handle:
        handle["dataset/xml"][0] = xml
    with pytest.raises(UnreadableInput, match=phrase):
        open_ismrmrd(path)


def test_waveforms_in_another_dtype_are_unreadable(sample: Sample) -> None:
    path, _ = sample(slices=1, coils=2)
    with h5py.File(path, "r+") as handle:
        handle["dataset"].create_dataset("waveforms", data=np.zeros(3, dtype=np.float32))
    with pytest.raises(UnreadableInput, match="waveform dtype"):
        open_ismrmrd(path)


# --- rows -------------------------------------------------------------------


def test_blocks_hold_every_row_once_in_ismrmrd_dtypes(sample: Sample) -> None:
    path, _ = sample(slices=2, coils=3, waveforms=4)
    source = open_ismrmrd(path)
    blocks = list(ismrmrd_blocks(source, block_rows=7))
    acq = [b for b in blocks if isinstance(b, AcquisitionBlock)]
    wav = [b for b in blocks if isinstance(b, WaveformBlock)]
    assert len(acq) == math.ceil(source.acquisitions / 7)
    assert [len(b) for b in wav] == [4]
    rows = np.concatenate([b.rows for b in acq])
    assert rows.dtype == ACQUISITION_DTYPE and wav[0].rows.dtype == WAVEFORM_DTYPE
    with h5py.File(path, "r") as handle:
        stored = handle["dataset/data"][:]
    assert np.array_equal(rows["head"], stored["head"])
    assert all(np.array_equal(a, b) for a, b in zip(rows["data"], stored["data"], strict=True))
    assert np.array_equal(acquisition_headers(source, block_rows=5), stored["head"])


@pytest.mark.ismrmrd_tools
def test_rows_of_ismrmrd_c_files_match_ismrmrds_own_reader(
    shepp_logan: Callable[..., Path],
) -> None:
    """The C library pads its compound type; rows must still come out field by field."""
    path = shepp_logan("-m", "16", "-c", "3", "-C", "-r", "2")
    with h5py.File(path, "r") as handle:
        assert handle["dataset/data"].dtype != ACQUISITION_DTYPE  # padded layout
    source = open_ismrmrd(path)
    rows = np.concatenate([b.rows for b in ismrmrd_blocks(source, block_rows=10)])
    reference = ismrmrd.Dataset(str(path), "dataset", mode="r")
    try:
        for n in range(source.acquisitions):
            acq = reference.read_acquisition(n)
            head = rows["head"][n]
            assert head["idx"]["kspace_encode_step_1"] == acq.idx.kspace_encode_step_1
            assert head["idx"]["repetition"] == acq.idx.repetition
            assert head["flags"] == acq.flags
            assert head["center_sample"] == acq.center_sample
            data = rows["data"][n].view(np.complex64).reshape(acq.active_channels, -1)
            assert np.array_equal(data, acq.data)
    finally:
        reference.close()


def test_a_row_shorter_than_its_header_is_unreadable_and_named(sample: Sample) -> None:
    path, _ = sample(slices=1, coils=2)
    with h5py.File(path, "r+") as handle:
        row = handle["dataset/data"][5]
        row["data"] = row["data"][:-2]
        handle["dataset/data"][5] = row
    source = open_ismrmrd(path)
    with pytest.raises(UnreadableInput, match="acquisition 5 holds a different number") as caught:
        list(ismrmrd_blocks(source, block_rows=4))
    assert "SUBJ-0001" not in caught.value.detail  # no header value in the reason


def test_block_rows_must_be_positive(sample: Sample) -> None:
    path, _ = sample(slices=1, coils=1)
    with pytest.raises(ValueError):
        next(ismrmrd_blocks(open_ismrmrd(path), block_rows=0))


def test_a_header_field_of_another_type_is_not_the_ismrmrd_dtype(sample: Sample) -> None:
    path, _ = sample(slices=1, coils=2)
    head = ACQUISITION_DTYPE["head"]
    fields = [(n, np.dtype("<f8") if n == "flags" else head.fields[n][0]) for n in head.names]
    other = np.dtype(
        [("head", np.dtype(fields)), ("traj", ACQUISITION_DTYPE["traj"]),
         ("data", ACQUISITION_DTYPE["data"])]
    )  # fmt: skip
    with h5py.File(path, "r+") as handle:
        del handle["dataset/data"]
        handle["dataset"].create_dataset("data", (4,), dtype=other)
    with pytest.raises(UnreadableInput, match="not in the ISMRMRD acquisition dtype"):
        open_ismrmrd(path)


def test_fields_in_another_order_are_read_by_name(sample: Sample) -> None:
    """HDF5 compounds match by name; a writer may order (and pad) fields its own way."""
    path, _ = sample(slices=1, coils=2)
    head = ACQUISITION_DTYPE["head"]
    reordered = np.dtype(
        [("data", ACQUISITION_DTYPE["data"]), ("traj", ACQUISITION_DTYPE["traj"]),
         ("head", np.dtype([(n, head.fields[n][0]) for n in reversed(head.names)]))]
    )  # fmt: skip
    with h5py.File(path, "r+") as handle:
        rows = handle["dataset/data"][:]
        del handle["dataset/data"]
        handle["dataset"].create_dataset("data", (len(rows),), dtype=reordered)[:] = rows
    source = open_ismrmrd(path)
    read = np.concatenate([b.rows for b in ismrmrd_blocks(source)])
    assert np.array_equal(read["head"], rows["head"])
    assert np.array_equal(acquisition_headers(source), rows["head"])
    assert all(np.array_equal(a, b) for a, b in zip(read["data"], rows["data"], strict=True))


# Damage in the row heap further on (0.7, 0.9 of this file) is also refused,
# but the HDF5 library itself takes ~12 s to give up on it (0xff bytes read
# as huge lengths), and zeros in a heap collection can keep it from returning
# at all: a limit of libhdf5 that a per-file timeout in the runner has to cover.
@pytest.mark.parametrize("where", [0.3, 0.5])
def test_corrupt_bytes_inside_are_unreadable_at_open_or_while_reading(
    sample: Sample, where: float
) -> None:
    path, _ = sample(slices=2, coils=2)
    data = bytearray(path.read_bytes())
    at = int(len(data) * where)
    data[at : at + 4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))
    with pytest.raises(UnreadableInput):
        list(ismrmrd_blocks(open_ismrmrd(path)))


def test_corrupt_rows_are_caught_at_open_before_anything_is_written(sample: Sample) -> None:
    """Open reads the last row: damage in the row heap fails before a writer starts."""
    path, _ = sample(slices=2, coils=2)
    data = bytearray(path.read_bytes())
    at = int(len(data) * 0.3)
    data[at : at + 4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))
    with pytest.raises(UnreadableInput, match="cannot be read"):
        open_ismrmrd(path)


def test_noise_only_tells_a_noise_measurement_from_an_image(sample: Sample) -> None:
    image, _ = sample("image.h5", slices=1, coils=2, noise_scans=2)
    noise, _ = sample("noise.h5", slices=0, coils=2, noise_scans=3)
    assert not noise_only(open_ismrmrd(image))
    assert noise_only(open_ismrmrd(noise))
