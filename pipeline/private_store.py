"""The private location: the only place that may hold PHI.

It holds the link table (original identifiers and input paths <-> pseudonyms
and output paths), per-run records and the quarantined inputs with their
reasons.  It is a folder with mode 0700 that must never be inside a release.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from pipeline.atomic import atomic_open, atomic_write_bytes, atomic_write_text
from pipeline.identity.links import LinkRecord
from pipeline.keys import ensure_private_dir

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started_at TEXT, finished_at TEXT, command TEXT,
    source TEXT, output TEXT, profile TEXT, profile_digest TEXT, key_fingerprint TEXT,
    summary_json TEXT
);
CREATE TABLE IF NOT EXISTS inputs (
    run_id TEXT, input_path TEXT, sha256 TEXT, outcome TEXT, reason TEXT, detail TEXT,
    output_path TEXT, PRIMARY KEY (run_id, input_path)
);
CREATE TABLE IF NOT EXISTS links (
    sha256 TEXT, run_id TEXT, patient_id TEXT, issuer TEXT, patient_name TEXT,
    subject TEXT, day_offset INTEGER, study_uid TEXT, new_study_uid TEXT,
    series_uid TEXT, new_series_uid TEXT, sop_uid TEXT, new_sop_uid TEXT,
    output_path TEXT, frame_of_reference_uid TEXT DEFAULT '',
    PRIMARY KEY (sha256, run_id)
);
"""
# Columns added after the first release, with the statement that adds them to an
# older links.sqlite (SQLite cannot add a column "if not exists").
_ADDED_COLUMNS = {
    ("links", "frame_of_reference_uid"): (
        "ALTER TABLE links ADD COLUMN frame_of_reference_uid TEXT DEFAULT ''"
    ),
}
_LINK_COLUMNS = (
    "sha256, run_id, patient_id, issuer, patient_name, subject, day_offset, study_uid, "
    "new_study_uid, series_uid, new_series_uid, sop_uid, new_sop_uid, "
    "frame_of_reference_uid, output_path"
)


_COPY_BLOCK = 1 << 20


class PrivateStore:
    """Read and write the private location."""

    def __init__(self, root: Path) -> None:
        self.root = ensure_private_dir(root)
        self.db_path = self.root / "links.sqlite"
        with self._connect() as db:
            db.executescript(_SCHEMA)
            for (table, column), statement in _ADDED_COLUMNS.items():
                present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if column not in present:
                    db.execute(statement)
            # The raw side looks subjects up by these (once per raw file).
            for column in ("patient_id", "study_uid", "frame_of_reference_uid"):
                db.execute(f"CREATE INDEX IF NOT EXISTS links_{column} ON links ({column})")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.db_path)
        try:
            with db:
                yield db
        finally:
            db.close()
        self.db_path.chmod(0o600)

    def start_run(self, run_id: str, started_at: str, command: str, **fields: str) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (run_id, started_at, command, source, output, profile, "
                "profile_digest, key_fingerprint) VALUES (?,?,?,?,?,?,?,?)",
                (
                    run_id, started_at, command, fields.get("source", ""),
                    fields.get("output", ""), fields.get("profile", ""),
                    fields.get("profile_digest", ""), fields.get("key_fingerprint", ""),
                ),
            )  # fmt: skip

    def record_inputs(
        self,
        run_id: str,
        rows: list[tuple[str, str, str, str, str, str]],
        links: list[tuple[str, str, LinkRecord]],
    ) -> None:
        """Record a batch: (path, sha256, outcome, reason, detail, output) and links."""
        with self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO inputs VALUES (?,?,?,?,?,?,?)",
                [(run_id, *row) for row in rows],
            )
            db.executemany(
                f"INSERT OR REPLACE INTO links ({_LINK_COLUMNS}) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(sha, run_id, *asdict(link).values(), output) for sha, output, link in links],
            )

    def move_outputs(self, run_id: str, moved: dict[str, str]) -> None:
        """Record new output paths after the release was re-laid out (``--dicomdir``)."""
        with self._connect() as db:
            for table in ("inputs", "links"):
                db.executemany(
                    f"UPDATE {table} SET output_path = ? WHERE run_id = ? AND output_path = ?",
                    [(new, run_id, old) for old, new in moved.items()],
                )

    def finish_run(self, run_id: str, finished_at: str, summary: dict[str, object]) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, summary_json = ? WHERE run_id = ?",
                (finished_at, json.dumps(summary, sort_keys=True), run_id),
            )
        atomic_write_text(
            self.root / "runs" / f"{run_id}.json",
            json.dumps(summary, indent=2, sort_keys=True),
            mode=0o600,
        )

    def quarantine(self, data: bytes, sha256: str, reason: str, detail: str, source: str) -> Path:
        """Keep a copy of a rejected input with its reason (the source stays in place)."""
        folder = self.root / "quarantine" / sha256[:2]
        target = folder / sha256
        if not target.exists():
            atomic_write_bytes(target, data, mode=0o600)
        atomic_write_text(
            folder / f"{sha256}.json",
            json.dumps({"reason": reason, "detail": detail, "source": source}, indent=2),
            mode=0o600,
        )
        return target

    def quarantine_file(self, source: Path, sha256: str, reason: str, detail: str) -> Path:
        """Like :meth:`quarantine`, for inputs too large to hold in memory (raw data)."""
        folder = self.root / "quarantine" / sha256[:2]
        target = folder / sha256
        if not target.exists():
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_open(target, mode=0o600) as out, source.open("rb") as handle:
                shutil.copyfileobj(handle, out, _COPY_BLOCK)
        atomic_write_text(
            folder / f"{sha256}.json",
            json.dumps({"reason": reason, "detail": detail, "source": str(source)}, indent=2),
            mode=0o600,
        )
        return target

    def identities_for(
        self, *, study_uid: str = "", frame_of_reference_uid: str = "", patient_id: str = ""
    ) -> set[tuple[str, str, str, str]]:
        """(patient ID, issuer, name, study UID) of DICOM files linked to this study or frame UID.

        Raw data from the same session shares these UIDs with the DICOM series
        the scanner made from it.  The caller derives the subject from them
        exactly as the DICOM side did (:func:`pipeline.identity.subjects.subject_key`).
        """
        found: set[tuple[str, str, str, str]] = set()
        with self._connect() as db:
            for column, value in (
                ("study_uid", study_uid),
                ("frame_of_reference_uid", frame_of_reference_uid),
                ("patient_id", patient_id),
            ):
                if value:
                    rows = db.execute(
                        "SELECT DISTINCT patient_id, issuer, patient_name, study_uid FROM links "
                        f"WHERE {column} = ?",
                        (value,),
                    )
                    found.update((r[0] or "", r[1] or "", r[2] or "", r[3] or "") for r in rows)
        return found

    def links_for(self, run_id: str) -> list[dict[str, object]]:
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM links WHERE run_id = ?", (run_id,))]

    def inputs_for(self, run_id: str) -> list[dict[str, object]]:
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM inputs WHERE run_id = ?", (run_id,))]
