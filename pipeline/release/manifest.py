"""The release manifest: one row per released file, in Parquet and CSV, checked against its contract.

The columns are those of ``data_contracts/manifest.schema.json`` in its
order; the writer takes names, order and types from the contract, so the
contract and the files can never drift apart silently (a contract column
the row does not have fails at once).  Both tables are validated with
Frictionless as soon as they are written; a violation stops the publish
with the row and the column.

The manifest holds pseudonyms, technical acquisition values and file
identities only.  It does not hold the input's content hash (``item``):
that hash is of the original file, with its PHI, and publishing it would let
anyone holding an original confirm that it is in the dataset.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from pipeline.atomic import atomic_write_bytes
from pipeline.errors import RuleError
from pipeline.release.areas import DataArea
from pipeline.release.contracts import (
    MANIFEST_CONTRACT,
    contract_fields,
    contract_path,
    validate_table,
)
from pipeline.release.headers import AcquisitionFacts
from pipeline.release.splits import Split

MANIFEST_FOLDER = "manifests"
CSV_NAME = "files.csv"
PARQUET_NAME = "files.parquet"

Cell = str | int | float | None

_ARROW_TYPES = {"string": pa.string(), "integer": pa.int64(), "number": pa.float64()}


@dataclass(frozen=True)
class ManifestRow:
    """One released file as the manifest describes it (``None``: an empty cell)."""

    relpath: str
    area: DataArea
    subject: str
    study: str
    series: str
    modality: str | None
    acquisition: str | None
    field_strength_t: float | None
    tr_ms: float | None
    te_ms: float | None
    ti_ms: float | None
    flip_angle_deg: float | None
    matrix_rows: int | None
    matrix_columns: int | None
    coils: int | None
    split: Split
    size_bytes: int
    sha256: str
    ruleset_version: str

    def record(self) -> dict[str, Cell]:
        """The row as cells, enums by their values."""
        cells: dict[str, Cell] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            cells[field.name] = value.value if isinstance(value, DataArea | Split) else value
        return cells

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ManifestRow:
        """A row read back from a manifest (the previous version's)."""
        values = {field.name: record[field.name] for field in fields(cls)}
        values["area"] = DataArea(values["area"])
        values["split"] = Split(values["split"])
        return cls(**values)


def manifest_row(
    area: DataArea,
    relpath: str,
    subject: str,
    facts: AcquisitionFacts,
    *,
    split: Split,
    size_bytes: int,
    sha256: str,
    ruleset_version: str,
) -> ManifestRow:
    """The row of the file at ``relpath`` inside ``area``.

    The study and series pseudonyms are the file's folders, which the runner
    names by keyed tokens: ``<subject>/<study>/<series>/<instance>.dcm`` for
    DICOM, ``<subject>/<study>/<measurement>[-noise].h5`` for raw and fastMRI
    files (the measurement is the raw side's series).
    """
    study, series = series_of(area, relpath)
    return ManifestRow(
        relpath=f"{area.value}/{relpath}",
        area=area,
        subject=subject,
        study=study,
        series=series,
        **{f.name: getattr(facts, f.name) for f in fields(AcquisitionFacts)},
        split=split,
        size_bytes=size_bytes,
        sha256=sha256,
        ruleset_version=ruleset_version,
    )


def series_of(area: DataArea, relpath: str) -> tuple[str, str]:
    """``(study, series)`` pseudonyms from a path inside ``area`` (empty where absent).

    An empty or malformed token is left for the contract to refuse, with the row.
    """
    parts = relpath.split("/")
    study = parts[1] if len(parts) >= 3 else ""
    if area is DataArea.DICOM:
        return study, parts[2] if len(parts) >= 4 else ""
    stem = parts[-1].rsplit(".", 1)[0]
    return study, "-".join(stem.split("-")[:2])  # MEAS-XXXXXXXXXX[-noise]


def columns() -> tuple[tuple[str, str], ...]:
    """The contract's ``(column, type)``, checked against :class:`ManifestRow`."""
    declared = contract_fields(MANIFEST_CONTRACT)
    names = [name for name, _ in declared]
    ours = [field.name for field in fields(ManifestRow)]
    if sorted(names) != sorted(ours):
        missing = sorted(set(names) - set(ours))
        extra = sorted(set(ours) - set(names))
        raise RuleError(
            contract_path(MANIFEST_CONTRACT),
            None,
            f"the contract's columns differ from the manifest mricurate writes (only in the "
            f"contract: {', '.join(missing) or 'none'}; only in mricurate: "
            f"{', '.join(extra) or 'none'}); restore the shipped contract",
        )
    unknown = sorted({kind for _, kind in declared} - _ARROW_TYPES.keys())
    if unknown:
        raise RuleError(
            contract_path(MANIFEST_CONTRACT),
            None,
            f"column type(s) {', '.join(unknown)} have no Parquet type here",
        )
    return declared


def write_manifests(folder: Path, rows: Sequence[ManifestRow]) -> tuple[Path, Path]:
    """Write and validate ``files.csv`` and ``files.parquet`` in ``folder``; return both paths.

    Rows are written in ``relpath`` order.

    Raises
    ------
    ContractViolation
        A table breaks the contract (named by its path inside the version).
    """
    declared = columns()
    ordered = sorted(rows, key=lambda row: row.relpath)
    records = [row.record() for row in ordered]
    names = [name for name, _ in declared]
    csv_path = folder / CSV_NAME
    parquet_path = folder / PARQUET_NAME
    atomic_write_bytes(csv_path, _csv_bytes(names, records))
    arrow_schema = pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in declared])
    table = pa.Table.from_pylist(records, schema=arrow_schema)
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    atomic_write_bytes(parquet_path, buffer.getvalue().to_pybytes())
    for path in (csv_path, parquet_path):
        validate_table(path, MANIFEST_CONTRACT, label=f"{MANIFEST_FOLDER}/{path.name}")
    return csv_path, parquet_path


def _csv_bytes(names: Sequence[str], records: Iterable[Mapping[str, Cell]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(names)
    for record in records:
        writer.writerow(_cell(record[name]) for name in names)
    return text.getvalue().encode("utf-8")


def _cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float
    return str(value)


def read_manifest(path: Path) -> list[ManifestRow]:
    """The rows of a ``files.parquet`` (the previous version's manifest)."""
    return [ManifestRow.from_record(record) for record in pq.read_table(path).to_pylist()]
