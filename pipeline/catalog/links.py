"""Reading the link table of an existing ``links.sqlite`` (:mod:`pipeline.private_store`).

Runs before the catalog recorded their link rows in the private store's
SQLite file: original patient ID, issuer and name, the subject they became,
the day shift, old and new UIDs, the output path.  The catalog absorbs those
rows (:meth:`pipeline.catalog.catalog.Catalog.import_links`), every column
kept, so that a withdrawal can find every input of a subject.

The file is opened read-only (SQLite's ``mode=ro``): importing never changes
it, and a run that holds it open for writing is not disturbed.  Files of
older versions lack some columns (``frame_of_reference_uid`` and
``commit_id`` came later); those read as NULL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from pipeline.catalog.errors import CatalogError

#: The link table's columns, in the private store's order.
LINK_COLUMNS = (
    "sha256", "run_id", "patient_id", "issuer", "patient_name", "subject", "day_offset",
    "study_uid", "new_study_uid", "series_uid", "new_series_uid", "sop_uid", "new_sop_uid",
    "output_path", "frame_of_reference_uid", "commit_id",
)  # fmt: skip
_KEY = ("sha256", "run_id")
LinkValue = str | int | None


def read_links(path: Path, *, chunk: int = 5000) -> Iterator[list[dict[str, LinkValue]]]:
    """The rows of ``path``'s ``links`` table, ``chunk`` at a time, as column -> value.

    Raises
    ------
    CatalogError
        The file is missing, is not SQLite, or has no ``links`` table.
    """
    if not path.is_file():
        raise CatalogError(f"no link table to import at {path}: give the links.sqlite file")
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:  # pragma: no cover - connect is lazy; reading fails instead
        raise CatalogError(f"cannot open the link table {path}: {exc}") from None
    try:
        try:
            present = {row[1] for row in db.execute("PRAGMA table_info(links)")}
        except sqlite3.DatabaseError:
            raise CatalogError(f"{path} is not a SQLite file: give the links.sqlite file") from None
        if not set(_KEY) <= present:
            raise CatalogError(f"{path} has no link table (links with sha256 and run_id)")
        columns = [name for name in LINK_COLUMNS if name in present]
        missing = dict.fromkeys(name for name in LINK_COLUMNS if name not in present)
        cursor = db.execute(f"SELECT {', '.join(columns)} FROM links ORDER BY rowid")
        while rows := cursor.fetchmany(chunk):
            yield [{**dict(zip(columns, row, strict=True)), **missing} for row in rows]
    finally:
        db.close()
