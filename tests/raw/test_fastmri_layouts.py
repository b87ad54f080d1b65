"""Measurements whose data the header's matrix does not describe: released, without a fastMRI file.

Real research sequences do this: a VB17 single-voxel spectroscopy (one line
of 4096 samples, a readout matrix of 2), a VB19 EPI and an XA61 scan whose
lines run past the protocol's phase matrix.  Without ``--fastmri`` they
convert sample for sample; with it they must too, counted under *no fastMRI
layout* with the reason kept in the private record, never quarantined as
unreadable, and no reason names a path (the export reads a temporary file).
The shapes are made here from generated ISMRMRD files and generated twix
files whose protocol is edited in place, read by the real readers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.atomic import TEMP_PREFIX
from pipeline.batch.runner import RunSummary
from pipeline.dicom.profile import load_profile
from pipeline.errors import UnreadableInput
from pipeline.keys import SecretKey
from pipeline.private_store import PrivateStore
from pipeline.raw.fastmri import FastmriUnsupported, export_fastmri
from pipeline.raw.header_rules import load_header_rules
from pipeline.reasons import Outcome, Reason
from pipeline.samples.ismrmrd import IsmrmrdSample, IsmrmrdTruth, write_ismrmrd_sample
from pipeline.samples.twix import SyntheticMeasurement, write_vb17_twix, write_vd_twix
from pipeline.steps.raw_file import convert_tree

KEY = SecretKey(bytes(range(32)))
Sample = Callable[..., tuple[Path, IsmrmrdTruth]]


# --- making the shapes ----------------------------------------------------------


def edit_header(path: Path, *changes: tuple[str, str]) -> None:
    with h5py.File(path, "r+") as hf:
        xml = hf["dataset/xml"][0].decode()
        for old, new in changes:
            assert old in xml, old
            xml = xml.replace(old, new, 1)
        hf["dataset/xml"][0] = xml.encode()


def edit_rows(path: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    with h5py.File(path, "r+") as hf:
        rows = change(hf["dataset/data"][:])
        del hf["dataset/data"]
        hf["dataset"].create_dataset("data", data=rows, maxshape=(None,))


def image_rows(rows: np.ndarray) -> np.ndarray:
    return np.flatnonzero(rows["head"]["flags"] == 0)


def lines_past_the_matrix(path: Path) -> None:
    """EPI-like: 24 lines acquired, the header's phase matrix holds 16 (limits agree with it)."""
    write_ismrmrd_sample(path, IsmrmrdSample(slices=2, coils=2))
    edit_header(
        path,
        ("<encodedSpace><matrixSize><x>32</x><y>24</y>", "<encodedSpace><matrixSize><x>32</x><y>16</y>"),
        ("<maximum>23</maximum><center>12</center>", "<maximum>15</maximum><center>8</center>"),
    )  # fmt: skip


def one_long_line(path: Path) -> None:
    """Spectroscopy-like: one line of 1024 samples, a readout matrix of 2 (recon 1 x 1)."""
    write_ismrmrd_sample(
        path, IsmrmrdSample(slices=1, coils=2, recon=(512, 1), phase_oversampling=0)
    )
    edit_header(
        path,
        ("<encodedSpace><matrixSize><x>1024</x>", "<encodedSpace><matrixSize><x>2</x>"),
        ("<reconSpace><matrixSize><x>512</x>", "<reconSpace><matrixSize><x>1</x>"),
    )


def readouts_too_long(path: Path) -> None:
    """32 samples per readout, an encoded readout of 24 (the recon's 16 still fit)."""
    write_ismrmrd_sample(path, IsmrmrdSample(slices=2, coils=2))
    edit_header(
        path, ("<encodedSpace><matrixSize><x>32</x>", "<encodedSpace><matrixSize><x>24</x>")
    )


def patch_protocol(path: Path, values: dict[str, int]) -> None:
    """Rewrite protocol values of a twix file in place, same length (XProtocol and ASCCONV)."""
    data = path.read_bytes()
    for name, value in values.items():
        for pattern in (rf'(<ParamLong\."{name}">\s*\{{\s*)(\d+)', rf"(\.{name}\t = \t)(\d+)"):

            def pad(match: re.Match[bytes], value: int = value) -> bytes:
                return match[1] + str(value).encode().ljust(len(match[2]))

            data, found = re.subn(pattern.encode(), pad, data)
            assert found or "ParamLong" not in pattern, name
    path.write_bytes(data)


SVS = SyntheticMeasurement(
    channels=2, samples=4096, lines=1, slices=1, patient_id="PID-SVS", meas_id=31, seed=1
)
EPI = SyntheticMeasurement(
    channels=2, samples=64, lines=64, slices=1, patient_id="PID-EPI", meas_id=32, seed=2
)


def vb17_spectroscopy(path: Path) -> None:
    """The VB17 SVS: one line of 4096 samples, the protocol's readout matrix 2, its image 1."""
    write_vb17_twix(path, SVS)
    patch_protocol(path, {"iNoOfFourierColumns": 2, "ImageColumns": 1, "lBaseResolution": 1})


def epi_lines_past_the_protocol(path: Path) -> None:
    """An EPI whose 64 lines run past the protocol's 32-line phase matrix."""
    write_vd_twix(path, [EPI])
    patch_protocol(
        path,
        {"iNoOfFourierLines": 32, "iPEFTLength": 32, "ImageLines": 32, "lPhaseEncodingLines": 32},
    )


@dataclass(frozen=True)
class Shape:
    make: Callable[[Path], None]
    acquisitions: int  # in the ISMRMRD file written
    phrase: str  # in the reason


SHAPES = {
    "lines.h5": Shape(lines_past_the_matrix, 1 + 2 * 24, "16 readouts have kspace_encode_step_1"),
    "spectroscopy.h5": Shape(one_long_line, 2, "do not fit the encoded matrix x = 2"),
    "long.h5": Shape(readouts_too_long, 1 + 2 * 24, "do not fit the encoded matrix x = 24"),
    "svs.dat": Shape(vb17_spectroscopy, 1, "do not fit the encoded matrix x = 2"),
    "epi.dat": Shape(epi_lines_past_the_protocol, 64, "32 readouts have kspace_encode_step_1"),
}


@dataclass(frozen=True)
class Run:
    summary: RunSummary
    root: Path
    rows: dict[str, dict[str, object]]  # input file name -> its private record


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("layouts")
    source = root / "incoming"
    source.mkdir()
    for name, shape in SHAPES.items():
        shape.make(source / name)
    write_ismrmrd_sample(source / "plain.h5", IsmrmrdSample(slices=2, coils=2, seed=4))
    write_ismrmrd_sample(source / "damaged.h5", IsmrmrdSample(slices=2, coils=2, seed=5))
    edit_rows(source / "damaged.h5", lambda rows: _shorten_row(rows, 7))
    private = PrivateStore(root / "private")
    summary = convert_tree(
        source, root / "release", KEY, private, load_header_rules(),
        date_shift_days=load_profile("research").date_shift_days, fastmri=root / "fastmri",
    )  # fmt: skip
    rows = {Path(str(r["input_path"])).name: r for r in private.inputs_for(summary.run_id)}
    return Run(summary, root, rows)


def _shorten_row(rows: np.ndarray, n: int) -> np.ndarray:
    """Row ``n`` holds fewer samples than its header says: damage."""
    rows["data"][n] = rows["data"][n][:-4]
    return rows


def test_every_layout_misfit_is_released_without_a_fastmri_file(run: Run) -> None:
    summary = run.summary
    assert summary.outcomes == {Outcome.WRITTEN: 6, Outcome.QUARANTINED: 1}
    assert summary.facts["fastMRI files"] == 1 and summary.facts["fastMRI skipped"] == 5
    assert len(summary.reasons[Reason.NO_FASTMRI_LAYOUT]) == 5
    assert len(summary.reasons[Reason.UNREADABLE]) == 1
    assert len(list((run.root / "fastmri").rglob("*.h5"))) == 1  # plain.h5's
    for name, shape in SHAPES.items():
        row = run.rows[name]
        assert (row["outcome"], row["reason"]) == ("written", "no-fastmri-layout"), name
        assert shape.phrase in str(row["detail"]), (name, row["detail"])
        assert str(row["detail"]).startswith("measurement 1 of 1: ")
        (relpath,) = str(row["output_path"]).split(";")  # the ISMRMRD file only
        with h5py.File(run.root / "release" / relpath, "r") as hf:
            assert hf["dataset/data"].shape == (shape.acquisitions,), name


def test_the_plain_scan_has_its_training_file_and_no_reason(run: Run) -> None:
    row = run.rows["plain.h5"]
    assert (row["outcome"], row["reason"], row["detail"]) == ("written", "", "")
    assert len(str(row["output_path"]).split(";")) == 2


def test_a_damaged_file_is_still_unreadable(run: Run) -> None:
    row = run.rows["damaged.h5"]
    assert (row["outcome"], row["reason"]) == ("quarantined", "unreadable")
    assert "acquisition 7" in str(row["detail"])


def test_no_reason_names_a_temporary_file_or_our_folders(run: Run) -> None:
    for name, row in run.rows.items():
        detail = str(row["detail"])
        assert TEMP_PREFIX not in detail, name
        for folder in ("release", "fastmri", "private"):
            assert str(run.root / folder) not in detail, name
        if name in SHAPES:
            assert "/" not in detail and ".h5" not in detail, detail


# --- each refusal on its own, straight from the export ------------------------------


def _two_partitions_in_2d(path: Path) -> None:
    def change(rows: np.ndarray) -> np.ndarray:
        image = image_rows(rows)
        rows["head"]["idx"]["kspace_encode_step_2"][image[::2]] = 1
        return rows

    edit_rows(path, change)


def _fewer_coils_in_one_line(path: Path) -> None:
    def change(rows: np.ndarray) -> np.ndarray:
        n = image_rows(rows)[5]
        samples = int(rows["head"]["number_of_samples"][n])
        rows["head"]["active_channels"][n] = 1
        rows["data"][n] = rows["data"][n][: 2 * samples]
        return rows

    edit_rows(path, change)


def _no_usable_samples(path: Path) -> None:
    def change(rows: np.ndarray) -> np.ndarray:
        n = image_rows(rows)[3]
        rows["head"]["discard_pre"][n] = rows["head"]["number_of_samples"][n]
        return rows

    edit_rows(path, change)


def _phase_limits_outside_y(path: Path) -> None:
    edit_header(path, ("<center>12</center>", "<center>30</center>"))


STEP2_LIMITS = "<kspace_encoding_step_2><minimum>0</minimum><maximum>7</maximum><center>4</center>"


def _partition_limits_outside_z(path: Path) -> None:
    edit_header(path, (STEP2_LIMITS, STEP2_LIMITS.replace("<center>4", "<center>1")))


def _partitions_outside_z(path: Path) -> None:
    """The header says 6 partitions (centre 3), the readouts hold 8."""
    edit_header(
        path,
        ("<z>8</z>", "<z>6</z>"),  # encoded
        ("<z>8</z>", "<z>6</z>"),  # recon
        (STEP2_LIMITS, STEP2_LIMITS.replace("7", "5").replace("<center>4", "<center>3")),
    )


REFUSALS: dict[str, tuple[dict[str, int], Callable[[Path], None], str]] = {
    "phase limits outside y": (
        {},
        _phase_limits_outside_y,
        "kspace_encoding_step_1 (centre 30, maximum 23) do not fit",
    ),
    "partition limits outside z": (
        {"partitions": 8},
        _partition_limits_outside_z,
        "kspace_encoding_step_2 (centre 1, maximum 7) do not fit",
    ),
    "partitions outside z": (
        {"partitions": 8},
        _partitions_outside_z,
        "48 readouts have kspace_encode_step_2 outside the encoded matrix (z = 6)",
    ),
    "partitions in a 2D encoding": (
        {},
        _two_partitions_in_2d,
        "readouts of 2 partitions (kspace_encode_step_2) in a 2D encoding",
    ),
    "changing coil count": ({}, _fewer_coils_in_one_line, "2 different coil counts (from 1 to 2)"),
    "no usable samples": ({}, _no_usable_samples, "1 readouts have usable samples that do not fit"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_each_layout_refusal_is_fastmri_unsupported_and_names_no_path(
    sample: Sample, tmp_path: Path, case: str
) -> None:
    spec, damage, phrase = REFUSALS[case]
    path, _ = sample(**{"slices": 1, "coils": 2, **spec})
    damage(path)
    out = tmp_path / "out" / "f.h5"
    with pytest.raises(FastmriUnsupported) as caught:
        export_fastmri(path, out)
    assert phrase in caught.value.detail
    assert caught.value.reason is Reason.NO_FASTMRI_LAYOUT
    assert str(tmp_path) not in caught.value.detail and "/" not in caught.value.detail
    assert not out.parent.exists() or not list(out.parent.iterdir())


def test_a_damaged_file_is_unreadable_without_its_path(
    bad_input: tuple[Path, str], tmp_path: Path
) -> None:
    path, phrase = bad_input
    with pytest.raises(UnreadableInput) as caught:
        export_fastmri(path, tmp_path / "f.h5")
    assert phrase in caught.value.detail
    assert str(path) not in caught.value.detail and str(tmp_path) not in caught.value.detail
