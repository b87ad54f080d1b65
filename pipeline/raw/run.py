"""Convert a whole folder of raw data: discover, fan out to workers, commit, account.

Each input (a Siemens twix file, or an ISMRMRD/HDF5 file from another
converter) is converted by a worker into temporary files beside the release;
only this process renames them onto their final names, all measurements of
an input together or none.  An interrupted run leaves only temp names, which
the next run removes.  Every input ends in exactly one outcome (written,
duplicate, held back, quarantined) recorded with its reason in the private
store; quarantined and held-back inputs are copied there too.

The header is anonymized by conversion: the protocol becomes a full ISMRMRD
header, which passes through the allowlist in ``rules/ismrmrd/header.yaml``
and is validated against the ISMRMRD XSD before anything is written.  The
subject's pseudonym, date shift and UID map are the DICOM side's, so one key
links a subject's raw and DICOM data in the release.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from itertools import count
from pathlib import Path

from pipeline.atomic import TEMP_PREFIX, remove_stale_temps
from pipeline.dicom.run import check_locations
from pipeline.errors import CurationError, HeldBack, InputError, UnreadableInput
from pipeline.identity.links import LinkRecord
from pipeline.identity.subjects import subject_day_offset, subject_pseudonym
from pipeline.identity.uids import UidMapper
from pipeline.keys import SecretKey
from pipeline.private_store import PrivateStore
from pipeline.raw.blocks import AcquisitionBlock, WaveformBlock
from pipeline.raw.fastmri import FastmriUnsupported, export_fastmri
from pipeline.raw.header_rules import HeaderContext, HeaderRules, anonymize_header
from pipeline.raw.ismrmrd_in import is_ismrmrd_file, ismrmrd_blocks, ismrmrd_groups, noise_only
from pipeline.raw.ismrmrd_out import write_ismrmrd
from pipeline.raw.protocol import ismrmrd_header, parse_protocol, subject_hints
from pipeline.raw.subject_lookup import RawIdentity, SubjectLookup, SubjectMatch, SubjectSource
from pipeline.raw.twix import measurement_blocks, open_twix
from pipeline.raw.xsd import validate_header
from pipeline.read.content import opaque_key
from pipeline.read.discover import discover
from pipeline.reasons import Outcome
from pipeline.stall import StallWatchdog, stalled_inputs

_HASH_BLOCK = 1 << 20
# A block of readouts takes well under a second; ten minutes without one is a
# file that keeps the reader busy, not slow storage.
DEFAULT_STALL_SECONDS = 600.0
_TEMP_NUMBERS = count()


@dataclass(frozen=True)
class ConvertedMeasurement:
    """One measurement written to temporary files, waiting to be committed."""

    relpath: str
    temp_path: Path
    link: LinkRecord
    acquisitions: int
    waveforms: int
    noise: bool
    fastmri_relpath: str | None = None
    fastmri_temp: Path | None = None
    fastmri_skipped: str = ""  # why an image measurement has no fastMRI file (PHI-free)


@dataclass(frozen=True)
class ConversionResult:
    """What happened to one raw input."""

    input_path: Path
    sha256: str
    outcome: Outcome
    reason: str = ""
    detail: str = ""
    kind: str = ""  # "twix VB", "twix VD", "ismrmrd"
    subject_source: str = ""
    measurements: tuple[ConvertedMeasurement, ...] = ()

    def discard_temps(self) -> None:
        _discard(self.measurements)


@dataclass(frozen=True)
class ConvertSummary:
    """PHI-free account of a run: counts, and opaque input keys per reason."""

    run_id: str
    seen: int
    outcomes: dict[str, int]
    reasons: dict[str, list[str]]  # reason -> opaque input keys (sha256 prefixes)
    measurements: int = 0
    noise_measurements: int = 0
    acquisitions: int = 0
    fastmri_files: int = 0
    fastmri_skipped: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    subject_sources: dict[str, int] = field(default_factory=dict)

    @property
    def written(self) -> int:
        return self.outcomes.get(Outcome.WRITTEN.value, 0)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class _Settings:
    """What each worker needs, set once per process."""

    key_material: bytes
    rules: HeaderRules
    span: tuple[int, int]
    output: Path
    fastmri: Path | None
    private_root: Path
    mapping: dict[str, tuple[str, str]]
    stall_seconds: float = 0.0  # 0: no watchdog


@dataclass
class _Worker:
    settings: _Settings
    key: SecretKey
    uids: UidMapper
    lookup: SubjectLookup
    watchdog: StallWatchdog | None = None


_worker: _Worker | None = None


def _init_worker(settings: _Settings) -> None:
    global _worker
    key = SecretKey(settings.key_material)
    lookup = SubjectLookup(PrivateStore(settings.private_root), settings.mapping)
    watchdog = (
        StallWatchdog(settings.stall_seconds, _markers(settings.private_root))
        if settings.stall_seconds > 0
        else None
    )
    _worker = _Worker(settings, key, UidMapper(key), lookup, watchdog)


def _markers(private_root: Path) -> Path:
    return private_root / "stalled"


def _discard(measurements: Iterable[ConvertedMeasurement]) -> None:
    """Remove the temp files of measurements that will not be committed."""
    for m in measurements:
        m.temp_path.unlink(missing_ok=True)
        if m.fastmri_temp is not None:
            m.fastmri_temp.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file read in 1 MiB blocks (raw files do not fit in memory)."""
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _temp(folder: Path) -> Path:
    return folder / f"{TEMP_PREFIX}{os.getpid()}-{next(_TEMP_NUMBERS)}.h5"


Blocks = Iterator[AcquisitionBlock | WaveformBlock]


@dataclass(frozen=True)
class _Plan:
    """One measurement of an input before conversion: its full header (PHI) and data."""

    index: int
    header: str
    noise: bool
    blocks: Callable[[], Blocks]  # opened only when the measurement is written


def _identity(header: str) -> RawIdentity:
    hints = subject_hints(header)
    return RawIdentity(
        patient_id=hints.patient_id or "",
        study_uid=hints.study_uid or "",
        frame_of_reference_uid=hints.frame_of_reference_uid or "",
        measurement_id=hints.measurement_id or "",
        study_id=hints.study_id or "",
    )


def _convert(path: Path) -> ConversionResult:
    """Convert one input in a worker; never raises for bad input."""
    if not path.is_file():
        return ConversionResult(
            path, "", Outcome.QUARANTINED, "not a regular file",
            "a FIFO, socket, device, dangling link or unlistable folder: nothing to read",
        )  # fmt: skip
    state = _worker
    assert state is not None, "_init_worker sets up every worker before it works"
    # The input's SHA-256 (its opaque key, the seed of its output names) is
    # computed on the other core while this one converts: a raw file is read
    # twice either way, but the hash no longer adds to the wall time.
    if state.watchdog is not None:
        state.watchdog.start(str(path))
    with ThreadPoolExecutor(1) as hasher:
        digest = hasher.submit(file_sha256, path)
        try:
            result = _convert_with(state, path, digest)
        except OSError as exc:
            result = ConversionResult(
                path, "", Outcome.QUARANTINED, "unreadable (I/O error)", type(exc).__name__
            )
        except Exception as exc:
            # A reader library failing in a way nobody foresaw must not stop the
            # run: the input is kept in quarantine and the others go on.  The
            # detail (private store only) says what to report.
            result = ConversionResult(
                path, "", Outcome.QUARANTINED, "conversion failed (internal error)",
                f"{type(exc).__name__}: {exc}"[:500] + "; the input is kept in quarantine: "
                "report this as a bug with the error type, not the file",
            )  # fmt: skip
        if state.watchdog is not None:
            state.watchdog.stop()
        if result.outcome is not Outcome.QUARANTINED or result.sha256:
            return result
        try:  # quarantined before the hash was needed: it names the quarantined copy
            return replace(result, sha256=digest.result())
        except OSError as exc:
            return replace(result, reason="unreadable (I/O error)", detail=type(exc).__name__)


def _convert_with(state: _Worker, path: Path, digest: Future[str]) -> ConversionResult:
    written: list[ConvertedMeasurement] = []
    kind = ""
    try:
        if is_ismrmrd_file(path):
            kind = "ismrmrd"
            # One plan per dataset group: a converter may write each measurement
            # (its noise scan too) as a group of its own.
            plans = [
                _Plan(index, group.xml, noise_only(group), partial(ismrmrd_blocks, group))
                for index, group in enumerate(ismrmrd_groups(path))
            ]
        else:
            twix = open_twix(path)
            kind = f"twix {twix.version}"
            plans = [
                _Plan(
                    meas.index,
                    ismrmrd_header(
                        parse_protocol(meas.header_bytes),
                        noise=meas.is_noise,
                        waveforms=meas.syncdata > 0,
                    ),
                    meas.is_noise,
                    partial(measurement_blocks, twix, meas),
                )
                for meas in twix.measurements
            ]
        if not plans:
            raise UnreadableInput("the file holds no measurement: nothing to convert")
        identities = [_identity(plan.header) for plan in plans]
        match = _subject_of(state, identities, digest.result)
        for plan, identity in zip(plans, identities, strict=True):
            written.append(_write_measurement(state, digest, plan, identity, match))
    except InputError as exc:
        _discard(written)
        outcome = Outcome.HELD_BACK if isinstance(exc, HeldBack) else Outcome.QUARANTINED
        sha = digest.result() if outcome is Outcome.HELD_BACK else ""
        return ConversionResult(path, sha, outcome, exc.reason, exc.detail, kind)
    except BaseException:
        _discard(written)
        raise
    return ConversionResult(
        path, digest.result(), Outcome.WRITTEN, kind=kind, subject_source=match.source.value,
        measurements=tuple(written),
    )  # fmt: skip


def _subject_of(
    state: _Worker, identities: list[RawIdentity], sha: Callable[[], str]
) -> SubjectMatch:
    """One subject for all measurements of an input (they were one session)."""
    matches = {state.lookup.find(identity, sha) for identity in identities}
    subjects = {m.subject for m in matches}
    if len(subjects) > 1:
        raise UnreadableInput(
            "the measurements of this file name different subjects; split the file or "
            "convert its measurements separately"
        )
    # Prefer the strongest evidence when measurements found it differently.
    order = list(SubjectSource)
    return min(matches, key=lambda m: order.index(m.source))


def _write_measurement(
    state: _Worker, digest: Future[str], plan: _Plan, identity: RawIdentity, match: SubjectMatch
) -> ConvertedMeasurement:
    """Anonymize, validate and write one measurement (and its fastMRI file) to temp names."""
    settings, key = state.settings, state.key
    header, noise, index = plan.header, plan.noise, plan.index
    pseudonym = subject_pseudonym(key, match.subject)
    days = subject_day_offset(key, match.subject, settings.span)
    anonymous = anonymize_header(
        header, settings.rules, HeaderContext(key, pseudonym, days, state.uids)
    )
    validate_header(anonymous)
    temp = _temp(settings.output)
    stats = write_ismrmrd(temp, anonymous, _progressing(plan.blocks(), state.watchdog))
    fastmri_temp = None
    fastmri_skipped = ""
    if settings.fastmri is not None and not noise:
        fastmri_temp = _temp(settings.fastmri)
        try:
            export_fastmri(temp, fastmri_temp)
        except FastmriUnsupported as exc:
            # A valid measurement (undersampled, non-Cartesian, ...) is still
            # released as ISMRMRD; it only has no training file.
            fastmri_temp = None
            fastmri_skipped = exc.detail
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    # Names come last: they need the input's hash, computed meanwhile.
    try:
        sha = digest.result()
    except BaseException:
        temp.unlink(missing_ok=True)
        if fastmri_temp is not None:
            fastmri_temp.unlink(missing_ok=True)
        raise
    # The DICOM side names study folders by the Study Instance UID: raw data that
    # carries one lands beside its images.  Twix has none, but its study ID (the
    # exam's LOID) still groups the measurements of one exam.
    study_source = identity.study_uid or (f"id:{identity.study_id}" if identity.study_id else "")
    study = key.pseudonym("study", study_source or f"raw:{sha}", prefix="ST-")
    name = key.pseudonym("measurement", f"{sha}#{index}", prefix="MEAS-")
    relpath = f"{pseudonym}/{study}/{name}{'-noise' if noise else ''}.h5"
    fastmri_relpath = f"{pseudonym}/{study}/{name}.h5" if fastmri_temp is not None else None
    link = LinkRecord(
        patient_id=match.patient_id or identity.patient_id,
        issuer=match.issuer,
        patient_name="",
        subject=match.subject,
        day_offset=days,
        study_uid=identity.study_uid,
        new_study_uid=state.uids.remap(identity.study_uid) if identity.study_uid else "",
        series_uid="",
        new_series_uid="",
        sop_uid=identity.measurement_id,
        new_sop_uid="",
        frame_of_reference_uid=identity.frame_of_reference_uid,
    )
    return ConvertedMeasurement(
        relpath, temp, link, stats.acquisitions, stats.waveforms, noise, fastmri_relpath,
        fastmri_temp, fastmri_skipped,
    )  # fmt: skip


def _progressing(blocks: Blocks, watchdog: StallWatchdog | None) -> Blocks:
    """Tell the watchdog about every block read: a stalled read is one that yields none."""
    for block in blocks:
        if watchdog is not None:
            watchdog.progress()
        yield block


def _results(paths: list[Path], jobs: int, settings: _Settings) -> Iterator[ConversionResult]:
    """Convert in worker processes; a worker stopped by its watchdog costs only its input.

    When a pool breaks (a worker ended by its stall watchdog, or killed by
    the system), finished results are kept, the stalled inputs are
    quarantined, and the unfinished rest runs again in a new pool.
    """
    pending = list(paths)
    while pending:
        with ProcessPoolExecutor(
            max(1, jobs), initializer=_init_worker, initargs=(settings,)
        ) as pool:
            futures = [(path, pool.submit(_convert, path)) for path in pending]
            pending = []
            broken = False
            for path, future in futures:
                try:
                    yield future.result()
                except BrokenProcessPool:
                    broken = True
                    pending.append(path)
            if not broken:
                return
        stalled = {Path(label) for label in stalled_inputs(_markers(settings.private_root))}
        if not stalled:
            # Killed from outside (out of memory, a signal): the first unfinished
            # input is the likeliest cause; it is set aside so the run ends.
            stalled = {pending[0]}
        for path in stalled:
            yield _stalled(path, settings.stall_seconds)
        pending = [p for p in pending if p not in stalled]


def _stalled(path: Path, limit: float) -> ConversionResult:
    try:
        sha = file_sha256(path)
    except OSError:
        sha = ""
    return ConversionResult(
        path, sha, Outcome.QUARANTINED, "conversion stalled",
        f"its worker made no progress for {limit:g} s (or was killed) and was stopped: a damaged "
        "file can keep the HDF5 library busy forever; check the file, or raise --stall-seconds "
        "for very slow storage",
    )  # fmt: skip


def convert_tree(
    source: Path,
    output: Path,
    key: SecretKey,
    private: PrivateStore,
    rules: HeaderRules,
    *,
    date_shift_days: tuple[int, int],
    subjects: dict[str, tuple[str, str]] | None = None,
    fastmri: Path | None = None,
    jobs: int = 1,
    stall_seconds: float = DEFAULT_STALL_SECONDS,
) -> ConvertSummary:
    """Convert every raw file under ``source`` into anonymized ISMRMRD under ``output``.

    Parameters
    ----------
    date_shift_days : (int, int)
        The DICOM profile's shift range: the same range gives a subject the
        same shift on both sides.
    subjects : dict, optional
        ``--subjects``: raw file SHA-256 or measurement ID → (patient ID, issuer).
    fastmri : Path, optional
        Also write fastMRI-layout training files for each image measurement.
    stall_seconds : float, optional
        An input whose conversion makes no progress (no block read) for this
        long is quarantined and its worker stopped (see :mod:`pipeline.stall`).
    """
    check_locations(source, output, private.root)
    if fastmri is not None:
        check_locations(source, fastmri, private.root)
    output.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(output)
    if fastmri is not None:
        fastmri.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(fastmri)
    paths = discover(source.resolve())
    stalled_inputs(_markers(private.root))  # left by a run that was cut off
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]
    private.start_run(
        run_id, dt.datetime.now(dt.UTC).isoformat(), "convert",
        source=str(source.resolve()), output=str(output.resolve()),
        profile=f"ismrmrd header rules {rules.name}", profile_digest=rules.digest,
        key_fingerprint=key.fingerprint,
    )  # fmt: skip
    settings = _Settings(
        key.material, rules, date_shift_days, output, fastmri, private.root,
        dict(subjects or {}), stall_seconds,
    )  # fmt: skip
    outcomes: Counter[str] = Counter()
    reasons: defaultdict[str, list[str]] = defaultdict(list)
    kinds: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    seen_inputs: set[str] = set()
    made_dirs: set[Path] = set()

    for result in _results(paths, jobs, settings):
        if result.outcome is Outcome.WRITTEN and result.sha256 in seen_inputs:
            result.discard_temps()
            result = ConversionResult(
                result.input_path, result.sha256, Outcome.DUPLICATE,
                "duplicate of another input (same content)", kind=result.kind,
            )  # fmt: skip
        if result.outcome is Outcome.WRITTEN:
            _commit(result, output, fastmri, made_dirs)
            seen_inputs.add(result.sha256)
            sources[result.subject_source] += 1
            for m in result.measurements:
                totals["measurements"] += 1
                totals["noise"] += m.noise
                totals["acquisitions"] += m.acquisitions
                totals["fastmri"] += m.fastmri_relpath is not None
                totals["fastmri_skipped"] += bool(m.fastmri_skipped)
        elif result.outcome in (Outcome.QUARANTINED, Outcome.HELD_BACK) and result.sha256:
            private.quarantine_file(result.input_path, result.sha256, result.reason, result.detail)
        outcomes[result.outcome.value] += 1
        if result.kind:
            kinds[result.kind] += 1
        if result.reason:
            reasons[result.reason].append(opaque_key(result.sha256, result.input_path))
        _record(private, run_id, result)
    # Temp files of workers that were stopped (or stopped with them) are orphans.
    remove_stale_temps(output)
    if fastmri is not None:
        remove_stale_temps(fastmri)
    summary = ConvertSummary(
        run_id, len(paths), dict(outcomes), dict(reasons),
        measurements=totals["measurements"], noise_measurements=totals["noise"],
        acquisitions=totals["acquisitions"], fastmri_files=totals["fastmri"],
        fastmri_skipped=totals["fastmri_skipped"],
        kinds=dict(kinds), subject_sources=dict(sources),
    )  # fmt: skip
    private.finish_run(run_id, dt.datetime.now(dt.UTC).isoformat(), summary.as_dict())
    return summary


def _commit(
    result: ConversionResult, output: Path, fastmri: Path | None, made_dirs: set[Path]
) -> None:
    """Rename an input's temp files into place (their writers made them durable)."""
    for m in result.measurements:
        pairs = [(m.temp_path, output / m.relpath)]
        if m.fastmri_temp is not None and m.fastmri_relpath is not None and fastmri is not None:
            pairs.append((m.fastmri_temp, fastmri / m.fastmri_relpath))
        for temp, final in pairs:
            if final.parent not in made_dirs:
                final.parent.mkdir(parents=True, exist_ok=True)
                made_dirs.add(final.parent)
            os.chmod(temp, 0o644)
            os.replace(temp, final)


def _record(private: PrivateStore, run_id: str, result: ConversionResult) -> None:
    outputs = ";".join(m.relpath for m in result.measurements)
    row = (
        str(result.input_path), result.sha256, result.outcome.value, result.reason,
        result.detail, outputs,
    )  # fmt: skip
    links = [(f"{result.sha256}#{i}", m.relpath, m.link) for i, m in enumerate(result.measurements)]
    private.record_inputs(run_id, [row], links if result.outcome is Outcome.WRITTEN else [])


def export_fastmri_tree(source: Path, output: Path) -> tuple[int, int, list[tuple[str, str]]]:
    """Write a fastMRI-layout file for every image measurement of a ``convert`` OUTPUT.

    Noise measurements (``*-noise.h5``) are skipped.  The inputs are our own
    anonymized files, so paths and reasons here hold no PHI.

    Returns
    -------
    (written, skipped, failed)
        ``failed`` lists (relative path, reason) of files that could not be exported.
    """
    if not source.is_dir():
        raise CurationError(f"SOURCE {source} is not a folder written by 'mricurate convert'")
    if output.resolve().is_relative_to(source.resolve()):
        raise CurationError(f"OUTPUT {output} must not be inside SOURCE {source}")
    output.mkdir(parents=True, exist_ok=True)
    written = skipped = 0
    failed: list[tuple[str, str]] = []
    for path in sorted(source.rglob("*.h5")):
        relpath = path.relative_to(source).as_posix()
        if path.name.startswith(TEMP_PREFIX):
            continue
        if path.stem.endswith("-noise"):
            skipped += 1
            continue
        target = output / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            export_fastmri(path, target)
        except InputError as exc:
            failed.append((relpath, f"{exc.reason}: {exc.detail}"))
            continue
        written += 1
    return written, skipped, failed
