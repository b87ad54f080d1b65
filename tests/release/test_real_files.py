"""A version of real de-identified files: manifest values against the headers, read independently.

The staged files are what ``deidentify_tree`` and ``convert_tree --fastmri``
wrote from the generated sample and pydicom's own files.  Each manifest row
is checked against its released file read here with pydicom and with the
ismrmrd package's own XML binding (not the code under test), and the
version is checked with the real ``sha256sum -c`` and ``frictionless validate``.
"""

from __future__ import annotations

import csv
import hashlib
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import h5py
import ismrmrd.xsd
import pyarrow.parquet as pq
import pydicom
import pytest

from pipeline.release import DataArea, PublishResult, publish
from pipeline.release.manifest import ManifestRow, read_manifest
from tests.release.conftest import RATIOS, Staged


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, staged: Staged) -> PublishResult:
    root = tmp_path_factory.mktemp("release")
    result = publish(
        root, staged.files, key=staged.key, ratios=RATIOS, ruleset_version="rules-1",
        dataset_name="Knee and brain MRI",
    )  # fmt: skip
    assert result is not None
    return result


@pytest.fixture(scope="module")
def rows(published: PublishResult) -> list[ManifestRow]:
    return read_manifest(published.path / "manifests" / "files.parquet")


def of_area(rows: list[ManifestRow], area: DataArea) -> list[ManifestRow]:
    found = [r for r in rows if r.area is area]
    assert found, f"no {area.value} rows"
    return found


def number(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def enhanced(ds: pydicom.Dataset, macro: str, keyword: str) -> float | None:
    """A shared functional group value of an enhanced object, as the standard places it."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    if not shared or macro not in shared[0]:
        return None
    return number(getattr(shared[0][macro][0], keyword, None))


def test_dicom_rows_are_their_headers(published: PublishResult, rows: list[ManifestRow]) -> None:
    dicom = of_area(rows, DataArea.DICOM)
    for row in dicom:
        path = published.path / row.relpath
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        subject, study, series, _ = row.relpath.split("/")[1:]
        assert (row.subject, row.study, row.series) == (subject, study, series)
        # The de-identified header carries the pseudonym (one pydicom file has no Patient ID).
        assert ds.PatientID in (row.subject, "")
        assert row.modality == ds.Modality
        assert row.acquisition == (ds.get("ProtocolName") or ds.get("SeriesDescription") or None)
        assert row.field_strength_t == number(ds.get("MagneticFieldStrength"))
        timing = "MRTimingAndRelatedParametersSequence"
        tr = number(ds.get("RepetitionTime")) or enhanced(ds, timing, "RepetitionTime")
        te = number(ds.get("EchoTime")) or enhanced(ds, "MREchoSequence", "EffectiveEchoTime")
        flip = number(ds.get("FlipAngle")) or enhanced(ds, timing, "FlipAngle")
        assert (row.tr_ms, row.te_ms, row.flip_angle_deg) == (tr, te, flip)
        assert row.ti_ms == number(ds.get("InversionTime"))
        assert (row.matrix_rows, row.matrix_columns) == (ds.Rows, ds.Columns)
        assert row.coils is None
        assert row.size_bytes == path.stat().st_size
        assert row.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert row.ruleset_version == "rules-1"
    by_label = {r.acquisition: r for r in dicom}
    # pydicom-data's Siemens image with overlays says 1.494 T; the generated enhanced
    # series keeps its TR in the shared functional groups only.
    assert by_label["t1_vibe_fs_tra_bh_dyn"].field_strength_t == pytest.approx(1.494, abs=1e-3)
    enhanced_rows = [r for r in dicom if r.acquisition == "t2_tse_tra" and r.matrix_rows == 32]
    assert enhanced_rows and all(r.tr_ms == 6000.0 for r in enhanced_rows)
    assert {"MR", "US"} <= {r.modality for r in dicom}
    assert any(r.field_strength_t is None for r in dicom)  # MR_small.dcm records none


def ismrmrd_header(xml: Any) -> Any:
    return ismrmrd.xsd.CreateFromDocument(xml if isinstance(xml, bytes) else xml.encode())


def one(values: list[float]) -> float | None:
    return values[0] if len(set(values)) == 1 else None


def assert_header_row(row: ManifestRow, header: Any) -> None:
    system = header.acquisitionSystemInformation
    sequence = header.sequenceParameters
    matrix = header.encoding[0].encodedSpace.matrixSize
    assert row.modality == "MR"
    assert row.field_strength_t == system.systemFieldStrength_T
    assert (row.tr_ms, row.te_ms, row.ti_ms, row.flip_angle_deg) == (
        one(sequence.TR), one(sequence.TE), one(sequence.TI), one(sequence.flipAngle_deg),
    )  # fmt: skip
    assert (row.matrix_rows, row.matrix_columns) == (matrix.y, matrix.x)


def test_raw_rows_are_their_ismrmrd_headers(
    published: PublishResult, rows: list[ManifestRow]
) -> None:
    for row in of_area(rows, DataArea.RAW):
        path = published.path / row.relpath
        with h5py.File(path, "r") as handle:
            header = ismrmrd_header(handle["dataset/xml"][0])
        assert_header_row(row, header)
        assert row.acquisition == header.measurementInformation.protocolName
        assert row.coils == header.acquisitionSystemInformation.receiverChannels
        assert row.series == re.match(r"MEAS-[0-9A-Z]{10}", path.name).group(0)  # type: ignore[union-attr]
        assert row.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_fastmri_rows_are_their_attributes(
    published: PublishResult, rows: list[ManifestRow]
) -> None:
    raw = {(r.subject, r.study, r.series) for r in of_area(rows, DataArea.RAW)}
    for row in of_area(rows, DataArea.FASTMRI):
        with h5py.File(published.path / row.relpath, "r") as handle:
            header = ismrmrd_header(handle["ismrmrd_header"][()])
            assert row.acquisition == handle.attrs["acquisition"] == "CORPD_FBK"
            assert row.coils == handle["kspace"].shape[1]
        assert_header_row(row, header)
        assert (row.subject, row.study, row.series) in raw  # linked to the measurement it came from


def test_sha256sum_checks_every_file(published: PublishResult) -> None:
    done = subprocess.run(
        ["sha256sum", "--check", "--strict", "SHA256SUMS"],
        cwd=published.path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    checked = [line for line in done.stdout.splitlines() if line.endswith(": OK")]
    every = [p for p in published.path.rglob("*") if p.is_file() and p.name != "SHA256SUMS"]
    assert len(checked) == len(every)


def test_frictionless_validates_the_data_package(published: PublishResult) -> None:
    cli = Path(sys.executable).parent / "frictionless"
    done = subprocess.run(
        [str(cli), "validate", "datapackage.json"],
        cwd=published.path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    assert "files-csv" in done.stdout and "files-parquet" in done.stdout
    assert "INVALID" not in done.stdout


def test_csv_and_parquet_hold_the_same_rows(
    published: PublishResult, rows: list[ManifestRow]
) -> None:
    table = pq.read_table(published.path / "manifests" / "files.parquet").to_pylist()
    with (published.path / "manifests" / "files.csv").open(newline="") as handle:
        cells = list(csv.DictReader(handle))
    assert len(cells) == len(table) == len(published.files)
    for text, record in zip(cells, table, strict=True):
        assert set(text) == set(record)
        for name, value in record.items():
            if value is None:
                assert text[name] == ""
            elif isinstance(value, float):
                assert float(text[name]) == value
            else:
                assert text[name] == str(value)


def test_one_split_per_subject(rows: list[ManifestRow]) -> None:
    splits: dict[str, set[str]] = {}
    for row in rows:
        splits.setdefault(row.subject, set()).add(row.split.value)
    assert all(len(s) == 1 for s in splits.values())


def test_the_card_counts_what_the_manifest_holds(
    published: PublishResult, rows: list[ManifestRow]
) -> None:
    card = (published.path / "README.md").read_text()
    assert card.startswith("# Knee and brain MRI, v0001\n")
    assert "`rules-1`" in card and "sha256sum -c SHA256SUMS" in card
    table = dict(re.findall(r"^\| (train|validation|test) \| (\d+ \| \d+ \| \d+) \|$", card, re.M))
    for split in ("train", "validation", "test"):
        mine = [r for r in rows if r.split.value == split]
        series = {(r.subject, r.study, r.series) for r in mine}
        assert table[split] == f"{len({r.subject for r in mine})} | {len(series)} | {len(mine)}"
    strengths = dict(
        re.findall(r"^\| ([\d.]+ T|not recorded) \| \d+ \| \d+ \| (\d+) \|$", card, re.M)
    )
    nominal = Counter(
        "not recorded" if r.field_strength_t is None else f"{round(r.field_strength_t * 2) / 2:g} T"
        for r in rows
    )
    assert {k: int(v) for k, v in strengths.items()} == nominal
    assert "1.5 T" in strengths and "3 T" in strengths  # 1.494 and 2.89362 among them
    assert "| CORPD_FBK | fastmri |" in card
