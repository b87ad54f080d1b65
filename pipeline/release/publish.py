"""Publishing a release version: ``release/<version>/``, complete and immutable, or nothing.

A version is built in ``release/.building-<random>/``: every data file
hard-linked there (from the previous version when its bytes are unchanged,
else from the staged file the runner wrote; copied where the file system
refuses a link), the manifests written and checked against their contract,
``datapackage.json``, the dataset card, the changelog and ``SHA256SUMS``;
then every file is made read-only (0444) and every folder 0555, the file
system is synced (``syncfs``: every file and folder of the build is durable
in one call, as the runner makes its batches durable), and the folder is
renamed to ``release/<version>`` in one ``rename``.  A crash before the
rename leaves no version, only a ``.building-*`` folder that the next
publish removes; an existing version is never written again.

A publish whose files, as the manifest would describe them, equal the latest
version's publishes nothing.  A file whose bytes are those of the previous
version keeps its manifest row as it was (its rule-set version, its split),
so a run that made no new file, or a rule change that changed no byte, is no
new version.

Nothing of the staged locations reaches the release: rows and messages name
files by their path inside the version, and the input's content hash
(``item``) is returned to the caller, never written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import RunLocked, StorageError
from pipeline.keys import SecretKey
from pipeline.read.content import file_sha256
from pipeline.release.areas import DataArea
from pipeline.release.card import CARD_NAME, render_card
from pipeline.release.changelog import CHANGELOG_NAME, Changes, changelog, compare, entry
from pipeline.release.checksums import SUMS_NAME, write_sums
from pipeline.release.datapackage import package_descriptor, write_datapackage
from pipeline.release.errors import ReleaseError, StagedFileChanged, StagedFileError
from pipeline.release.headers import read_facts
from pipeline.release.manifest import (
    MANIFEST_FOLDER,
    PARQUET_NAME,
    ManifestRow,
    manifest_row,
    read_manifest,
    write_manifests,
)
from pipeline.release.splits import Split, SplitRatios, assign_splits
from pipeline.release.versions import (
    BUILDING_PREFIX,
    latest_version,
    next_version,
    remove_stale_builds,
    remove_tree,
)
from pipeline.storage import OWN_ERRNOS, fsync_folder, sync_filesystem

LOCK_NAME = ".publish.lock"
FILE_MODE = 0o444
FOLDER_MODE = 0o555
# What link() says when the file system will not link these two paths: copy instead.
_LINK_REFUSED = frozenset(
    {errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}
)
_PATH_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class Publishable:
    """One file that should be in the new version.

    Parameters
    ----------
    staged : Path
        The de-identified file as the runner wrote it (or the previous
        version's copy of it); read, never named in the release.
    area : DataArea
        Its folder in the version.
    relpath : str
        Its path inside the area: the runner's pseudonymous
        ``<subject>/<study>/<series>/...`` folders.
    subject : str
        The subject's pseudonym (the first folder of ``relpath``).
    item : str
        The input's content SHA-256: handed back in :class:`ReleasedFileRow`
        for the catalog, never written into the release.
    """

    staged: Path
    area: DataArea
    relpath: str
    subject: str
    item: str


@dataclass(frozen=True)
class ReleasedFileRow:
    """A file of a published version: its path inside the version and what it came from."""

    relpath: str
    sha256: str
    size: int
    item: str
    subject: str


@dataclass(frozen=True)
class PublishResult:
    """A version just published and what changed from the one before.

    ``removed`` counts every file of the previous version that is gone
    (those of withdrawn subjects included); ``withdrawn_subjects`` the
    previous version's subjects withdrawn since.
    """

    version: str
    path: Path
    added: int
    changed: int
    removed: int
    withdrawn_subjects: int
    files: tuple[ReleasedFileRow, ...]


@dataclass(frozen=True)
class _Plan:
    """How one file gets into the version being built."""

    file: Publishable
    relpath: str  # inside the version: <area>/<relpath>
    source: Path  # what is linked: the previous version's file or the staged file
    previous: ManifestRow | None  # its row, kept as it is, when the bytes are unchanged
    sha256: str
    size: int
    identity: tuple[int, int, int, int] | None  # the staged file as hashed (dev, ino, size, mtime)


def publish(
    release_root: Path,
    files: Sequence[Publishable],
    *,
    key: SecretKey,
    ratios: SplitRatios,
    ruleset_version: str,
    withdrawn: AbstractSet[str] = frozenset(),
    dataset_name: str = "mricurate release",
) -> PublishResult | None:
    """Publish ``files`` as the next version under ``release_root``, or nothing if nothing changed.

    Parameters
    ----------
    files : sequence of Publishable
        Everything the new version should hold: the previous version's files
        that remain and the newly approved ones (the complete set).
    key, ratios :
        Split new subjects (:func:`~pipeline.release.splits.split_of`); a
        subject already released keeps its split.
    ruleset_version : str
        Recorded for every file whose bytes are new in this version.
    withdrawn : set of str
        Subject pseudonyms whose consent was revoked: their files are left
        out, and the changelog counts them without naming them.

    Returns
    -------
    PublishResult or None
        ``None`` when the new version would equal the latest one (and when
        there is nothing at all to publish); nothing is written then.

    Raises
    ------
    ContractViolation
        A manifest breaks ``data_contracts/manifest.schema.json``.
    ReleaseError
        A staged file is missing, unreadable or changed while being released.
    RunLocked
        Another publish holds ``release_root``.
    StorageError
        ``release_root`` is full or read-only.
    """
    _check(files)
    if not ruleset_version:
        raise ValueError("ruleset_version is empty: pass the digest of the rule files in use")
    with _writing(release_root):
        release_root.mkdir(parents=True, exist_ok=True)
    with _publish_lock(release_root), _writing(release_root):
        remove_stale_builds(release_root)
        previous = latest_version(release_root)
        previous_dir = release_root / previous if previous else None
        before = _rows_of(previous_dir)
        kept = sorted(
            (f for f in files if f.subject not in withdrawn),
            key=lambda f: (f.area.value, f.relpath),
        )
        plans = [_plan(f, previous_dir, before) for f in kept]
        if _unchanged(plans, before, previous):
            return None
        splits = assign_splits(
            {f.subject for f in kept}, key, ratios, earlier=_earlier_splits(before)
        )
        version = next_version(release_root)
        building = release_root / f"{BUILDING_PREFIX}{secrets.token_hex(8)}"
        building.mkdir(mode=0o700)
        try:
            rows = _place_all(building, plans, splits, ruleset_version)
            changes = compare(previous, before, rows, withdrawn)
            _write_metadata(
                building, version, rows, changes, ratios, dataset_name, previous_dir=previous_dir
            )
            _seal(building)
            sync_filesystem(building)
            os.rename(building, release_root / version)
        except BaseException:
            with contextlib.suppress(OSError):
                remove_tree(building)
            raise
        fsync_folder(release_root)
    items = {f"{p.file.area.value}/{p.file.relpath}": p.file.item for p in plans}
    return PublishResult(
        version=version,
        path=release_root / version,
        added=len(changes.added),
        changed=len(changes.changed),
        removed=len(changes.removed),
        withdrawn_subjects=changes.withdrawn_subjects,
        files=tuple(
            ReleasedFileRow(
                relpath=row.relpath,
                sha256=row.sha256,
                size=row.size_bytes,
                item=items[row.relpath],
                subject=row.subject,
            )
            for row in sorted(rows, key=lambda r: r.relpath)
        ),
    )


def _check(files: Sequence[Publishable]) -> None:
    """Refuse paths that are not the runner's pseudonymous layout, and duplicates.

    A bad path is named by its input's opaque key only: it may hold anything.
    """
    seen: set[tuple[DataArea, str]] = set()
    for file in files:
        parts = file.relpath.split("/")
        if not all(_PATH_PART.fullmatch(part) for part in parts) or len(parts) < 2:
            raise ValueError(
                f"input {file.item[:12]}: its release path is not <subject>/.../<file> made of "
                "letters, digits and ._- (the runner's pseudonymous layout); nothing was published"
            )
        if parts[0] != file.subject:
            raise ValueError(
                f"input {file.item[:12]}: its release path does not start with its subject's "
                "pseudonym; nothing was published"
            )
        if (file.area, file.relpath) in seen:
            raise ValueError(
                f"{file.area.value}/{file.relpath} is given twice; nothing was published"
            )
        seen.add((file.area, file.relpath))


def _rows_of(version: Path | None) -> dict[str, ManifestRow]:
    """The previous version's manifest rows by path (none before the first version)."""
    if version is None:
        return {}
    manifest = version / MANIFEST_FOLDER / PARQUET_NAME
    if not manifest.is_file():
        raise ReleaseError(
            f"{version.name}/{MANIFEST_FOLDER}/{PARQUET_NAME} is missing: that version was "
            "altered after it was published; restore it from a copy (check it with "
            f"sha256sum -c {SUMS_NAME}) before publishing again"
        )
    return {row.relpath: row for row in read_manifest(manifest)}


def _plan(file: Publishable, previous: Path | None, before: Mapping[str, ManifestRow]) -> _Plan:
    relpath = f"{file.area.value}/{file.relpath}"
    prior = before.get(relpath)
    old = previous / relpath if previous is not None and prior is not None else None
    try:
        info = os.stat(file.staged)
    except OSError as exc:
        raise StagedFileError(relpath, exc.strerror or type(exc).__name__) from None
    if not stat.S_ISREG(info.st_mode):
        raise StagedFileError(relpath, "not a regular file")
    if old is not None and prior is not None and _same_file(info, old):
        # The previous version's own file: immutable, so its row still holds.
        return _Plan(file, relpath, old, prior, prior.sha256, prior.size_bytes, None)
    try:
        sha = file_sha256(file.staged)
        after = os.stat(file.staged)
    except OSError as exc:
        raise StagedFileError(relpath, exc.strerror or type(exc).__name__) from None
    if _identity(after) != _identity(info):
        raise StagedFileChanged(relpath)
    if old is not None and prior is not None and prior.sha256 == sha:
        return _Plan(file, relpath, old, prior, sha, prior.size_bytes, None)
    return _Plan(file, relpath, file.staged, None, sha, info.st_size, _identity(info))


def _unchanged(
    plans: Sequence[_Plan], before: Mapping[str, ManifestRow], previous: str | None
) -> bool:
    """Would the new version's manifest be the latest one's (or is there nothing at all)?"""
    if previous is None:
        return not plans
    return (
        all(p.previous is not None for p in plans) and {p.relpath for p in plans} == before.keys()
    )


def _earlier_splits(before: Mapping[str, ManifestRow]) -> dict[str, Split]:
    """The split each subject of the previous version was released in."""
    known: dict[str, Split] = {}
    for row in before.values():
        known.setdefault(row.subject, row.split)
    return known


def _place_all(
    building: Path, plans: Sequence[_Plan], splits: Mapping[str, Split], ruleset_version: str
) -> list[ManifestRow]:
    for area in DataArea:
        (building / area.value).mkdir()
    rows = []
    for plan in plans:
        target = building / plan.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        _place(plan, target)
        if plan.previous is not None:
            rows.append(plan.previous)
            continue
        facts = read_facts(target, plan.file.area, plan.relpath)
        rows.append(
            manifest_row(
                plan.file.area,
                plan.file.relpath,
                plan.file.subject,
                facts,
                split=splits[plan.file.subject],
                size_bytes=plan.size,
                sha256=plan.sha256,
                ruleset_version=ruleset_version,
            )
        )
    return rows


def _place(plan: _Plan, target: Path) -> None:
    """Hard-link ``plan.source`` to ``target`` (read-only), or copy it where linking is refused."""
    try:
        os.link(plan.source, target)
    except OSError as exc:
        if exc.errno not in _LINK_REFUSED:
            raise
        _copy(plan, target)
        return
    if plan.identity is not None and _identity(os.stat(target)) != plan.identity:
        raise StagedFileChanged(plan.relpath)  # replaced between hashing and linking
    try:
        os.chmod(target, FILE_MODE)
    except PermissionError:
        # Another user's file: linked, it would stay theirs to change. Take a copy.
        target.unlink()
        _copy(plan, target)


def _copy(plan: _Plan, target: Path) -> None:
    """Copy the bytes of ``plan.source``, checking them against the hash they were planned with."""
    digest = hashlib.sha256()
    with plan.source.open("rb") as source, target.open("xb") as copy:
        while block := source.read(_BLOCK):
            digest.update(block)
            copy.write(block)
        copy.flush()
        os.fsync(copy.fileno())
    if digest.hexdigest() != plan.sha256:
        raise StagedFileChanged(plan.relpath)
    os.chmod(target, FILE_MODE)


def _write_metadata(
    building: Path,
    version: str,
    rows: Sequence[ManifestRow],
    changes: Changes,
    ratios: SplitRatios,
    dataset_name: str,
    *,
    previous_dir: Path | None,
) -> None:
    """Manifests (validated), data package, card, changelog, and last SHA256SUMS over them all."""
    now = dt.datetime.now(dt.UTC)
    manifests = building / MANIFEST_FOLDER
    manifests.mkdir()
    tables = list(write_manifests(manifests, rows))
    package = write_datapackage(
        building,
        package_descriptor(title=dataset_name, version_name=version, created=now, tables=tables),
    )
    card = building / CARD_NAME
    card.write_text(
        render_card(
            dataset_name=dataset_name, version=version, day=now.date(), rows=rows, ratios=ratios
        ),
        encoding="utf-8",
    )
    earlier = previous_dir / CHANGELOG_NAME if previous_dir is not None else None
    history = earlier.read_text(encoding="utf-8") if earlier and earlier.is_file() else None
    log = building / CHANGELOG_NAME
    log.write_text(changelog(entry(version, now.date(), changes, rows), history), encoding="utf-8")
    digests = {row.relpath: row.sha256 for row in rows}
    for path in (*tables, package, card, log):
        digests[path.relative_to(building).as_posix()] = file_sha256(path)
    write_sums(building, digests)


def _seal(building: Path) -> None:
    """Every file 0444, every folder 0555 (deepest first, so each can still be entered)."""
    for folder, subfolders, names in os.walk(building, topdown=False):
        for name in names:
            path = os.path.join(folder, name)
            if stat.S_IMODE(os.lstat(path).st_mode) != FILE_MODE:
                os.chmod(path, FILE_MODE)
        for name in subfolders:
            os.chmod(os.path.join(folder, name), FOLDER_MODE)
    os.chmod(building, FOLDER_MODE)


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def _same_file(info: os.stat_result, other: Path) -> bool:
    try:
        theirs = os.stat(other)
    except FileNotFoundError:
        return False
    return (info.st_dev, info.st_ino) == (theirs.st_dev, theirs.st_ino)


@contextlib.contextmanager
def _publish_lock(release_root: Path) -> Iterator[None]:
    """One publish at a time on ``release_root`` (the kernel drops it when the process ends)."""
    fd = os.open(release_root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(
                f"{release_root} is being published by another process; wait for it to "
                "finish, then publish again"
            ) from None
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _writing(release_root: Path) -> Iterator[None]:
    """A full or read-only release location is a StorageError (a run failure, no file blamed)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in OWN_ERRNOS:
            raise StorageError("the release location", release_root, exc) from None
        raise
