"""The cohort of ``mricurate pull --cohort FILE``: which studies to retrieve, checked first.

A CSV with a header naming any of the columns of
``data_contracts/cohort.schema.json`` (``accession_number``, ``patient_id``,
``study_date_from``, ``study_date_to``).  Each row asks for one study by its
accession number, or for a patient's studies, optionally within a study date
range.  The file is checked whole before anything is asked of a node:
Frictionless checks each cell against the contract (lengths, ISO dates, no
wildcard: ``*`` or ``?`` would match every study the node has), and
:func:`read_cohort` the rules a Table Schema cannot say (a row names a study
or a patient, a range that ends before it starts, a row asked twice).

The file names patients, so an error names the row (its line number in the
file, the header being 1) and the column, never the value.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from frictionless import FrictionlessException, Resource

from pipeline.net.errors import CohortError
from pipeline.release.contracts import contract_fields, contract_schema

COHORT_CONTRACT = "cohort.schema.json"
_IDS = ("accession_number", "patient_id")
_SHOWN = 5


@dataclass(frozen=True)
class CohortRow:
    """One row of the cohort: a study by accession number, or a patient's studies in a range.

    ``row`` is the line number in the file (the header is line 1): the only
    way the pull's messages refer to a row.
    """

    row: int
    accession_number: str = ""
    patient_id: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None

    @property
    def key(self) -> str:
        """The sha256 of what the row asks for: its identity in the catalog across runs.

        A rerun resumes by this key, not by the row's number, so a cohort
        file re-sorted or extended does not retrieve a study twice.
        """
        text = "\x1f".join(
            [self.accession_number, self.patient_id, _iso(self.date_from), _iso(self.date_to)]
        )
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def study_date(self) -> str:
        """The C-FIND StudyDate matching key: a DICOM date range, or empty (any date)."""
        if self.date_from is None and self.date_to is None:
            return ""
        return f"{_dicom(self.date_from)}-{_dicom(self.date_to)}"


def _iso(day: dt.date | None) -> str:
    return "" if day is None else day.isoformat()


def _dicom(day: dt.date | None) -> str:
    return "" if day is None else day.strftime("%Y%m%d")


def read_cohort(path: Path) -> list[CohortRow]:
    """Every row of the cohort CSV at ``path``, checked; a :class:`CohortError` otherwise.

    Raises
    ------
    CohortError
        The file cannot be read, its header names an unknown column or
        neither ``accession_number`` nor ``patient_id``, or rows break the
        contract or the rules above (each named by row and column).
    """
    known = [name for name, _ in contract_fields(COHORT_CONTRACT)]
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            # csv.reader, not DictReader: a blank line is a row (as Frictionless counts).
            header, *raw = list(csv.reader(handle)) or [[]]
        header = [name.strip() for name in header]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CohortError(f"the cohort file {path.name} cannot be read ({type(exc).__name__}); "
                          "give a UTF-8 CSV with a header row") from None  # fmt: skip
    unknown = [name for name in header if name not in known]
    if unknown or not any(name in header for name in _IDS):
        what = f"an unknown column ({', '.join(unknown)})" if unknown else "no identifying column"
        raise CohortError(
            f"the cohort file {path.name} has {what}: its header names accession_number, or "
            f"patient_id (with study_date_from and study_date_to if wanted); known: "
            f"{', '.join(known)}"
        )
    problems = _contract_problems(path)
    rows: list[CohortRow] = []
    seen: dict[str, int] = {}
    for number, cells in enumerate(raw, 2):
        values = {name: value.strip() for name, value in zip(header, cells, strict=False)}
        if not any(values.values()):
            continue  # a blank line
        if any(problem.startswith(f"row {number},") for problem in problems):
            continue
        row = _row(number, values)
        if not row.accession_number and not row.patient_id:
            problems.append(f"row {number}: names neither an accession_number nor a patient_id")
        elif row.date_from and row.date_to and row.date_from > row.date_to:
            problems.append(f"row {number}, column 'study_date_to': the range ends before "
                            "study_date_from")  # fmt: skip
        elif row.key in seen:
            problems.append(f"row {number}: asks for what row {seen[row.key]} asks for")
        else:
            seen[row.key] = number
            rows.append(row)
    if problems:
        shown = "; ".join(problems[:_SHOWN])
        more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
        raise CohortError(f"the cohort file {path.name} is refused, nothing was asked of the "
                          f"node: {shown}{more}; correct the file and run again")  # fmt: skip
    if not rows:
        raise CohortError(f"the cohort file {path.name} has no rows: nothing to pull")
    return rows


def _contract_problems(path: Path) -> list[str]:
    """Each cell that breaks the contract, by row and column (Frictionless' note, no value)."""
    resource = Resource(
        path=path.name,
        basepath=str(path.parent),
        format="csv",
        encoding="utf-8",
        schema=contract_schema(COHORT_CONTRACT),
    )
    try:
        report = resource.validate()
    except FrictionlessException as exc:  # pragma: no cover - the checks above read it first
        raise CohortError(f"the cohort file {path.name} cannot be read as CSV "
                          f"({exc.error.type})") from None  # fmt: skip
    problems = []
    for row, column, kind, note in report.flatten(["rowNumber", "fieldName", "type", "note"]):
        if kind == "blank-row":
            continue
        where = f"row {row}" if row is not None else "the file"
        if column:
            where += f", column '{column}'"
        problems.append(f"{where}: {kind} ({note})")
    return problems


def _row(number: int, values: dict[str, str]) -> CohortRow:
    def day(name: str) -> dt.date | None:
        text = values.get(name, "")
        return dt.date.fromisoformat(text) if text else None

    return CohortRow(
        row=number,
        accession_number=values.get("accession_number", ""),
        patient_id=values.get("patient_id", ""),
        date_from=day("study_date_from"),
        date_to=day("study_date_to"),
    )
