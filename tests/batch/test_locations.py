"""Layouts that could release PHI or eat their own output are refused before anything is written.

For each layout the command line exits 2 and the library raises
:class:`~pipeline.errors.LocationError`, and afterwards SOURCE, OUTPUT and the
folder of the key are exactly as they were (an OUTPUT that did not exist
still does not) and the private location holds no record.  A second key
into an OUTPUT or a private location is refused the same way
(:class:`~pipeline.errors.KeyFileError`), naming both fingerprints and never
a key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from mricurate.cli import main
from pipeline.batch.runner import RunOptions
from pipeline.dicom.profile import load_profile
from pipeline.errors import KeyFileError, LocationError
from pipeline.keys import write_key
from pipeline.private_store import PrivateStore
from pipeline.steps.dicom_file import deidentify_tree
from tests.batch.conftest import KEY, OTHER_KEY, run_cli, store_rows, write_dicom

RECORDS = ("runs", "inputs", "links", "outputs", "commits", "sources")


@dataclass(frozen=True)
class Layout:
    source: Path
    output: Path
    private: Path | None  # None: the default, private/ beside the key
    key: Path
    says: str  # what the refusal names

    @property
    def private_root(self) -> Path:
        return self.private if self.private is not None else self.key.resolve().parent / "private"

    def args(self) -> list[str]:
        args = ["deid", str(self.source), str(self.output), "--key-file", str(self.key)]
        return args + (["--private-dir", str(self.private)] if self.private is not None else [])


def _tree(root: Path) -> dict[str, int] | None:
    """Every entry under ``root`` with its size (None: ``root`` does not exist)."""
    if not os.path.lexists(root):
        return None
    entries = {".": 0}
    for path in root.rglob("*"):
        entries[path.relative_to(root).as_posix()] = path.lstat().st_size if path.is_file() else 0
    return entries


def _layout(tmp_path: Path, case: str) -> Layout:
    """Build SOURCE (two slices), the key and the folders of one unsafe layout."""
    source = write_dicom(tmp_path / "in", n_slices=2).root
    keys = tmp_path / "keys"
    keys.mkdir()
    key = keys / "site.key"
    output, private = tmp_path / "out", tmp_path / "private"
    says = "must not contain each other"
    if case == "key inside OUTPUT":
        output.mkdir()
        key = output / "site.key"
        says = "is inside OUTPUT"
    elif case == "key inside SOURCE":
        key = source / "site.key"
        says = "inside SOURCE"
    elif case == "key inside SOURCE, default private location":
        key, private = source / "keys" / "site.key", None  # private/ beside it: in SOURCE
        key.parent.mkdir()
    elif case == "OUTPUT inside the private location":
        private.mkdir()
        output = private / "release"
        says = "inside the private location"
    elif case == "the private location inside SOURCE":
        private = source / "private"
    elif case == "the private location inside a new OUTPUT":
        private = output / "private"
        says = "inside OUTPUT"
    elif case == "OUTPUT through a symlink into the private location":
        (private / "release").mkdir(parents=True)
        output = tmp_path / "release-link"
        output.symlink_to(private / "release")
        says = "inside the private location"
    elif case == "the private location through a symlink into OUTPUT":
        output.mkdir()
        private = tmp_path / "private-link"
        private.symlink_to(output / "private")  # dangling: the run must not make it
        says = "inside OUTPUT"
    elif case == "the private location through a symlink into an existing folder of OUTPUT":
        (output / "private").mkdir(parents=True)
        private = tmp_path / "private-link"
        private.symlink_to(output / "private")
        says = "inside OUTPUT"
    elif case == "SOURCE == OUTPUT":
        output = source
    else:
        raise AssertionError(case)
    write_key(key, KEY)
    return Layout(source, output, private, key, says)


CASES = [
    "key inside OUTPUT",
    "key inside SOURCE",
    "key inside SOURCE, default private location",
    "OUTPUT inside the private location",
    "the private location inside SOURCE",
    "the private location inside a new OUTPUT",
    "OUTPUT through a symlink into the private location",
    "the private location through a symlink into OUTPUT",
    "the private location through a symlink into an existing folder of OUTPUT",
    "SOURCE == OUTPUT",
]


def _snapshot(layout: Layout) -> dict[str, dict[str, int] | None]:
    folders = {"SOURCE": layout.source, "OUTPUT": layout.output, "key folder": layout.key.parent}
    return {name: _tree(path) for name, path in folders.items()}


def _no_records(private: Path) -> None:
    for table in RECORDS:
        rows = store_rows(private, f"SELECT count(*) FROM {table}")
        assert rows in ([], [(0,)]), f"{table} has rows after a refusal"


@pytest.mark.parametrize("case", CASES)
def test_cli_refuses_before_writing(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = _layout(tmp_path, case)
    before = _snapshot(layout)

    status = main(layout.args())

    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("mricurate: error: ") and layout.says in err, err
    assert _snapshot(layout) == before, "something was written before the refusal"
    _no_records(layout.private_root)


def test_scan_refuses_a_private_location_inside_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_dicom(tmp_path / "in", n_slices=1).root
    before = _tree(source)

    status = main(["scan", str(source), "--private-dir", str(source / "private")])

    err = capsys.readouterr().err
    assert status == 2, err
    assert "must not contain each other" in err
    assert _tree(source) == before


# The caller of the library makes the store; through a dangling link it cannot (the
# link would have to be followed into OUTPUT): that case is the command line's.
LIBRARY_CASES = [c for c in CASES if c != "the private location through a symlink into OUTPUT"]


@pytest.mark.parametrize("case", LIBRARY_CASES)
def test_library_refuses_before_writing(tmp_path: Path, case: str) -> None:
    layout = _layout(tmp_path, case)
    store = PrivateStore(layout.private_root)  # the caller's: made before the library is called
    before = _snapshot(layout)

    with pytest.raises(LocationError) as refused:
        deidentify_tree(
            layout.source, layout.output, KEY, load_profile("research"), store,
            options=RunOptions(jobs=1, key_file=layout.key),
        )  # fmt: skip

    assert layout.says in str(refused.value)
    assert _snapshot(layout) == before
    _no_records(layout.private_root)


def test_a_refusal_in_a_real_process(tmp_path: Path) -> None:
    """The same refusal from ``python -m mricurate``: exit status 2, one line, no traceback."""
    layout = _layout(tmp_path, "the private location through a symlink into OUTPUT")
    before = _snapshot(layout)

    result = run_cli(*layout.args())

    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("mricurate: error: ") and layout.says in result.stderr
    assert "Traceback" not in result.stderr
    assert _snapshot(layout) == before


# -- a second key ----------------------------------------------------------------


def _first_run(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A finished run with KEY: (SOURCE, OUTPUT, private location)."""
    source = write_dicom(tmp_path / "in", n_slices=2).root
    out, private = tmp_path / "out-a", tmp_path / "private-a"
    summary = deidentify_tree(
        source, out, KEY, load_profile("research"), PrivateStore(private), jobs=1
    )
    assert summary.written == 2
    return source, out, private


def _other_key(tmp_path: Path) -> Path:
    path = tmp_path / "keys-b" / "other.key"
    path.parent.mkdir()
    write_key(path, OTHER_KEY)
    return path


def _says_fingerprints(message: str) -> None:
    assert KEY.fingerprint in message and OTHER_KEY.fingerprint in message, message
    for key in (KEY, OTHER_KEY):
        assert key.material.hex() not in message and key.material.hex()[:16] not in message


@pytest.mark.parametrize("where", ["private location", "OUTPUT"])
def test_a_second_key_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    source, out_a, private_a = _first_run(tmp_path)
    other = _other_key(tmp_path)
    # The other key into the same private location (a new OUTPUT), or into the same
    # OUTPUT (a new private location).
    out, private = (tmp_path / "out-b", private_a) if where != "OUTPUT" else (out_a, None)
    private = private or tmp_path / "private-b"
    runs = store_rows(private_a, "SELECT count(*) FROM runs")
    before = {"OUTPUT": _tree(out), "A": _tree(out_a)}

    status = main(["deid", str(source), str(out), "--key-file", str(other), "--private-dir", str(private)])  # fmt: skip

    err = capsys.readouterr().err
    assert status == 2, err
    _says_fingerprints(err)
    assert "another key" in err
    assert {"OUTPUT": _tree(out), "A": _tree(out_a)} == before, "written before the refusal"
    assert store_rows(private_a, "SELECT count(*) FROM runs") == runs
    if where == "OUTPUT":
        _no_records(private)

    with pytest.raises(KeyFileError) as refused:
        deidentify_tree(source, out, OTHER_KEY, load_profile("research"), PrivateStore(private))
    _says_fingerprints(str(refused.value))
    assert {"OUTPUT": _tree(out), "A": _tree(out_a)} == before


def test_second_key_refusal_leaves_no_new_output_behind(tmp_path: Path) -> None:
    """A real process: key B into a new OUTPUT beside key A's private location."""
    source, _, private = _first_run(tmp_path)
    other = _other_key(tmp_path)

    refused = run_cli("deid", source, tmp_path / "out-b", "--key-file", other, "--private-dir", private)  # fmt: skip

    assert refused.returncode == 2, refused.stderr
    _says_fingerprints(refused.stderr)
    assert not (tmp_path / "out-b").exists()
