"""``datapackage.json``: the manifests described as a Frictionless data package.

The package names both manifest tables with the contract's schema inline,
the CSV's SHA-256 and size, so ``frictionless validate datapackage.json`` checks
a copy of the release without mricurate or its source: the schema travels
with the data.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from pipeline.atomic import atomic_write_text
from pipeline.read.content import file_sha256
from pipeline.release.contracts import MANIFEST_CONTRACT, contract_descriptor
from pipeline.release.manifest import MANIFEST_FOLDER

DATAPACKAGE_NAME = "datapackage.json"
_MEDIA_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


def package_name(title: str) -> str:
    """A data package ``name`` (lower case, digits, ``-._``) from the dataset's title."""
    return re.sub(r"[^a-z0-9._-]+", "-", title.lower()).strip("-._") or "mricurate-release"


def package_descriptor(
    *, title: str, version_name: str, created: dt.datetime, tables: list[Path]
) -> dict[str, Any]:
    """The descriptor of the manifest ``tables`` (in the version's ``manifests/`` folder)."""
    schema = contract_descriptor(MANIFEST_CONTRACT)
    resources = []
    for table in tables:
        kind = table.suffix.lstrip(".")
        resource: dict[str, Any] = {
            "name": f"files-{kind}",
            "path": f"{MANIFEST_FOLDER}/{table.name}",
            "profile": "tabular-data-resource",
            "format": kind,
            "mediatype": _MEDIA_TYPES[kind],
            "title": f"Manifest ({kind.upper() if kind == 'csv' else kind.capitalize()}): "
            "one row per released file",
            "schema": schema,
        }
        if kind == "csv":
            # Frictionless checks a CSV's hash and size as it reads the bytes; a Parquet
            # file it reads through pyarrow, never counting them (it would report a
            # mismatch), so the Parquet file's SHA-256 is in SHA256SUMS only.
            resource["encoding"] = "utf-8"
            resource["hash"] = f"sha256:{file_sha256(table)}"
            resource["bytes"] = table.stat().st_size
        resources.append(resource)
    return {
        "name": package_name(title),
        "title": title,
        "version": version_name,
        "created": created.isoformat(timespec="seconds"),
        "resources": resources,
    }


def write_datapackage(version: Path, descriptor: dict[str, Any]) -> Path:
    """Write ``version/datapackage.json``."""
    path = version / DATAPACKAGE_NAME
    atomic_write_text(path, json.dumps(descriptor, indent=2, ensure_ascii=False) + "\n")
    return path
