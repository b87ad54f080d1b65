"""The fastMRI export slice by slice: the same file as the whole-array computation, in flat memory.

The reference below is the export as it was before it streamed (every
readout placed into one array of the whole measurement, averaged, the 3D
partitions transformed along kz at once, each slice's RSS from its batched
transforms), kept here to show that streaming changed no value: ``kspace``,
``reconstruction_rss`` and ``max`` are bitwise equal, ``norm`` is now summed
in float64 (the whole-array ``np.linalg.norm`` summed float32) and agrees to
float32 rounding.  The budgets are shrunk so that the streaming paths are
taken at test sizes (one row per read, one line of a slab per kz group).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.atomic import TEMP_PREFIX
from pipeline.errors import UnreadableInput
from pipeline.raw import fastmri, ismrmrd_out
from pipeline.raw.blocks import AcquisitionBlock
from pipeline.raw.fastmri import export_fastmri, header_geometry
from pipeline.raw.ismrmrd_in import acquisition_headers, ismrmrd_blocks, open_ismrmrd
from pipeline.raw.ismrmrd_out import write_ismrmrd, write_ismrmrd_temp
from pipeline.raw.twix import measurement_blocks, open_twix
from pipeline.read.content import file_sha256
from pipeline.samples.ismrmrd import IsmrmrdTruth
from pipeline.samples.twix import SyntheticMeasurement, write_vd_twix

Sample = Callable[..., tuple[Path, IsmrmrdTruth]]
XML = '<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"></ismrmrdHeader>'


# --- the whole-array reference (the export before it streamed) ---------------------------


def _reference_rss_slice(kspace: np.ndarray, recon_x: int, recon_y: int) -> np.ndarray:
    _, nx, ny = kspace.shape
    x0, y0 = (nx - recon_x) // 2, (ny - recon_y) // 2
    image = np.fft.fftshift(
        np.fft.ifft(np.fft.ifftshift(kspace, axes=-2), axis=-2, norm="ortho"), axes=-2
    )[:, x0 : x0 + recon_x]
    image = np.fft.fftshift(
        np.fft.ifft(np.fft.ifftshift(image, axes=-1), axis=-1, norm="ortho"), axes=-1
    )[:, :, y0 : y0 + recon_y]
    return np.asarray(np.sqrt(np.sum(np.abs(image) ** 2, axis=0)), dtype=np.float32)


def whole_array_export(path: Path) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(kspace, reconstruction_rss, max, norm) with the whole measurement in memory."""
    src = open_ismrmrd(path)
    geometry = header_geometry(src.xml)
    plan = fastmri._plan_lines(acquisition_headers(src), geometry)
    (ex, ey, ez), (rx, ry, rz) = geometry.encoded, geometry.recon
    lines = np.zeros((plan.slices, ey, plan.coils, ex), dtype=np.complex64)
    counts = np.zeros((plan.slices, ey), dtype=np.int32)
    start = 0
    for block in ismrmrd_blocks(src):
        if not isinstance(block, AcquisitionBlock):
            break
        for i in np.flatnonzero(plan.selected[start : start + len(block)]):
            n = start + int(i)
            s, y = plan.slice_row[n], plan.column[n]
            fastmri._place(block.rows[i], lines[s, y], plan.coils, int(plan.offset[n]))
            counts[s, y] += 1
        start += len(block)
    repeated = counts > 1
    if repeated.any():
        lines[repeated] /= counts[repeated][:, None, None].astype(np.float32)
    if geometry.three_d:
        z0 = (ez - rz) // 2
        planes = np.fft.fftshift(
            np.fft.ifft(np.fft.ifftshift(lines, axes=0), axis=0, norm="ortho"), axes=0
        )
        lines = np.ascontiguousarray(planes[z0 : z0 + rz], dtype=np.complex64)
    kspace = np.ascontiguousarray(lines.transpose(0, 2, 3, 1))
    rss = np.stack([_reference_rss_slice(k, rx, ry) for k in kspace])
    return kspace, rss, float(rss.max()), float(np.linalg.norm(rss))


def _shuffle_rows(path: Path, seed: int) -> None:
    """The same readouts in another order (slices interleaved, as scanners acquire them)."""
    with h5py.File(path, "r+") as hf:
        rows = hf["dataset/data"][:]
        del hf["dataset/data"]
        order = np.random.default_rng(seed).permutation(len(rows))
        hf["dataset"].create_dataset("data", data=rows[order], maxshape=(None,))


@pytest.fixture
def small_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastmri, "_READ_BYTES", 1)  # one row per read
    monkeypatch.setattr(fastmri, "_SLAB_GROUP_BYTES", 1)  # one line of a slab per kz group


CASES = {
    "2D averages, calibration, reversed lines": dict(
        slices=3, coils=3, averages=3, calibration_lines=4, reverse_odd_lines=True,
        repetitions=2,
    ),
    "2D partial Fourier and echo, odd sizes": dict(
        slices=4, coils=2, recon=(15, 13), phase_oversampling=5, step1_center=8,
        step1_maximum=15, asymmetric_echo=5, discard=(2, 1),
    ),
    "2D interleaved": dict(slices=5, coils=2, averages=2, shuffle=True),
    "3D slab, averages, partial Fourier": dict(
        slices=1, partitions=9, recon_partitions=5, coils=2, averages=3, step1_center=10,
        step1_maximum=20, recon=(12, 14),
    ),
    "3D interleaved": dict(slices=1, partitions=8, recon_partitions=6, coils=3, shuffle=True),
}  # fmt: skip


@pytest.mark.parametrize("budgets", ["default", "small"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_streamed_file_equals_the_whole_array_computation(
    sample: Sample, tmp_path: Path, request: pytest.FixtureRequest, case: str, budgets: str
) -> None:
    spec = dict(CASES[case])
    shuffle = bool(spec.pop("shuffle", False))
    path, _ = sample(**spec)
    if shuffle:
        _shuffle_rows(path, seed=len(case))
    if budgets == "small":
        request.getfixturevalue("small_budgets")
    out = tmp_path / "f.h5"
    result = export_fastmri(path, out)
    kspace, rss, peak, norm = whole_array_export(path)
    with h5py.File(out, "r") as hf:
        assert sorted(hf) == ["ismrmrd_header", "kspace", "reconstruction_rss"]
        assert hf["kspace"].dtype == np.complex64 and hf["reconstruction_rss"].dtype == np.float32
        assert hf["kspace"].chunks == (1, *kspace.shape[1:])  # one slice per chunk
        assert hf["kspace"][()].tobytes() == kspace.tobytes()
        assert hf["reconstruction_rss"][()].tobytes() == rss.tobytes()
        assert hf.attrs["max"] == peak == result.max
        assert hf.attrs["norm"] == pytest.approx(norm, rel=1e-6) and hf.attrs["norm"] == result.norm
        # Summed in float64: the norm of the stored RSS, to float64 rounding.
        exact = float(np.sqrt(np.sum(hf["reconstruction_rss"][()].astype(np.float64) ** 2)))
        assert result.norm == pytest.approx(exact, rel=1e-12)
    assert result.kspace_shape == kspace.shape and result.reconstruction_shape == rss.shape


def _traced_peak(run: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "spec",
    [dict(slices=8, coils=8, recon=(64, 48)), dict(slices=1, partitions=8, coils=8, recon=(64, 48))],
    ids=["2D", "3D"],
)  # fmt: skip
def test_memory_holds_about_one_slice_not_the_measurement(
    sample: Sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: dict[str, object]
) -> None:
    """numpy's allocations, traced: one slice's lines and a few small copies, not 8 slices."""
    monkeypatch.setattr(fastmri, "_READ_BYTES", 64 << 10)  # 8 readouts per read
    monkeypatch.setattr(fastmri, "_SLAB_GROUP_BYTES", 128 << 10)  # 2 lines of the slab
    # The two buffers of the hash taken during the fsync: fixed, whatever the file.
    monkeypatch.setattr(ismrmrd_out, "HASH_BUFFER", 64 << 10)
    path, truth = sample(**spec)
    slice_bytes = truth.kspace[0].nbytes  # 8 coils x 128 x 56 complex64: 448 KiB
    peak = _traced_peak(lambda: export_fastmri(path, tmp_path / "f.h5"))
    assert peak < 3 * slice_bytes, (peak, slice_bytes)
    assert truth.kspace.nbytes == 8 * slice_bytes  # what holding the measurement costs


def _anonymous_rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) << 10
    pytest.skip("no RssAnon in /proc/self/status (not Linux)")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_reading_the_headers_keeps_no_samples(tmp_path: Path) -> None:
    """``Dataset.fields("head")`` kept every row's samples in libhdf5 (h5py issue 2374).

    Seen on files our writer makes from twix (what ``convert`` exports from):
    each reading of the headers kept about the file's size.
    """
    twix = tmp_path / "meas.dat"
    write_vd_twix(twix, [SyntheticMeasurement(channels=8, samples=256, lines=1024, slices=1)])
    opened = open_twix(twix)
    path = tmp_path / "meas.h5"
    write_ismrmrd(path, XML, measurement_blocks(opened, opened.measurements[0]))
    samples = 1024 * 8 * 256 * 8  # 16 MiB
    source = open_ismrmrd(path)
    acquisition_headers(source)  # the first read may grow the heap that later reads reuse
    before = _anonymous_rss()
    for _ in range(3):
        heads = acquisition_headers(source)
    grown = _anonymous_rss() - before  # it was about 2 x the samples
    assert len(heads) == 1024
    assert grown < samples // 4, (grown, samples)
    slim = acquisition_headers(source, fields=("flags", "idx"))  # what a plan needs, no more
    assert slim.dtype.names == ("flags", "idx") and slim.dtype.itemsize < heads.dtype.itemsize
    assert np.array_equal(slim["flags"], heads["flags"]) and np.array_equal(
        slim["idx"], heads["idx"]
    )


def test_a_3d_slab_leaves_no_scratch_file_and_a_damaged_one_nothing(
    sample: Sample, tmp_path: Path, small_budgets: None
) -> None:
    path, _ = sample(slices=1, partitions=8, coils=2)
    folder = tmp_path / "out"
    folder.mkdir()
    export_fastmri(path, folder / "f.h5")
    assert [p.name for p in folder.iterdir()] == ["f.h5"]
    with h5py.File(path, "r+") as hf:  # a row found damaged half-way through the slab
        row = hf["dataset/data"][100]
        row["data"] = row["data"][:-4]
        hf["dataset/data"][100] = row
    (folder / "f.h5").unlink()
    with pytest.raises(UnreadableInput, match="acquisition 100"):
        export_fastmri(path, folder / "f.h5")
    assert not list(folder.iterdir())
    assert not list(tmp_path.glob(f"**/{TEMP_PREFIX}*"))


def test_headers_kept_by_the_writer_give_the_same_file(sample: Sample, tmp_path: Path) -> None:
    """What ``convert`` does: the plan from the headers written, not read back; same bytes."""
    path, _ = sample(slices=3, coils=4, calibration_lines=2, averages=2, reverse_odd_lines=True)
    source = open_ismrmrd(path)
    written = write_ismrmrd_temp(
        tmp_path, source.xml, ismrmrd_blocks(source), keep_headers=fastmri.HEADER_FIELDS
    )
    assert written.headers is not None
    read_back = acquisition_headers(open_ismrmrd(written.path), fields=fastmri.HEADER_FIELDS)
    assert written.headers.tobytes() == read_back.tobytes()
    given = export_fastmri(written.path, tmp_path / "given.h5", headers=written.headers)
    read = export_fastmri(written.path, tmp_path / "read.h5")
    assert given.sha256 == read.sha256 == file_sha256(tmp_path / "given.h5")
    with pytest.raises(ValueError, match="headers given"):
        export_fastmri(written.path, tmp_path / "short.h5", headers=written.headers[:-1])
