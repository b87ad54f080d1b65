"""Publishing versions: whole or not at all, immutable, nothing new publishes nothing."""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.errors import RunLocked
from pipeline.release import (
    ContractViolation,
    DataArea,
    Publishable,
    PublishResult,
    ReleaseError,
    Split,
    SplitRatios,
    latest_version,
    publish,
)
from pipeline.release.manifest import ManifestRow, read_manifest
from pipeline.release.publish import LOCK_NAME
from tests.release.conftest import RATIOS, Staged

REPO = Path(__file__).resolve().parents[2]
# The module (``pipeline.release.publish`` as an attribute is the function it exports).
PUBLISHING = importlib.import_module("pipeline.release.publish")


def release(
    root: Path,
    staged: Staged,
    files: Sequence[Publishable] | None = None,
    *,
    ratios: SplitRatios = RATIOS,
    ruleset_version: str = "rules-1",
    withdrawn: AbstractSet[str] = frozenset(),
) -> PublishResult | None:
    """Publish ``files`` (all staged files by default) under the session's key."""
    return publish(
        root,
        staged.files if files is None else files,
        key=staged.key,
        ratios=ratios,
        ruleset_version=ruleset_version,
        withdrawn=withdrawn,
    )


def snapshot(version: Path) -> dict[str, tuple[str, int, int]]:
    """Every file of a version: SHA-256, mode and inode (proof it was never touched)."""
    return {
        p.relative_to(version).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            stat.S_IMODE(p.stat().st_mode),
            p.stat().st_ino,
        )
        for p in sorted(version.rglob("*"))
        if p.is_file()
    }


def sha256sum_check(version: Path) -> None:
    done = subprocess.run(
        ["sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS"],
        cwd=version,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def rows_by_path(version: Path) -> dict[str, ManifestRow]:
    return {r.relpath: r for r in read_manifest(version / "manifests" / "files.parquet")}


def test_first_version_holds_every_file_read_only(tmp_path: Path, staged: Staged) -> None:
    result = release(tmp_path, staged)
    assert result is not None
    assert (result.version, result.path) == ("v0001", tmp_path / "v0001")
    assert (result.added, result.changed, result.removed) == (len(staged.files), 0, 0)
    assert latest_version(tmp_path) == "v0001"
    version = result.path
    for f in staged.files:
        placed = version / f.area.value / f.relpath
        assert placed.read_bytes() == f.staged.read_bytes()
    expected = {f"{f.area.value}/{f.relpath}" for f in staged.files}
    assert {r.relpath for r in result.files} == expected == set(rows_by_path(version))
    assert {r.item for r in result.files} == {f.item for f in staged.files}
    names = {p.name for p in version.iterdir()}
    assert names == {"dicom", "raw", "fastmri", "manifests", "datapackage.json", "SHA256SUMS",
                     "README.md", "CHANGELOG.md"}  # fmt: skip
    for path in [version, *version.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o555 if path.is_dir() else 0o444), path
    sums = (version / "SHA256SUMS").read_text().splitlines()
    files = {p.relative_to(version).as_posix() for p in version.rglob("*") if p.is_file()}
    assert {line.split("  ", 1)[1] for line in sums} == files - {"SHA256SUMS"}
    sha256sum_check(version)
    assert not list(tmp_path.glob(".building-*"))
    # The input's content hash is handed back, never written into the release.
    text = b"".join(p.read_bytes() for p in version.rglob("*") if p.is_file())
    assert not any(f.item.encode() in text for f in staged.files)


def test_the_same_files_again_publish_nothing(tmp_path: Path, staged: Staged) -> None:
    first = release(tmp_path, staged)
    assert first is not None
    before = snapshot(first.path)
    assert release(tmp_path, staged) is None
    # A rule change that changed no byte is no new version either; nor is new ratios.
    assert release(tmp_path, staged, ruleset_version="rules-2") is None
    assert release(tmp_path, staged, ratios=SplitRatios(0, 0, 1)) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME, "v0001"]
    assert snapshot(first.path) == before


def test_nothing_at_all_publishes_nothing(tmp_path: Path, staged: Staged) -> None:
    assert release(tmp_path, staged, files=[]) is None
    assert latest_version(tmp_path) is None


def test_one_new_file_is_a_new_version_with_every_earlier_file(
    tmp_path: Path, staged: Staged
) -> None:
    newcomer = staged.of_area(DataArea.DICOM)[0]
    first = release(tmp_path, staged, [f for f in staged.files if f is not newcomer])
    assert first is not None
    before = snapshot(first.path)
    second = release(tmp_path, staged)
    assert second is not None
    assert (second.version, second.added, second.changed, second.removed) == ("v0002", 1, 0, 0)
    assert second.withdrawn_subjects == 0
    assert snapshot(first.path) == before  # the earlier version is never touched
    new = snapshot(second.path)
    for relpath, (sha, _, inode) in before.items():
        if relpath.split("/")[0] in {"dicom", "raw", "fastmri"}:
            assert new[relpath][0] == sha
            assert new[relpath][2] == inode  # linked from the previous version, not copied
    assert f"{newcomer.area.value}/{newcomer.relpath}" in new
    log = (second.path / "CHANGELOG.md").read_text()
    assert "## v0002" in log and "## v0001" in log
    assert "1 file(s) added, 0 changed, 0 removed" in log
    sha256sum_check(second.path)


def test_a_changed_file_gets_the_new_rule_set_the_others_keep_theirs(
    tmp_path: Path, staged: Staged
) -> None:
    first = release(tmp_path, staged)
    assert first is not None
    target = staged.of_area(DataArea.DICOM)[0]
    changed = tmp_path.parent / f"{tmp_path.name}-rewritten.dcm"
    data = bytearray(target.staged.read_bytes())
    data[-1] ^= 0xFF  # one pixel byte: what a changed pixel rule would do
    changed.write_bytes(bytes(data))
    files = [replace(f, staged=changed) if f is target else f for f in staged.files]
    second = release(tmp_path, staged, files, ruleset_version="rules-2")
    assert second is not None
    assert (second.added, second.changed, second.removed) == (0, 1, 0)
    rows = rows_by_path(second.path)
    key = f"dicom/{target.relpath}"
    assert rows[key].sha256 == hashlib.sha256(data).hexdigest()
    assert {r.ruleset_version for p, r in rows.items() if p != key} == {"rules-1"}
    assert rows[key].ruleset_version == "rules-2"
    assert (first.path / key).read_bytes() == target.staged.read_bytes()
    sha256sum_check(first.path)
    sha256sum_check(second.path)


def test_a_withdrawn_subject_is_left_out_and_never_named(tmp_path: Path, staged: Staged) -> None:
    first = release(tmp_path, staged)
    assert first is not None
    gone = staged.subjects()[0]
    theirs = [f for f in staged.files if f.subject == gone]
    second = release(tmp_path, staged, withdrawn={gone})
    assert second is not None
    assert (second.withdrawn_subjects, second.removed) == (1, len(theirs))
    assert (second.added, second.changed) == (0, 0)
    assert all(r.subject != gone for r in second.files)
    assert all(r.subject != gone for r in rows_by_path(second.path).values())
    assert not list(second.path.glob(f"*/{gone}"))
    log = (second.path / "CHANGELOG.md").read_text()
    assert "1 subject(s) withdrawn" in log
    # Nowhere in the new version: not in a path, a manifest, the card or the changelog.
    for path in second.path.rglob("*"):
        assert gone not in path.relative_to(second.path).as_posix()
        if path.is_file():
            assert gone.encode() not in path.read_bytes(), path
    # Later versions keep it out; the withdrawal is counted once.
    assert release(tmp_path, staged, withdrawn={gone}) is None
    sha256sum_check(first.path)


def test_a_subject_keeps_its_split_when_the_ratios_change(tmp_path: Path, staged: Staged) -> None:
    first_subjects = set(staged.subjects()[:-2])
    first = release(tmp_path, staged, [f for f in staged.files if f.subject in first_subjects])
    assert first is not None
    splits = {r.subject: r.split for r in rows_by_path(first.path).values()}
    second = release(tmp_path, staged, ratios=SplitRatios(0, 0, 1))
    assert second is not None
    after: dict[str, set[Split]] = {}
    for r in rows_by_path(second.path).values():
        after.setdefault(r.subject, set()).add(r.split)
    assert all(len(s) == 1 for s in after.values())  # no subject spans two splits
    assert {s: next(iter(after[s])) for s in first_subjects} == splits
    assert {next(iter(after[s])) for s in set(after) - first_subjects} == {Split.TEST}


def test_a_failure_inside_the_build_leaves_no_version(
    tmp_path: Path, staged: Staged, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = release(tmp_path, staged, staged.files[:-1])
    assert first is not None
    before = snapshot(first.path)

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(PUBLISHING, "write_sums", fail)
    with pytest.raises(OSError):
        release(tmp_path, staged)
    assert latest_version(tmp_path) == "v0001"
    assert not list(tmp_path.glob(".building-*"))
    assert snapshot(first.path) == before


KILLED = textwrap.dedent(
    """
    import importlib, os, signal, sys
    from pathlib import Path
    publishing = importlib.import_module("pipeline.release.publish")
    from pipeline.keys import SecretKey
    from pipeline.release import DataArea, Publishable, SplitRatios

    def die(*args, **kwargs):  # kill -9 with the version complete, just before its rename
        os.kill(os.getpid(), signal.SIGKILL)

    publishing.sync_filesystem = die
    root, key, *specs = sys.argv[1:]
    files = []
    for spec in specs:
        staged, area, relpath, subject, item = spec.split("|")
        files.append(Publishable(Path(staged), DataArea(area), relpath, subject, item))
    publishing.publish(Path(root), files, key=SecretKey(bytes.fromhex(key)),
                       ratios=SplitRatios(0.6, 0.2, 0.2), ruleset_version="rules-1")
    """
)


def test_kill_9_mid_build_leaves_the_previous_version_and_no_partial_one(
    tmp_path: Path, staged: Staged
) -> None:
    first = release(tmp_path, staged, staged.files[:-3])
    assert first is not None
    before = snapshot(first.path)
    specs = [f"{f.staged}|{f.area.value}|{f.relpath}|{f.subject}|{f.item}" for f in staged.files]
    done = subprocess.run(
        [sys.executable, "-c", KILLED, str(tmp_path), staged.key.material.hex(), *specs],
        cwd=REPO,
        capture_output=True,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    partial = list(tmp_path.glob(".building-*"))
    assert len(partial) == 1 and (partial[0] / "SHA256SUMS").is_file()  # killed at the last moment
    assert latest_version(tmp_path) == "v0001"
    assert snapshot(first.path) == before
    sha256sum_check(first.path)
    again = release(tmp_path, staged)
    assert again is not None and again.version == "v0002" and again.added == 3
    assert not list(tmp_path.glob(".building-*"))  # the stale build was removed


def test_files_on_another_file_system_are_copied(tmp_path: Path, staged: Staged) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a file system other than the tests' temp folder")
    elsewhere = Path(tempfile.mkdtemp(dir=shm))
    try:
        files = []
        for f in staged.of_area(DataArea.RAW):
            copy = elsewhere / f"{len(files)}.h5"
            shutil.copyfile(f.staged, copy)
            files.append(replace(f, staged=copy))
        result = release(tmp_path, staged, files)
        assert result is not None
        for f in files:
            placed = result.path / "raw" / f.relpath
            assert placed.read_bytes() == f.staged.read_bytes()
            assert placed.stat().st_dev != f.staged.stat().st_dev
            assert stat.S_IMODE(placed.stat().st_mode) == 0o444
        sha256sum_check(result.path)
    finally:
        shutil.rmtree(elsewhere)


def test_a_name_where_a_pseudonym_belongs_is_refused_by_the_contract(
    tmp_path: Path, staged: Staged
) -> None:
    f = staged.of_area(DataArea.DICOM)[0]
    named = replace(f, subject="DOEJOHN", relpath="DOEJOHN/" + f.relpath.split("/", 1)[1])
    with pytest.raises(ContractViolation) as caught:
        release(tmp_path, staged, [*staged.of_area(DataArea.RAW), named])
    assert any(e.column == "subject" for e in caught.value.errors)
    assert "DOEJOHN" not in str(caught.value)
    assert latest_version(tmp_path) is None
    assert not list(tmp_path.glob(".building-*"))


@pytest.mark.parametrize(
    "relpath", ["Doe John/ST-1/SE-1/x.dcm", "../SUBJ-0123456789/x.dcm", "SUBJ-0123456789"]
)
def test_a_path_outside_the_layout_is_refused_without_quoting_it(
    tmp_path: Path, staged: Staged, relpath: str
) -> None:
    f = replace(staged.files[0], relpath=relpath, subject=relpath.split("/")[0])
    with pytest.raises(ValueError, match=f"input {f.item[:12]}") as caught:
        release(tmp_path, staged, [f])
    assert relpath not in str(caught.value)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_a_missing_staged_file_names_the_release_path_only(tmp_path: Path, staged: Staged) -> None:
    f = replace(staged.files[0], staged=tmp_path / "Doe, John" / "gone.dcm")
    with pytest.raises(ReleaseError) as caught:
        release(tmp_path / "release", staged, [f])
    assert f"{f.area.value}/{f.relpath}" in str(caught.value)
    assert "Doe" not in str(caught.value)


def test_a_second_publish_at_the_same_time_is_refused(tmp_path: Path, staged: Staged) -> None:
    tmp_path.mkdir(exist_ok=True)
    fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunLocked, match="another process"):
            release(tmp_path, staged)
    finally:
        os.close(fd)
    assert latest_version(tmp_path) is None
