"""The private location: the only place that may hold PHI.

It holds the link table (original identifiers and input paths <-> pseudonyms
and output paths), per-run records, the record of every released file, the
commit journal, the quarantined inputs with their reasons, and the workers'
temp files.  It is a folder with mode 0700 that must never be inside a
release.

**Paths are bytes.**  A file name is whatever bytes the file system holds
(Latin-1 exports are common); input paths and output roots are stored as
BLOBs of ``os.fsencode(path)`` (so are a run's SOURCE and OUTPUT), so every
name is recorded, never one that cannot be encoded.

**The journal.**  A batch of outputs is recorded *before* its temp files are
renamed onto their final names (:meth:`begin_commit`), and marked done after
(:meth:`finish_commit`).  Whatever the moment of a crash, a released file
has its record and its link rows; a record whose rename did not happen is
completed or withdrawn by the next run (:mod:`pipeline.batch.journal`).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.atomic import atomic_open, atomic_write_text
from pipeline.identity.links import LinkRecord
from pipeline.keys import ensure_private_dir
from pipeline.storage import writing

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started_at TEXT, finished_at TEXT, command TEXT,
    source TEXT, output TEXT, profile TEXT, profile_digest TEXT, key_fingerprint TEXT,
    summary_json TEXT
);
CREATE TABLE IF NOT EXISTS inputs (
    run_id TEXT, input_path BLOB, sha256 TEXT, outcome TEXT, reason TEXT, detail TEXT,
    output_path TEXT, commit_id INTEGER, PRIMARY KEY (run_id, input_path)
);
CREATE TABLE IF NOT EXISTS links (
    sha256 TEXT, run_id TEXT, patient_id TEXT, issuer TEXT, patient_name TEXT,
    subject TEXT, day_offset INTEGER, study_uid TEXT, new_study_uid TEXT,
    series_uid TEXT, new_series_uid TEXT, sop_uid TEXT, new_sop_uid TEXT,
    output_path TEXT, frame_of_reference_uid TEXT DEFAULT '', commit_id INTEGER,
    PRIMARY KEY (sha256, run_id)
);
CREATE TABLE IF NOT EXISTS commits (
    commit_id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, state TEXT
);
CREATE TABLE IF NOT EXISTS outputs (
    area_root BLOB, relpath TEXT, input_sha256 TEXT, output_sha256 TEXT,
    run_id TEXT, commit_id INTEGER, temp BLOB,
    PRIMARY KEY (area_root, relpath)
);
CREATE TABLE IF NOT EXISTS sources (
    command TEXT, path BLOB, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER,
    inode INTEGER, device INTEGER, sha256 TEXT, outcome TEXT, config_digest TEXT,
    key_fingerprint TEXT, outputs TEXT, run_id TEXT, commit_id INTEGER,
    PRIMARY KEY (command, path)
);
"""
# Columns added after the first release, with the statement that adds them to an
# older links.sqlite (SQLite cannot add a column "if not exists").
_ADDED_COLUMNS = {
    ("links", "frame_of_reference_uid"): (
        "ALTER TABLE links ADD COLUMN frame_of_reference_uid TEXT DEFAULT ''"
    ),
    ("links", "commit_id"): "ALTER TABLE links ADD COLUMN commit_id INTEGER",
    ("inputs", "commit_id"): "ALTER TABLE inputs ADD COLUMN commit_id INTEGER",
}
_LINK_COLUMNS = (
    "sha256, run_id, patient_id, issuer, patient_name, subject, day_offset, study_uid, "
    "new_study_uid, series_uid, new_series_uid, sop_uid, new_sop_uid, "
    "frame_of_reference_uid, output_path, commit_id"
)
_COPY_BLOCK = 1 << 20
_IN_CHUNK = 500  # SQLite's bound-parameter limit is far above; keeps statements small
_AREA = "the private location"


@dataclass(frozen=True)
class InputRow:
    """What happened to one input in one run (its path is PHI)."""

    path: bytes
    sha256: str
    outcome: str
    reason: str
    detail: str
    outputs: str  # ';'-joined release paths


@dataclass(frozen=True)
class OutputRow:
    """A released file: where, made from which input, with which bytes."""

    area_root: bytes
    relpath: str
    input_sha256: str
    output_sha256: str
    temp: bytes | None = None  # while its commit is pending


@dataclass(frozen=True)
class SourceState:
    """An input as the last run that finished it saw it (for incremental reruns)."""

    path: bytes
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int
    sha256: str
    outcome: str
    config_digest: str
    key_fingerprint: str
    outputs: tuple[tuple[bytes, str], ...]  # (area root, relpath)

    def same_file(self, stat: os.stat_result) -> bool:
        """Unchanged unless rewritten: ctime moves on any write and cannot be set back."""
        return (self.size, self.mtime_ns, self.ctime_ns, self.inode, self.device) == (
            stat.st_size,
            stat.st_mtime_ns,
            stat.st_ctime_ns,
            stat.st_ino,
            stat.st_dev,
        )


@dataclass(frozen=True)
class PendingCommit:
    commit_id: int
    outputs: tuple[OutputRow, ...]


class PrivateStore:
    """Read and write the private location."""

    def __init__(self, root: Path, *, create: bool = True) -> None:
        self._db: sqlite3.Connection | None = None
        self._pid = 0
        # The run commits on a thread of its own (pipeline.batch.commit.CommitThread):
        # one transaction at a time on the one connection, whichever thread asks.
        self._lock = threading.RLock()
        with writing(_AREA, root):
            self.root = ensure_private_dir(root) if create else root
            self.db_path = self.root / "links.sqlite"
            if not create:
                return
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")  # workers read while the runner writes
                db.executescript(_SCHEMA)
                for (table, column), statement in _ADDED_COLUMNS.items():
                    present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                    if column not in present:
                        db.execute(statement)
                # Paths recorded as text by earlier versions become the bytes they name.
                db.execute(
                    "UPDATE inputs SET input_path = CAST(input_path AS BLOB) "
                    "WHERE typeof(input_path) = 'text'"
                )
                # The raw side looks subjects up by these (once per raw file).
                for column in ("patient_id", "study_uid", "frame_of_reference_uid"):
                    db.execute(f"CREATE INDEX IF NOT EXISTS links_{column} ON links ({column})")
                db.execute("CREATE INDEX IF NOT EXISTS outputs_input ON outputs (input_sha256)")

    @classmethod
    def reader(cls, root: Path) -> PrivateStore:
        """A store that only reads (a worker looking subjects up): no schema changes."""
        return cls(root, create=False)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One transaction on this process's connection (opened once, again after a fork).

        One connection for the life of the store: opening and closing one per
        batch made SQLite checkpoint its write-ahead log every time.  A
        connection is never used across a fork (SQLite forbids it): a worker
        process opens its own.  It may be used from any thread of this
        process, one transaction at a time (the lock).
        """
        with writing(_AREA, self.root), self._lock:
            if self._db is None or self._pid != os.getpid():
                self._db = sqlite3.connect(self.db_path, timeout=60, check_same_thread=False)
                self._pid = os.getpid()
                self.db_path.chmod(0o600)
            with self._db:
                yield self._db

    # -- runs -------------------------------------------------------------------

    def start_run(self, run_id: str, started_at: str, command: str, **fields: str | bytes) -> None:
        """Record a run's start; ``source`` and ``output`` are paths as bytes (BLOBs)."""
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

    def finish_run(self, run_id: str, finished_at: str, summary: dict[str, object]) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, summary_json = ? WHERE run_id = ?",
                (finished_at, json.dumps(summary, sort_keys=True), run_id),
            )
        with writing(_AREA, self.root):
            atomic_write_text(
                self.root / "runs" / f"{run_id}.json",
                json.dumps(summary, indent=2, sort_keys=True),
                mode=0o600,
            )

    def key_fingerprints(self) -> set[str]:
        """Fingerprints of the keys earlier runs used here (never the keys)."""
        with self._connect() as db:
            rows = db.execute("SELECT DISTINCT key_fingerprint FROM runs")
            return {str(r[0]) for r in rows if r[0]}

    # -- the journal ------------------------------------------------------------

    def begin_commit(
        self,
        run_id: str,
        inputs: Sequence[InputRow],
        links: Sequence[tuple[str, str, LinkRecord]],
        outputs: Sequence[OutputRow],
        sources: Sequence[tuple[str, SourceState]],
        *,
        finishing: int | None = None,
    ) -> int:
        """Record a batch in one transaction, outputs marked pending; return its id.

        ``finishing``: an earlier batch now durable, marked done in the same transaction.
        """
        with self._connect() as db:
            if finishing is not None:
                db.execute("UPDATE outputs SET temp = NULL WHERE commit_id = ?", (finishing,))
                db.execute("UPDATE commits SET state = 'done' WHERE commit_id = ?", (finishing,))
            cursor = db.execute(
                "INSERT INTO commits (run_id, state) VALUES (?, 'pending')", (run_id,)
            )
            commit = int(cursor.lastrowid or 0)
            db.executemany(
                "INSERT OR REPLACE INTO inputs VALUES (?,?,?,?,?,?,?,?)",
                [
                    (run_id, r.path, r.sha256, r.outcome, r.reason, r.detail, r.outputs, commit)
                    for r in inputs
                ],
            )
            db.executemany(
                f"INSERT OR REPLACE INTO links ({_LINK_COLUMNS}) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(sha, run_id, *link.row(), output, commit) for sha, output, link in links],
            )
            db.executemany(
                "INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?)",
                [
                    (
                        o.area_root,
                        o.relpath,
                        o.input_sha256,
                        o.output_sha256,
                        run_id,
                        commit,
                        o.temp,
                    )
                    for o in outputs
                ],
            )
            db.executemany(
                "INSERT OR REPLACE INTO sources VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        command, s.path, s.size, s.mtime_ns, s.ctime_ns, s.inode, s.device,
                        s.sha256, s.outcome, s.config_digest, s.key_fingerprint,
                        json.dumps([[os.fsdecode(root), rel] for root, rel in s.outputs]),
                        run_id, commit,
                    )
                    for command, s in sources
                ],
            )  # fmt: skip
        return commit

    def finish_commit(self, commit_id: int) -> None:
        """Every output of the batch is under its final name."""
        with self._connect() as db:
            db.execute("UPDATE outputs SET temp = NULL WHERE commit_id = ?", (commit_id,))
            db.execute("UPDATE commits SET state = 'done' WHERE commit_id = ?", (commit_id,))

    def pending_commits(self) -> list[PendingCommit]:
        """Batches recorded whose renames may not all have happened (a crash)."""
        with self._connect() as db:
            ids = [
                int(r[0]) for r in db.execute("SELECT commit_id FROM commits WHERE state='pending'")
            ]
            found = []
            for commit in ids:
                rows = db.execute(
                    "SELECT area_root, relpath, input_sha256, output_sha256, temp FROM outputs "
                    "WHERE commit_id = ?",
                    (commit,),
                )
                found.append(
                    PendingCommit(
                        commit, tuple(OutputRow(bytes(r[0]), r[1], r[2], r[3], r[4]) for r in rows)
                    )
                )
            return found

    def withdraw_outputs(self, commit_id: int, lost: Iterable[OutputRow]) -> None:
        """Forget outputs of a pending batch whose files are gone, and their links and sources."""
        lost = list(lost)
        with self._connect() as db:
            for row in lost:
                db.execute(
                    "DELETE FROM outputs WHERE area_root = ? AND relpath = ? AND commit_id = ?",
                    (row.area_root, row.relpath, commit_id),
                )
                db.execute(
                    "DELETE FROM links WHERE output_path = ? AND commit_id = ?",
                    (row.relpath, commit_id),
                )
                db.execute(
                    "DELETE FROM sources WHERE sha256 = ? AND commit_id = ?",
                    (row.input_sha256, commit_id),
                )

    # -- what is released -------------------------------------------------------

    def recorded_outputs(
        self, keys: Iterable[tuple[bytes, str]]
    ) -> dict[tuple[bytes, str], OutputRow]:
        """The released files recorded at these (area root, relpath)."""
        wanted = list(keys)
        found: dict[tuple[bytes, str], OutputRow] = {}
        with self._connect() as db:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                clause = " OR ".join(["(area_root = ? AND relpath = ?)"] * len(chunk))
                params = [v for pair in chunk for v in pair]
                for r in db.execute(
                    "SELECT area_root, relpath, input_sha256, output_sha256, temp FROM outputs "
                    f"WHERE {clause}",
                    params,
                ):
                    row = OutputRow(bytes(r[0]), r[1], r[2], r[3], r[4])
                    found[(row.area_root, row.relpath)] = row
        return found

    def source_states(self, command: str, paths: Iterable[bytes]) -> dict[bytes, SourceState]:
        """What the last finished run of ``command`` recorded for these input paths."""
        wanted = list(paths)
        found: dict[bytes, SourceState] = {}
        with self._connect() as db:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                for r in db.execute(
                    "SELECT path, size, mtime_ns, ctime_ns, inode, device, sha256, outcome, "
                    "config_digest, key_fingerprint, outputs FROM sources "
                    f"WHERE command = ? AND path IN ({marks})",
                    [command, *chunk],
                ):
                    outputs = tuple((os.fsencode(root), rel) for root, rel in json.loads(r[10]))
                    state = SourceState(
                        bytes(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]),
                        str(r[6]), str(r[7]), str(r[8]), str(r[9]), outputs,
                    )  # fmt: skip
                    found[state.path] = state
        return found

    def move_outputs(self, run_id: str, area_root: bytes, moved: dict[str, str]) -> None:
        """Record new output paths after the release was re-laid out (``--dicomdir``)."""
        with self._connect() as db:
            for table in ("inputs", "links"):
                db.executemany(
                    f"UPDATE {table} SET output_path = ? WHERE run_id = ? AND output_path = ?",
                    [(new, run_id, old) for old, new in moved.items()],
                )
            db.executemany(
                "UPDATE outputs SET relpath = ? WHERE area_root = ? AND relpath = ?",
                [(new, area_root, old) for old, new in moved.items()],
            )

    def outputs_of_inputs(self, sha256s: Iterable[str]) -> list[tuple[str, bytes, str, str]]:
        """(input sha256, area root, relpath, output sha256) of every recorded output of these inputs.

        A rerun that skipped an input as unchanged reports no outputs in its
        result; what it made earlier is here.
        """
        wanted = sorted(set(sha256s))
        found: list[tuple[str, bytes, str, str]] = []
        with self._connect() as db:
            for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
                chunk = wanted[start : start + 500]
                rows = db.execute(
                    "SELECT input_sha256, area_root, relpath, output_sha256 FROM outputs "
                    f"WHERE input_sha256 IN ({','.join('?' * len(chunk))}) ORDER BY relpath",
                    chunk,
                )
                found += [(str(r[0]), bytes(r[1]), str(r[2]), str(r[3])) for r in rows]
        return found

    def subjects_of_inputs(self, sha256s: Iterable[str]) -> dict[str, str]:
        """The subject pseudonym of each input that has link rows (raw inputs: ``sha#n`` keys)."""
        wanted = sorted(set(sha256s))
        found: dict[str, str] = {}
        with self._connect() as db:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    "SELECT sha256, subject FROM links WHERE sha256 IN "
                    f"({marks}) OR substr(sha256, 1, 64) IN ({marks})",
                    chunk + chunk,
                )
                for key, subject in rows:
                    found.setdefault(str(key)[:64], str(subject))
        return found

    def outputs_of_run(self, run_id: str, area_root: bytes) -> list[str]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT relpath FROM outputs WHERE run_id = ? AND area_root = ? ORDER BY relpath",
                (run_id, area_root),
            )
            return [str(r[0]) for r in rows]

    # -- quarantine -------------------------------------------------------------

    def quarantine_file(self, source: Path, sha256: str, reason: str, detail: str) -> Path:
        """Keep a copy of a rejected input with its reason (the source stays in place)."""
        folder = self.root / "quarantine" / sha256[:2]
        target = folder / sha256
        with writing(_AREA, self.root):
            if not target.exists():
                folder.mkdir(parents=True, exist_ok=True)
                with atomic_open(target, mode=0o600) as out, source.open("rb") as handle:
                    shutil.copyfileobj(handle, out, _COPY_BLOCK)
            # A name that is not UTF-8 is kept as its surrogate escapes (JSON \\udcXX).
            record = {"reason": reason, "detail": detail, "source": os.fsdecode(source)}
            atomic_write_text(folder / f"{sha256}.json", json.dumps(record, indent=2), mode=0o600)
        return target

    # -- lookups ----------------------------------------------------------------

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

    def record_links(self, run_id: str, links: Sequence[tuple[str, str, LinkRecord]]) -> None:
        """Link rows without outputs of this store's own (tools and tests that seed a table)."""
        self.begin_commit(run_id, [], links, [], [])

    def close(self) -> None:
        with self._lock:
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            self._db = None

    def __getstate__(self) -> dict[str, object]:
        # A store sent to another process opens its own connection there.
        state = {**self.__dict__, "_db": None, "_pid": 0}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def links_for(self, run_id: str) -> list[dict[str, object]]:
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM links WHERE run_id = ?", (run_id,))]

    def inputs_for(self, run_id: str) -> list[dict[str, object]]:
        """This run's input rows; ``input_path`` as a path string (surrogate-escaped)."""
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute("SELECT * FROM inputs WHERE run_id = ?", (run_id,))]
        for row in rows:
            row["input_path"] = os.fsdecode(bytes(row["input_path"]))
        return rows
