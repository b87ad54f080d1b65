"""De-identify a whole folder: discover, fan out to workers, commit, account.

Workers read, de-identify and write each file to a temporary name beside its
final path; only this process renames, so two inputs that map to the same
output (a file exported twice) are detected instead of racing, and an
interrupted run leaves no half-written file under a final name.  Every input
ends in exactly one outcome, recorded with its reason in the private store.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.atomic import remove_stale_temps
from pipeline.dicom.deidentify import DeidResult, deidentify_file
from pipeline.dicom.dicomdir import write_fileset
from pipeline.dicom.profile import Profile
from pipeline.errors import CurationError
from pipeline.identity.links import LinkRecord
from pipeline.identity.uids import UidMapper
from pipeline.keys import SecretKey
from pipeline.private_store import PrivateStore
from pipeline.read.content import opaque_key, sha256_of
from pipeline.read.dicom import quiet_pydicom
from pipeline.read.discover import discover
from pipeline.reasons import Outcome

if TYPE_CHECKING:  # pipeline.pixels imports this module
    from pipeline.pixels.blank import PixelCleaning


@dataclass(frozen=True)
class RunSummary:
    """PHI-free account of a run: counts, and opaque input keys per reason."""

    run_id: str
    seen: int
    outcomes: dict[str, int]
    reasons: dict[str, list[str]]  # reason -> opaque input keys (sha256 prefixes)
    carried: dict[str, int] = field(default_factory=dict)
    pixels: dict[str, int] = field(default_factory=dict)  # --clean-pixels: outcome -> files

    @property
    def written(self) -> int:
        return self.outcomes.get(Outcome.WRITTEN.value, 0)

    def as_dict(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "seen": self.seen,
            "outcomes": self.outcomes,
            "reasons": self.reasons,
            "carried": self.carried,
            **({"pixels": self.pixels} if self.pixels else {}),
        }


def check_locations(source: Path, output: Path, private: Path) -> None:
    """Refuse layouts that would put PHI into the release or read our own output."""
    src, out, priv = source.resolve(), output.resolve(), private.resolve()
    if out == src or out.is_relative_to(src) or src.is_relative_to(out):
        raise CurationError(f"OUTPUT {output} and SOURCE {source} must not contain each other")
    if priv.is_relative_to(out):
        raise CurationError(
            f"the private location {private} is inside OUTPUT {output}: it holds the link "
            "table (PHI); choose --private-dir outside the release"
        )


# Results are made durable and renamed in batches of this many files.
COMMIT_BATCH = 256


@dataclass(frozen=True)
class _WorkerState:
    """What each worker process needs, set once by :func:`_init_worker`."""

    key: SecretKey
    profile: Profile
    uids: UidMapper
    output: Path
    keep_burned_in: bool
    cleaning: PixelCleaning | None = None


_worker: _WorkerState | None = None


def _init_worker(
    key_material: bytes,
    profile: Profile,
    output: str,
    keep: bool,
    cleaning: PixelCleaning | None = None,
) -> None:
    """Set up a worker once: the profile and pixel rules arrive already parsed.

    The OCR engine comes with ``cleaning``: unpickled once per worker
    process, so each worker has its own engine for the whole run.
    """
    global _worker
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    quiet_pydicom()
    key = SecretKey(key_material)
    _worker = _WorkerState(key, profile, UidMapper(key), Path(output), keep, cleaning)


def _work(path: Path) -> tuple[DeidResult, bytes | None]:
    """Process one path in a worker; return the input bytes only when they must be quarantined."""
    if not path.is_file():
        # A FIFO would block, a device never ends, a dangling link has nothing.
        if path.is_symlink() and path.is_dir():
            kind = "a link to a folder (not followed, to avoid cycles): give its target as SOURCE"
        elif path.is_dir():
            kind = "a folder that cannot be listed: check its permissions"
        else:
            kind = "a FIFO, socket, device or dangling link: nothing to read"
        return DeidResult(path, "", Outcome.QUARANTINED, "not a regular file", kind), None
    try:
        data = path.read_bytes()
    except OSError as exc:
        result = DeidResult(
            path, "", Outcome.QUARANTINED, "unreadable (I/O error)", f"{type(exc).__name__}"
        )
        return result, None
    state = _worker
    assert state is not None, "_init_worker sets up every worker before it works"
    result = deidentify_file(
        path, data, sha256_of(data), state.output, state.key, state.profile, state.uids,
        keep_burned_in=state.keep_burned_in, cleaning=state.cleaning,
    )  # fmt: skip
    keep_bytes = result.outcome in (Outcome.QUARANTINED, Outcome.HELD_BACK)
    return result, data if keep_bytes else None


def _results(
    paths: list[Path],
    jobs: int,
    init_args: tuple[bytes, Profile, str, bool, PixelCleaning | None],
) -> Iterator[tuple[DeidResult, bytes | None]]:
    if jobs <= 1:
        _init_worker(*init_args)
        yield from map(_work, paths)
        return
    chunk = max(1, min(64, len(paths) // (jobs * 8) or 1))
    with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=init_args) as pool:
        yield from pool.map(_work, paths, chunksize=chunk)


def deidentify_tree(
    source: Path,
    output: Path,
    key: SecretKey,
    profile: Profile,
    private: PrivateStore,
    *,
    jobs: int = 1,
    keep_burned_in: bool = False,
    dicomdir: bool = False,
    cleaning: PixelCleaning | None = None,
) -> RunSummary:
    """De-identify every file under ``source`` into ``output``.

    With ``dicomdir`` the release is laid out as a DICOM File-set with a new
    DICOMDIR (see :mod:`pipeline.dicom.dicomdir`); OUTPUT must then be empty.
    With ``cleaning`` (``--clean-pixels``) burned-in text is blanked
    (:mod:`pipeline.pixels.blank`); the engine is checked before any file is read.
    """
    if cleaning is not None:
        _ = cleaning.engine.name  # a missing OCR program is a setup error, not a file's
    check_locations(source, output, private.root)
    output.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(output)  # left by a run that was cut off
    if dicomdir and any(output.iterdir()):
        raise CurationError(
            f"--dicomdir writes a whole File-set: OUTPUT {output} must be empty (or new)"
        )
    paths = discover(source.resolve())
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]
    private.start_run(
        run_id,
        dt.datetime.now(dt.UTC).isoformat(),
        "deid",
        source=str(source.resolve()),
        output=str(output.resolve()),
        profile=profile.name,
        profile_digest=profile.digest,
        key_fingerprint=key.fingerprint,
    )
    init_args = (key.material, profile, str(output), keep_burned_in, cleaning)
    committed: dict[str, str] = {}  # output path -> sha256 of the bytes written this run
    outcomes: Counter[str] = Counter()
    reasons: defaultdict[str, list[str]] = defaultdict(list)
    carried: Counter[str] = Counter()
    pixels: Counter[str] = Counter()
    rows: list[tuple[str, str, str, str, str, str]] = []
    links: list[tuple[str, str, LinkRecord]] = []
    pending: list[tuple[DeidResult, bytes | None]] = []
    made_dirs: set[Path] = set()

    def settle() -> None:
        """Make a batch of temp files durable with one sync, then rename and record them."""
        if any(r.temp_path is not None for r, _ in pending):
            os.sync()  # one flush per batch instead of one fsync per file
        for result, data in pending:
            result = _commit(result, output, committed, made_dirs)
            if result.outcome is Outcome.QUARANTINED and data is None and result.sha256:
                data = result.input_path.read_bytes()  # an output conflict found at commit
            if result.outcome in (Outcome.QUARANTINED, Outcome.HELD_BACK) and data is not None:
                private.quarantine(
                    data, result.sha256, result.reason, result.detail, str(result.input_path)
                )
            outcomes[result.outcome.value] += 1
            if result.reason:
                # Opaque keys only: the content hash, or for what could not be read a
                # hash of its path (paths can hold names).
                reasons[result.reason].append(opaque_key(result.sha256, result.input_path))
            carried.update(result.carried)
            if result.pixels:
                pixels[result.pixels] += 1
            rows.append(
                (
                    str(result.input_path), result.sha256, result.outcome.value, result.reason,
                    result.detail, result.output_relpath or "",
                )
            )  # fmt: skip
            if result.link is not None and result.output_relpath:
                links.append((result.sha256, result.output_relpath, result.link))
        pending.clear()
        private.record_inputs(run_id, rows, links)
        rows.clear()
        links.clear()

    for item in _results(paths, jobs, init_args):
        pending.append(item)
        if len(pending) >= COMMIT_BATCH:
            settle()
    settle()
    if dicomdir and committed:
        private.move_outputs(run_id, write_fileset(output, sorted(committed)))
    summary = RunSummary(
        run_id, len(paths), dict(outcomes), dict(reasons), dict(carried), dict(pixels)
    )
    private.finish_run(run_id, dt.datetime.now(dt.UTC).isoformat(), summary.as_dict())
    return summary


def _commit(
    result: DeidResult, output: Path, committed: dict[str, str], made_dirs: set[Path]
) -> DeidResult:
    """Rename a worker's (already synced) temp file onto its final name, or detect a duplicate."""
    if result.outcome is not Outcome.WRITTEN or result.temp_path is None:
        return result
    assert result.output_relpath is not None
    tmp = result.temp_path
    previous = committed.get(result.output_relpath)
    if previous is not None:
        tmp.unlink(missing_ok=True)
        if previous == result.output_sha256:
            return DeidResult(
                result.input_path, result.sha256, Outcome.DUPLICATE,
                "duplicate of another input (same instance, same content)",
                output_relpath=result.output_relpath,
            )  # fmt: skip
        return DeidResult(
            result.input_path, result.sha256, Outcome.QUARANTINED, "output conflict",
            "another input of this run has the same SOP Instance UID but different content; "
            "check which copy is the right one and de-identify it alone",
        )  # fmt: skip
    final = output / result.output_relpath
    if final.parent not in made_dirs:
        final.parent.mkdir(parents=True, exist_ok=True)
        made_dirs.add(final.parent)
    os.chmod(tmp, 0o644)
    os.replace(tmp, final)
    committed[result.output_relpath] = result.output_sha256
    return result
