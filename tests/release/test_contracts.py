"""The manifest contract: a broken row fails with its row and column, in CSV and Parquet."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.errors import RuleError
from pipeline.release import ContractViolation, DataArea, Split
from pipeline.release.contracts import MANIFEST_CONTRACT, contract_path, validate_table
from pipeline.release.manifest import ManifestRow, columns, read_manifest, write_manifests

SHA = "0123456789abcdef" * 4


def row(n: int, **changes: object) -> ManifestRow:
    base = ManifestRow(
        relpath=f"dicom/SUBJ-0123456789/ST-0123456789/SE-0123456789/{n:016d}.dcm",
        area=DataArea.DICOM,
        subject="SUBJ-0123456789",
        study="ST-0123456789",
        series="SE-0123456789",
        modality="MR",
        acquisition="t2_tse_tra",
        field_strength_t=2.89362,
        tr_ms=6000.0,
        te_ms=96.0,
        ti_ms=None,
        flip_angle_deg=150.0,
        matrix_rows=64,
        matrix_columns=64,
        coils=None,
        split=Split.TRAIN,
        size_bytes=11442,
        sha256=SHA,
        ruleset_version="rules-1",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_rows_round_trip_through_both_tables(tmp_path: Path) -> None:
    rows = [row(1), row(2, ti_ms=None, tr_ms=None, matrix_rows=None), row(3, area=DataArea.RAW)]
    csv_path, parquet_path = write_manifests(tmp_path, rows)  # validated on the way
    assert read_manifest(parquet_path) == rows
    with csv_path.open(newline="") as handle:
        cells = list(csv.DictReader(handle))
    assert [c["relpath"] for c in cells] == [r.relpath for r in rows]
    assert cells[1]["tr_ms"] == "" and cells[1]["matrix_rows"] == ""
    assert cells[0]["field_strength_t"] == "2.89362"
    assert list(cells[0]) == [name for name, _ in columns()]
    assert pq.read_table(parquet_path).schema.field("matrix_rows").type == "int64"


@pytest.mark.parametrize(
    ("broken", "column", "kind"),
    [
        ({"subject": "DOE^JOHN"}, "subject", "constraint-error"),  # a name is not a pseudonym
        ({"series": "John Doe knee"}, "series", "constraint-error"),
        ({"modality": "mr scan"}, "modality", "constraint-error"),
        ({"sha256": "not a digest"}, "sha256", "constraint-error"),
        ({"matrix_rows": 0}, "matrix_rows", "constraint-error"),
        ({"ruleset_version": ""}, "ruleset_version", "constraint-error"),
    ],
)
def test_a_broken_row_names_its_row_and_column(
    tmp_path: Path, broken: dict[str, object], column: str, kind: str
) -> None:
    rows = [row(1), row(2, **broken), row(3)]
    with pytest.raises(ContractViolation) as caught:
        write_manifests(tmp_path, rows)
    error = caught.value
    assert error.table == "manifests/files.csv"  # the CSV is checked first
    assert (error.errors[0].row, error.errors[0].column, error.errors[0].kind) == (3, column, kind)
    assert f"row 3, column '{column}'" in str(error)
    assert "nothing was published" in str(error)
    # The message never quotes the cell (it could be anything a header held).
    value = str(broken[column])
    if len(value) > 3:
        assert value not in str(error)


def test_a_repeated_path_and_a_bad_enum_are_caught(tmp_path: Path) -> None:
    names = [name for name, _ in columns()]
    good = row(1).record()
    lines = [names, [good[n] for n in names], [good[n] for n in names]]
    lines[2][names.index("split")] = "holdout"
    lines[2][names.index("coils")] = "four"
    path = tmp_path / "files.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(["" if c is None else c for c in line] for line in lines)
    with pytest.raises(ContractViolation) as caught:
        validate_table(path, MANIFEST_CONTRACT, label="manifests/files.csv")
    found = {(e.row, e.column, e.kind) for e in caught.value.errors}
    assert (3, "split", "constraint-error") in found
    assert (3, "coils", "type-error") in found
    assert (3, "relpath", "unique-error") in found
    assert (3, None, "primary-key") in found


def test_a_parquet_manifest_is_checked_too(tmp_path: Path) -> None:
    import pyarrow as pa

    names = [name for name, _ in columns()]
    record = row(1).record()
    record["split"] = "holdout"
    table = pa.Table.from_pylist(
        [row(2).record(), record], schema=pq.read_schema(_written(tmp_path))
    )
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)
    with pytest.raises(ContractViolation) as caught:
        validate_table(path, MANIFEST_CONTRACT, label="manifests/files.parquet")
    assert [(e.row, e.column) for e in caught.value.errors] == [(3, "split")]
    assert names[0] == "relpath"


def _written(folder: Path) -> Path:
    return write_manifests(folder, [row(9)])[1]


def test_the_shipped_contract_matches_the_rows_written() -> None:
    declared = dict(columns())
    assert declared["relpath"] == "string" and declared["size_bytes"] == "integer"
    descriptor = json.loads(contract_path(MANIFEST_CONTRACT).read_text())
    assert descriptor["primaryKey"] == ["relpath"]
    split = next(f for f in descriptor["fields"] if f["name"] == "split")
    assert split["constraints"]["enum"] == [s.value for s in Split]


def test_a_contract_that_drifted_from_the_code_fails_with_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(contract_path(MANIFEST_CONTRACT).parent, tmp_path / "contracts")
    edited = tmp_path / "contracts" / MANIFEST_CONTRACT
    descriptor = json.loads(edited.read_text())
    descriptor["fields"].append({"name": "patient_name", "type": "string"})
    edited.write_text(json.dumps(descriptor))
    monkeypatch.setenv("MRICURATE_DATA_CONTRACTS", str(tmp_path / "contracts"))
    with pytest.raises(RuleError, match="only in the contract: patient_name") as caught:
        columns()
    assert caught.value.path == edited


def test_a_contract_that_is_not_json_fails_with_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / MANIFEST_CONTRACT).write_text('{"fields": [')
    monkeypatch.setenv("MRICURATE_DATA_CONTRACTS", str(tmp_path))
    with pytest.raises(RuleError, match="not JSON") as caught:
        columns()
    assert caught.value.path == tmp_path / MANIFEST_CONTRACT
