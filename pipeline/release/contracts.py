"""Data contracts: the Frictionless Table Schemas in ``data_contracts/`` and checking a table.

A manifest's columns, types and constraints (required cells, a unique
``relpath``, the enums of ``area`` and ``split``, the patterns that admit
pseudonyms only) are data, not code: they live in
``data_contracts/<name>.schema.json`` where a reader of the release finds
them too, and the writer checks every table it writes against them with
Frictionless 5, which names the row and the column of each violation.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from frictionless import FrictionlessException, Resource, Schema

from pipeline.errors import RuleError
from pipeline.release.errors import ContractError, ContractViolation
from pipeline.rulefiles import data_contracts_root

MANIFEST_CONTRACT = "manifest.schema.json"


def contract_path(name: str) -> Path:
    """Where the shipped contract ``name`` is (``$MRICURATE_DATA_CONTRACTS`` first)."""
    return data_contracts_root() / name


def contract_descriptor(name: str) -> dict[str, Any]:
    """The contract as JSON, checked as a Table Schema (a broken contract is a RuleError).

    The descriptor is what a release embeds in its ``datapackage.json``, so a
    reader has the schema without mricurate's source.
    """
    return copy.deepcopy(_load(contract_path(name)))


@lru_cache(maxsize=8)
def _load(path: Path) -> dict[str, Any]:
    try:
        descriptor = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RuleError(path, None, "data contract not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RuleError(path, getattr(exc, "lineno", None), f"not JSON ({exc})") from None
    if not isinstance(descriptor, dict):
        raise RuleError(path, 1, "a Table Schema is a JSON object")
    try:
        Schema.from_descriptor(descriptor)
    except FrictionlessException as exc:
        raise RuleError(path, None, f"not a valid Table Schema: {exc.error.note}") from None
    return descriptor


def contract_schema(name: str) -> Schema:
    """The contract as a Frictionless :class:`~frictionless.Schema` (a fresh copy)."""
    return Schema.from_descriptor(contract_descriptor(name))


def contract_fields(name: str) -> tuple[tuple[str, str], ...]:
    """``(name, type)`` of every field, in the contract's order."""
    return tuple((field["name"], field["type"]) for field in contract_descriptor(name)["fields"])


def validate_table(path: Path, contract: str, *, label: str) -> None:
    """Check the CSV or Parquet table at ``path`` against ``contract``, or raise.

    Parameters
    ----------
    path : Path
        The table; its suffix (``.csv``, ``.parquet``) says how to read it.
    contract : str
        The schema's file name in ``data_contracts/``.
    label : str
        How the error names the table (its path inside the version).

    Raises
    ------
    ContractViolation
        With every error's row and column: types, required cells, uniqueness,
        enums, patterns, and a header that is not the contract's.
    """
    resource = Resource(
        path=path.name,
        basepath=str(path.parent),
        format=path.suffix.lstrip("."),
        schema=contract_schema(contract),
    )
    report = resource.validate()
    if report.valid:
        return
    errors = tuple(
        ContractError(row=row, column=column, kind=kind, note=note)
        for row, column, kind, note in report.flatten(["rowNumber", "fieldName", "type", "note"])
    )
    raise ContractViolation(label, contract, errors)
