"""ISMRMRD inputs for the raw tests: ISMRMRD's own generator, ours, and broken files."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.raw.blocks import ACQUISITION_DTYPE
from pipeline.samples.ismrmrd import IsmrmrdSample, IsmrmrdTruth, write_ismrmrd_sample

GENERATOR = "ismrmrd_generate_cartesian_shepp_logan"


@pytest.fixture
def shepp_logan(tmp_path: Path) -> Callable[..., Path]:
    """Run ISMRMRD's generator in a tmp folder: ``shepp_logan("-m", "32", ...)``."""
    if shutil.which(GENERATOR) is None:
        pytest.skip(f"{GENERATOR} not installed (Debian ismrmrd-tools)")

    def make(*args: str, name: str = "shepp_logan.h5") -> Path:
        out = tmp_path / name
        subprocess.run(
            [GENERATOR, *args, "-o", str(out)], cwd=tmp_path, check=True, capture_output=True,
            timeout=60,
        )  # fmt: skip
        return out

    return make


@pytest.fixture
def sample(tmp_path: Path) -> Callable[..., tuple[Path, IsmrmrdTruth]]:
    """Our generator (multi-slice, noise, calibration, averages...) in a tmp folder."""

    def make(name: str = "sample.h5", **spec: object) -> tuple[Path, IsmrmrdTruth]:
        path = tmp_path / name
        return path, write_ismrmrd_sample(path, IsmrmrdSample(**spec))  # type: ignore[arg-type]

    return make


def _random_bytes(folder: Path) -> Path:
    path = folder / "random.h5"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    return path


def _hdf5_without_dataset(folder: Path) -> Path:
    path = folder / "plain.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("images", data=np.zeros((2, 4, 4), dtype=np.float32))
    return path


def _truncated(folder: Path) -> Path:
    path = folder / "truncated.h5"
    write_ismrmrd_sample(path, IsmrmrdSample(slices=2, coils=2))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def _wrong_dtype(folder: Path) -> Path:
    path = folder / "wrong_dtype.h5"
    write_ismrmrd_sample(path, IsmrmrdSample(slices=1, coils=2))
    with h5py.File(path, "r+") as handle:
        del handle["dataset/data"]
        handle["dataset"].create_dataset("data", data=np.zeros((8, 64), dtype=np.complex64))
    return path


def _missing_head_field(folder: Path) -> Path:
    """Rows that look like acquisitions but lack a header field (another ISMRMRD version)."""
    path = folder / "old_version.h5"
    write_ismrmrd_sample(path, IsmrmrdSample(slices=1, coils=2))
    head = [(n, ACQUISITION_DTYPE["head"].fields[n][0]) for n in ACQUISITION_DTYPE["head"].names]
    old = np.dtype(
        [("head", np.dtype([f for f in head if f[0] != "encoding_space_ref"])),
         ("traj", ACQUISITION_DTYPE["traj"]), ("data", ACQUISITION_DTYPE["data"])]
    )  # fmt: skip
    with h5py.File(path, "r+") as handle:
        rows = handle["dataset/data"].shape[0]
        del handle["dataset/data"]
        handle["dataset"].create_dataset("data", (rows,), dtype=old)
    return path


BAD_INPUTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "random bytes named .h5": (_random_bytes, "not an HDF5 file"),
    "HDF5 without an ISMRMRD dataset": (_hdf5_without_dataset, "without an ISMRMRD dataset"),
    "truncated HDF5": (_truncated, "truncated or corrupt"),
    "wrong dtype": (_wrong_dtype, "not in the ISMRMRD acquisition dtype"),
    "header field missing": (_missing_head_field, "not in the ISMRMRD acquisition dtype"),
}


@pytest.fixture(params=sorted(BAD_INPUTS))
def bad_input(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    """A broken input and a phrase its error must contain."""
    make, phrase = BAD_INPUTS[request.param]
    folder = tmp_path / "bad"
    folder.mkdir()
    return make(folder), phrase
