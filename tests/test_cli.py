"""The command line, run as a user runs it (a real subprocess for one end-to-end case)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mricurate.cli import main
from tests.dicom.conftest import tiny_mr
from tests.release import released


def keygen(tmp_path: Path) -> Path:
    key = tmp_path / "keys" / "site.key"
    key.parent.mkdir()
    assert main(["keygen", str(key)]) == 0
    return key


def test_keygen_and_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = keygen(tmp_path)
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert main(["keygen", str(key)]) == 2
    assert "refusing to replace" in capsys.readouterr().err
    os.chmod(key, 0o644)
    assert main(["deid", str(tmp_path), str(tmp_path / "o"), "--key-file", str(key)]) == 2
    assert "chmod 600" in capsys.readouterr().err


def test_rules_show_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "show", "--profile", "safe-harbor"]) == 0
    out = capsys.readouterr().out
    assert "HIPAA Safe Harbor" in out and "(0010,0010)" in out and "safe-harbor.yaml:" in out
    bad = tmp_path / "site.yaml"
    bad.write_text("include: [research.yaml]\nrules:\n  - {keyword: PatientNam, action: keep}\n")
    assert main(["rules", "check", str(bad)]) == 2
    assert f"{bad}:3: 'PatientNam' is not a DICOM keyword" in capsys.readouterr().err


def test_dry_run_explains_each_element(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = keygen(tmp_path)
    capsys.readouterr()
    path = tmp_path / "one.dcm"
    tiny_mr().save_as(path, enforce_file_format=True)
    assert main(["deid", str(path), "--key-file", str(key), "--dry-run"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("(0010,0010)"))
    assert "'Müller^José^' -> 'SUBJ-" in line and "research.yaml:" in line
    assert any("StudyDescription" in x and "'MRI KNEE LEFT'" in x for x in out.splitlines())
    assert not list(tmp_path.glob("**/SUBJ-*"))  # nothing written


def test_deid_end_to_end_in_a_subprocess(tmp_path: Path) -> None:
    key = keygen(tmp_path)
    source = tmp_path / "in" / "MUELLER_JOSE_MRN48213977"
    source.mkdir(parents=True)
    tiny_mr().save_as(source / "IM0001", enforce_file_format=True)
    (source / "notes.txt").write_text("Müller, José - MRN48213977")
    (source / "empty").write_bytes(b"")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "mricurate", "deid", str(tmp_path / "in"), str(out),
         "--key-file", str(key), "--jobs", "2"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert re.search(r"written\s+1\b", result.stdout)
    assert re.search(r"quarantined\s+2\b", result.stdout)
    for text in (result.stdout, result.stderr):
        assert "MRN48213977" not in text and "MUELLER" not in text  # no PHI in the log
    written = released(out)
    assert len(written) == 1
    assert not any("MUELLER" in str(p) or "IM0001" in str(p) for p in written)
    private = key.parent / "private"
    assert (private / "links.sqlite").exists()
    assert len(list((private / "quarantine").rglob("*.json"))) == 2


def test_scan_flags_burned_in_text_and_writes_private_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import shutil

    from pipeline.samples import make_subjects, mr_series, other_objects

    if shutil.which("tesseract") is None:
        pytest.skip("tesseract not installed")
    subject = make_subjects(1)[0]
    source = tmp_path / "in"
    source.mkdir()
    other_objects(subject)["secondary_capture"].save_as(source / "sc.dcm", enforce_file_format=True)
    mr_series(subject, n_slices=1)[0].save_as(source / "mr.dcm", enforce_file_format=True)
    findings = tmp_path / "private" / "findings.json"
    private = tmp_path / "private"
    assert main(["scan", str(source), "--json", str(findings), "--private-dir", str(private)]) == 0
    out = capsys.readouterr().out
    assert "flagged: 1" in out and "clear: 1" in out
    assert subject.phi.patient_id not in out  # the log names files by opaque keys only
    records = {r["path"]: r for r in json.loads(findings.read_text())}
    assert records["sc.dcm"]["flagged"] and not records["mr.dcm"]["flagged"]
    assert oct(findings.stat().st_mode & 0o777) == "0o600"


def test_dask_address_is_checked_and_needs_a_shared_prefect_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.workspace import init_workspace

    root = init_workspace(tmp_path / "w").root
    with pytest.raises(SystemExit):
        main(["ingest", "--workspace", str(root), "--dask-address", "10.1.2.3:8786"])
    assert "tcp://HOST:PORT" in capsys.readouterr().err
    # The ephemeral server lives in this process: workers could not report to it.
    assert main(["ingest", "--workspace", str(root), "--dask-address", "tcp://127.0.0.1:1"]) == 2
    error = capsys.readouterr().err
    assert "needs a shared Prefect server" in error and "mricurate serve" in error
    assert not (root / "private" / "prefect" / "prefect.db").exists(), "refused before Prefect"
