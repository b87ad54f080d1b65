"""fastMRI-layout export, checked the way fastMRI reads it and against independent recons.

Scaling conventions, stated once:

- our ``reconstruction_rss`` uses the centred *orthonormal* inverse FFT
  (``fastmri.ifft2c``: ``norm="ortho"``, a factor ``1/sqrt(nx*ny)``);
- ``bart fft -u -i`` is unitary too: equal without any factor;
- ``ismrmrd_recon_cartesian_2d`` runs FFTW's unnormalised backward transform:
  its magnitudes are ours times ``sqrt(nx*ny)`` (encoded matrix).  It also
  reads only the first coil and stores images as ``[y][x]`` (x fastest),
  where fastMRI puts the readout first: we compare with its transpose.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as etree
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import pytest

import pipeline
from pipeline.atomic import TEMP_PREFIX
from pipeline.errors import UnreadableInput
from pipeline.raw.fastmri import FastmriUnsupported, export_fastmri
from pipeline.read.content import file_sha256
from pipeline.samples.ismrmrd import IsmrmrdTruth

Sample = Callable[..., tuple[Path, IsmrmrdTruth]]
RECON = (16, 16)


# --- fastMRI's own reading, replicated (fastmri/data/mri_data.py) ----------


def et_query(
    root: etree.Element, qlist: Sequence[str], namespace: str = "http://www.ismrm.org/ISMRMRD"
) -> str:
    s = "."
    prefix = "ismrmrd_namespace"
    ns = {prefix: namespace}
    for el in qlist:
        s = s + f"//{prefix}:{el}"
    value = root.find(s, ns)
    if value is None:
        raise RuntimeError("Element not found")
    return str(value.text)


def retrieve_metadata(fname: Path) -> tuple[dict[str, object], int]:
    """``SliceDataset._retrieve_metadata``, line for line."""
    with h5py.File(fname, "r") as hf:
        et_root = etree.fromstring(hf["ismrmrd_header"][()])
        enc = ["encoding", "encodedSpace", "matrixSize"]
        enc_size = (
            int(et_query(et_root, [*enc, "x"])),
            int(et_query(et_root, [*enc, "y"])),
            int(et_query(et_root, [*enc, "z"])),
        )
        rec = ["encoding", "reconSpace", "matrixSize"]
        recon_size = (
            int(et_query(et_root, [*rec, "x"])),
            int(et_query(et_root, [*rec, "y"])),
            int(et_query(et_root, [*rec, "z"])),
        )
        lims = ["encoding", "encodingLimits", "kspace_encoding_step_1"]
        enc_limits_center = int(et_query(et_root, [*lims, "center"]))
        enc_limits_max = int(et_query(et_root, [*lims, "maximum"])) + 1
        padding_left = enc_size[1] // 2 - enc_limits_center
        padding_right = padding_left + enc_limits_max
        num_slices = hf["kspace"].shape[0]
        metadata = {
            "padding_left": padding_left,
            "padding_right": padding_right,
            "encoding_size": enc_size,
            "recon_size": recon_size,
            **hf.attrs,
        }
    return metadata, num_slices


def slice_sample(fname: Path, dataslice: int) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """``SliceDataset.__getitem__`` for the multicoil challenge."""
    with h5py.File(fname, "r") as hf:
        kspace = hf["kspace"][dataslice]
        target = hf["reconstruction_rss"][dataslice]
        attrs = dict(hf.attrs)
    return kspace, target, attrs


def fastmri_rss_of(kspace: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """``UnetDataTransform`` without a mask: ifft2c, complex_center_crop, abs, rss."""
    image = np.fft.fftshift(
        np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    w_from = (image.shape[-2] - crop[0]) // 2
    h_from = (image.shape[-1] - crop[1]) // 2
    image = image[..., w_from : w_from + crop[0], h_from : h_from + crop[1]]
    return np.asarray(np.sqrt((np.abs(image) ** 2).sum(axis=0)))


# --- BART -----------------------------------------------------------------


def write_cfl(base: Path, array: np.ndarray) -> None:
    """BART's .hdr/.cfl pair: complex64, column-major (first dimension fastest)."""
    dims = [*array.shape, *([1] * (16 - array.ndim))]
    base.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(map(str, dims)) + "\n")
    np.asfortranarray(array.astype(np.complex64)).T.tofile(base.with_suffix(".cfl"))


def read_cfl(base: Path) -> np.ndarray:
    dims = [int(d) for d in base.with_suffix(".hdr").read_text().splitlines()[1].split()]
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    data = np.fromfile(base.with_suffix(".cfl"), dtype=np.complex64)
    return data.reshape(dims, order="F")


def bart(*args: str) -> None:
    subprocess.run(["bart", *args], check=True, capture_output=True, timeout=60)


def bart_rss(kspace: np.ndarray, crop: tuple[int, int], folder: Path) -> np.ndarray:
    """RSS of ``(slices, coils, x, y)`` k-space by BART: unitary centred inverse FFT."""
    # BART dims: 0 readout, 1 phase, 3 coils, 13 slices.
    s, c, x, y = kspace.shape
    arranged = np.transpose(kspace, (2, 3, 1, 0)).reshape(x, y, 1, c, *([1] * 9), s)
    write_cfl(folder / "k", arranged)
    bart("fft", "-u", "-i", "3", str(folder / "k"), str(folder / "img"))
    bart("rss", "8", str(folder / "img"), str(folder / "rss"))
    bart(
        "resize",
        "-c",
        "0",
        str(crop[0]),
        "1",
        str(crop[1]),
        str(folder / "rss"),
        str(folder / "crop"),
    )
    out = read_cfl(folder / "crop")  # (x, y, 1, 1, ..., slices)
    return np.moveaxis(out.reshape(crop[0], crop[1], -1), -1, 0)


# --- the layout ----------------------------------------------------------


def test_export_matches_the_truth_multi_slice(sample: Sample, tmp_path: Path) -> None:
    """Noise, ACS-only and phase-correction readouts out, averages averaged,
    reversed lines flipped, first repetition kept: k-space and image equal the truth."""
    path, truth = sample(
        slices=3, coils=4, calibration_lines=4, phasecorr_lines=2, averages=2, repetitions=2,
        reverse_odd_lines=True, waveforms=2,
    )  # fmt: skip
    out = tmp_path / "out" / "file.h5"
    result = export_fastmri(path, out)
    with h5py.File(out, "r") as hf:
        kspace = hf["kspace"][()]
        rss = hf["reconstruction_rss"][()]
        attrs = dict(hf.attrs)
    assert kspace.dtype == np.complex64 and rss.dtype == np.float32
    # Readout oversampling kept (2 x 16), phase = encoded y (16 + 8).
    assert kspace.shape == result.kspace_shape == (3, 4, 32, 24)
    assert rss.shape == result.reconstruction_shape == (3, 16, 16)
    assert np.allclose(kspace, truth.kspace, atol=1e-5)
    expected = truth.expected_rss(RECON)
    assert np.allclose(rss, expected, atol=1e-5 * expected.max())
    assert attrs["max"] == pytest.approx(float(rss.max())) == result.max
    assert attrs["norm"] == pytest.approx(float(np.linalg.norm(rss))) == result.norm
    assert attrs["acquisition"] == "CORPD_FBK" and attrs["patient_id"] == "SUBJ-0001"
    assert result.sha256 == file_sha256(out)  # hashed while it was fsynced
    assert result.readouts_used == 3 * 24 * 2
    assert dict(result.readouts_left_out) == {
        "noise": 1,
        "phase correction": 3 * 2 * 2,
        "calibration only": 3 * 4 * 2,
        "repetition after the first": 3 * 24 * 2,
    }


def test_fastmri_loader_reads_it(sample: Sample, tmp_path: Path) -> None:
    path, truth = sample(slices=2, coils=3)
    out = tmp_path / "file.h5"
    export_fastmri(path, out)
    metadata, num_slices = retrieve_metadata(out)
    assert num_slices == 2
    assert metadata["encoding_size"] == (32, 24, 1)
    assert metadata["recon_size"] == (16, 16, 1)
    assert (metadata["padding_left"], metadata["padding_right"]) == (0, 24)
    for i in range(num_slices):
        kspace, target, attrs = slice_sample(out, i)
        assert kspace.shape == (3, 32, 24)
        assert attrs["max"] >= target.max()
        # The transform crops the image of kspace to the target's shape.
        assert np.allclose(fastmri_rss_of(kspace, target.shape), target, atol=1e-5)
        assert np.allclose(target, truth.expected_rss(RECON)[i], atol=1e-5)


def test_partial_fourier_lines_sit_where_fastmri_pads(sample: Sample, tmp_path: Path) -> None:
    # 24 encoded lines, centre line 8 of 0..19: the first 4 columns were never acquired.
    path, truth = sample(slices=2, coils=2, step1_center=8, step1_maximum=19)
    out = tmp_path / "pf.h5"
    result = export_fastmri(path, out)
    metadata, _ = retrieve_metadata(out)
    left, right = int(metadata["padding_left"]), int(metadata["padding_right"])  # type: ignore[call-overload]
    assert (left, right) == (4, 24) == (result.padding_left, result.padding_right)
    assert truth.acquired == (left, right)
    with h5py.File(out, "r") as hf:
        kspace = hf["kspace"][()]
    assert not kspace[..., :left].any()
    assert np.allclose(kspace[..., left:right], truth.kspace[..., left:right], atol=1e-5)


def test_partial_echo_and_discarded_samples_sit_by_the_centre_sample(
    sample: Sample, tmp_path: Path
) -> None:
    # 32 readout samples encoded; the first 6 never acquired; 3 junk samples
    # before and 2 after each line (discard_pre/post); lines of another
    # encoding space carry junk too.
    path, truth = sample(
        slices=2, coils=2, asymmetric_echo=6, discard=(3, 2), other_encoding_lines=3
    )
    result = export_fastmri(path, tmp_path / "pe.h5")
    with h5py.File(tmp_path / "pe.h5", "r") as hf:
        kspace = hf["kspace"][()]
    assert kspace.shape == (2, 2, 32, 24)
    assert not kspace[:, :, :6].any()
    assert np.allclose(kspace[:, :, 6:], truth.kspace[:, :, 6:], atol=1e-5)
    assert dict(result.readouts_left_out) == {"noise": 1, "other encoding space": 6}


@pytest.mark.parametrize(
    "spec", [{}, {"step1_center": 8, "step1_maximum": 19}], ids=["full", "partial"]
)
@pytest.mark.bart
@pytest.mark.skipif(shutil.which("bart") is None, reason="bart not installed")
def test_reconstruction_equals_bart(sample: Sample, tmp_path: Path, spec: dict[str, int]) -> None:
    path, _ = sample(slices=3, coils=4, **spec)
    out = tmp_path / "f.h5"
    export_fastmri(path, out)
    with h5py.File(out, "r") as hf:
        kspace, rss = hf["kspace"][()], hf["reconstruction_rss"][()]
    theirs = bart_rss(kspace, RECON, tmp_path)
    assert theirs.shape == rss.shape
    assert np.allclose(rss, np.abs(theirs), rtol=1e-4, atol=1e-6 * rss.max())


@pytest.mark.ismrmrd_tools
@pytest.mark.skipif(
    shutil.which("ismrmrd_recon_cartesian_2d") is None, reason="ismrmrd-tools not installed"
)
def test_reconstruction_equals_ismrmrd_recon_cartesian_2d(
    shepp_logan: Callable[..., Path], tmp_path: Path
) -> None:
    # One coil (the tool reads only the first), noise scan first (the tool
    # overwrites it with line 0; we leave it out).
    source = shepp_logan("-m", "32", "-c", "1", "-C")
    out = tmp_path / "fastmri" / "sl.h5"
    result = export_fastmri(source, out)
    assert result.kspace_shape == (1, 1, 64, 32)  # readout oversampling 2 kept
    assert dict(result.readouts_left_out) == {"noise": 1}
    copy = tmp_path / "recon.h5"
    shutil.copy(source, copy)
    subprocess.run(
        ["ismrmrd_recon_cartesian_2d", str(copy)], check=True, capture_output=True, timeout=60
    )
    with h5py.File(copy, "r") as hf:
        # Its image group is the one our input did not have (Debian 1.8: 'cpp').
        new = [k for k in hf["dataset"] if isinstance(hf["dataset"][k], h5py.Group)]
        assert len(new) == 1
        theirs = hf["dataset"][new[0]]["data"][()].reshape(32, 32)  # [y][x]
    with h5py.File(out, "r") as hf:
        ours = hf["reconstruction_rss"][0]  # [x][y]
    scale = np.sqrt(64 * 32)  # FFTW unnormalised vs orthonormal, encoded matrix
    assert np.allclose(ours * scale, theirs.T, rtol=1e-3, atol=1e-4 * theirs.max())


@pytest.mark.ismrmrd_tools
def test_ismrmrd_generator_multi_coil_with_repetitions(
    shepp_logan: Callable[..., Path], tmp_path: Path
) -> None:
    source = shepp_logan("-m", "32", "-c", "4", "-C", "-r", "2")
    result = export_fastmri(source, tmp_path / "sl.h5", acquisition="SHEPP_LOGAN")
    assert result.kspace_shape == (1, 4, 64, 32)
    assert result.reconstruction_shape == (1, 32, 32)
    assert dict(result.readouts_left_out) == {"noise": 1, "repetition after the first": 32}
    # No protocol name or patient ID in ISMRMRD's generated header.
    assert (result.acquisition, result.patient_id) == ("SHEPP_LOGAN", "")
    with h5py.File(source, "r") as hf:
        phantom = hf["dataset/phantom"][0]
    with h5py.File(tmp_path / "sl.h5", "r") as hf:
        rss = hf["reconstruction_rss"][0]
    # The phantom ([y][x], real/imag pairs) shows through the noise.
    truth = np.abs(phantom["real"] + 1j * phantom["imag"]).T
    assert np.corrcoef(rss.ravel(), truth.ravel())[0, 1] > 0.95


def test_3d_slab_partitions_become_slices(sample: Sample, tmp_path: Path) -> None:
    """kz inverse-transformed: each slice is the 2D k-space of one z position."""
    path, truth = sample(slices=1, partitions=8, recon_partitions=6, coils=3)
    out = tmp_path / "3d.h5"
    result = export_fastmri(path, out)
    assert result.three_d
    assert result.kspace_shape == (6, 3, 32, 24)  # recon z, centre-cropped from 8
    with h5py.File(out, "r") as hf:
        kspace, rss = hf["kspace"][()], hf["reconstruction_rss"][()]
    assert np.allclose(kspace, truth.kspace[1:7], atol=1e-5)
    expected = truth.expected_rss(RECON)[1:7]
    assert np.allclose(rss, expected, atol=1e-5 * expected.max())
    metadata, num_slices = retrieve_metadata(out)
    assert num_slices == 6 and metadata["encoding_size"] == (32, 24, 8)


@pytest.mark.bart
@pytest.mark.skipif(shutil.which("bart") is None, reason="bart not installed")
def test_3d_reconstruction_equals_barts_3d_fft_of_the_input(sample: Sample, tmp_path: Path) -> None:
    """BART transforms the raw 3D k-space (x, y, z) at once; we go kz first, then 2D."""
    import ismrmrd

    path, _ = sample(slices=1, partitions=8, recon_partitions=6, coils=3)
    export_fastmri(path, tmp_path / "3d.h5")
    # The input's raw 3D k-space, placed with ISMRMRD's own reader (fully
    # sampled, centred limits: step indices are array indices).
    raw = np.zeros((32, 24, 8, 3), dtype=np.complex64)
    dataset = ismrmrd.Dataset(str(path), "dataset", mode="r")
    try:
        for n in range(dataset.number_of_acquisitions()):
            acq = dataset.read_acquisition(n)
            if acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
                continue
            raw[:, acq.idx.kspace_encode_step_1, acq.idx.kspace_encode_step_2] = acq.data.T
    finally:
        dataset.close()
    write_cfl(tmp_path / "k3", raw)
    bart("fft", "-u", "-i", "7", str(tmp_path / "k3"), str(tmp_path / "i3"))
    bart("rss", "8", str(tmp_path / "i3"), str(tmp_path / "r3"))
    bart("resize", "-c", "0", "16", "1", "16", "2", "6", str(tmp_path / "r3"), str(tmp_path / "c3"))
    theirs = np.moveaxis(np.abs(read_cfl(tmp_path / "c3")), 2, 0)  # (z, x, y)
    with h5py.File(tmp_path / "3d.h5", "r") as hf:
        ours = hf["reconstruction_rss"][()]
    assert ours.shape == theirs.shape == (6, 16, 16)
    assert np.allclose(ours, theirs, rtol=1e-4, atol=1e-5 * theirs.max())


def test_the_header_goes_in_as_bytes_and_the_argument_labels_nameless_protocols(
    sample: Sample, tmp_path: Path
) -> None:
    path, _ = sample(slices=1, coils=2, protocol_name=None, patient_id=None)
    out = tmp_path / "f.h5"
    result = export_fastmri(path, out, acquisition="AXT2")
    with h5py.File(out, "r") as hf, h5py.File(path, "r") as src:
        header = hf["ismrmrd_header"][()]
        assert isinstance(header, bytes) and header == src["dataset/xml"][0]
        assert hf.attrs["acquisition"] == "AXT2" == result.acquisition
        assert hf.attrs["patient_id"] == ""


def test_a_protocol_name_in_the_header_wins_over_the_argument(
    sample: Sample, tmp_path: Path
) -> None:
    path, _ = sample(slices=1, coils=2)
    assert export_fastmri(path, tmp_path / "f.h5", acquisition="AXT2").acquisition == "CORPD_FBK"


# --- refusals and bad input ------------------------------------------------


def _edit_header(path: Path, old: str, new: str) -> None:
    with h5py.File(path, "r+") as hf:
        xml = hf["dataset/xml"][0].decode()
        assert old in xml
        hf["dataset/xml"][0] = xml.replace(old, new, 1).encode()


@pytest.mark.parametrize(
    ("case", "phrase"),
    [
        ("3d slabs", "3D scan of 2 slabs"),
        ("radial", "non-Cartesian"),
        ("accelerated", "undersampled"),
        ("noise only", "no image readouts"),
        ("recon larger", "not inside the encoded matrix"),
    ],
)
def test_unsupported_scans_are_refused_and_nothing_is_written(
    sample: Sample, tmp_path: Path, case: str, phrase: str
) -> None:
    spec = {"slices": 1, "coils": 2}
    if case == "accelerated":
        spec["acceleration"] = 2
    if case == "noise only":
        spec["slices"] = 0
    if case == "3d slabs":
        spec["slices"] = 2
    path, _ = sample(**spec)
    if case == "3d slabs":
        _edit_header(path, "<z>1</z>", "<z>8</z>")
    if case == "radial":
        _edit_header(path, "<trajectory>cartesian", "<trajectory>radial")
    if case == "recon larger":
        _edit_header(
            path,
            "<reconSpace><matrixSize><x>16</x><y>16</y>",
            "<reconSpace><matrixSize><x>16</x><y>30</y>",
        )
    out = tmp_path / "out" / "f.h5"
    with pytest.raises(FastmriUnsupported, match=phrase):
        export_fastmri(path, out)
    assert not out.exists()


def test_bad_input_is_unreadable_and_nothing_is_written(
    bad_input: tuple[Path, str], tmp_path: Path
) -> None:
    path, phrase = bad_input
    out = tmp_path / "out" / "f.h5"
    out.parent.mkdir()  # so that a temporary left beside the output would be seen
    with pytest.raises(UnreadableInput, match=phrase):
        export_fastmri(path, out)
    assert list(out.parent.iterdir()) == []  # neither the output nor a temporary


def test_a_failure_leaves_an_existing_output_untouched(sample: Sample, tmp_path: Path) -> None:
    path, _ = sample(slices=1, coils=2)
    out = tmp_path / "f.h5"
    out.write_bytes(b"previous")
    with h5py.File(path, "r+") as hf:  # a line beyond the encoded matrix
        row = hf["dataset/data"][3]
        row["head"]["idx"]["kspace_encode_step_1"] = 500
        hf["dataset/data"][3] = row
    # A layout the matrix does not describe, not damage: the ISMRMRD file stands.
    with pytest.raises(FastmriUnsupported, match="outside the encoded matrix"):
        export_fastmri(path, out)
    assert out.read_bytes() == b"previous"
    assert not list(tmp_path.glob(f"{TEMP_PREFIX}*"))


def test_a_damaged_row_found_while_reading_samples_leaves_nothing(
    sample: Sample, tmp_path: Path
) -> None:
    path, _ = sample(slices=2, coils=2)
    with h5py.File(path, "r+") as hf:
        row = hf["dataset/data"][40]
        row["data"] = row["data"][:-4]
        hf["dataset/data"][40] = row
    out = tmp_path / "f.h5"
    with pytest.raises(UnreadableInput, match="acquisition 40"):
        export_fastmri(path, out)
    assert not out.exists() and not list(tmp_path.glob(f"{TEMP_PREFIX}*"))


def test_round_trip_through_our_writer(sample: Sample, tmp_path: Path) -> None:
    """Read an existing file, write ours from its blocks, export ours: the truth survives."""
    from pipeline.raw import ismrmrd_out
    from pipeline.raw.ismrmrd_in import ismrmrd_blocks, open_ismrmrd

    path, truth = sample(slices=2, coils=3, calibration_lines=2, waveforms=3)
    source = open_ismrmrd(path)
    ours = tmp_path / "ours.h5"
    stats = ismrmrd_out.write_ismrmrd(ours, source.xml, ismrmrd_blocks(source, block_rows=16))
    assert (stats.acquisitions, stats.waveforms) == (source.acquisitions, 3)
    export_fastmri(ours, tmp_path / "fastmri.h5")
    with h5py.File(tmp_path / "fastmri.h5", "r") as hf:
        assert np.allclose(hf["kspace"][()], truth.kspace, atol=1e-5)


_EXPORT_IN_A_SUBPROCESS = """
import sys
from pathlib import Path
from pipeline.raw.fastmri import export_fastmri
from pipeline.read.content import file_sha256
out = Path(sys.argv[2])
result = export_fastmri(Path(sys.argv[1]), out)
print(repr(result.norm), file_sha256(out))
"""


def test_the_file_does_not_depend_on_the_blas_thread_count(sample: Sample, tmp_path: Path) -> None:
    """The norm, hence the file's bytes, are the same with 1 and 2 OpenBLAS threads.

    A slice of 256 x 192 pixels: long enough that OpenBLAS splits a dot product
    over its threads (np.dot's sum of squares then rounded by the core count).
    """
    path, _ = sample(slices=1, coils=1, recon=(256, 192))
    printed = set()
    for threads in ("1", "2"):
        env = {
            **os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads,
            "PYTHONPATH": str(Path(pipeline.__file__).resolve().parents[1]),
        }  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-c", _EXPORT_IN_A_SUBPROCESS, str(path), str(tmp_path / f"{threads}.h5")],
            env=env, check=True, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        printed.add(done.stdout)
    assert len(printed) == 1, printed
