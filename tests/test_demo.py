"""``mricurate demo``: the product on a generated sample; the stage-by-stage walk-through; its
leak check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pydicom

from pipeline.demo import leaked_values, run_demo

REPO = Path(__file__).resolve().parents[1]


def test_the_demo_runs_the_ingest_flow_on_a_new_workspace_and_says_where_to_look(
    tmp_path: Path,
) -> None:
    """What `make demo` runs, as a process of its own (Prefect's ephemeral server included)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    environment["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "mricurate", "demo", str(tmp_path), "--subjects", "2"],
        capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    root = tmp_path / "workspace"
    version = root / "release" / "v0001"
    for made in ("README.md", "datapackage.json", "SHA256SUMS", "manifests"):
        assert (version / made).exists(), made
        assert str(version / made) in out  # said where to look
    assert list((version / "dicom").rglob("*.dcm")) and list((version / "raw").rglob("*.h5"))
    assert "planted values, 0 found in release/" in out
    assert f"mricurate review --workspace {root}" in out
    assert "Waiting for a person: 0 input(s)" not in out  # the sample's doubtful files queue
    assert "\\t" not in out and "\t" not in out  # per-rule facts added up, not dumped
    # No identifying value of the sample is printed (the numbers are left out: a port, a
    # process ID or a time of day may equal one by chance).
    from pipeline.samples import make_subjects

    people = make_subjects(2)
    for value in {v for person in people for v in person.phi.values()}:
        if len(value) >= 4 and any(c.isalpha() for c in value):
            assert value.upper() not in (out + done.stderr).upper(), "a planted value printed"


def test_the_demo_runs_every_stage_and_finds_no_leak(tmp_path: Path) -> None:
    # Without the head series: its registration would add 2-4 s to the suite, and
    # tests/deface and tests/ingest/test_deface_ingest.py deface the same phantom.
    assert run_demo(tmp_path, subjects=2, head=False) == 0
    release = tmp_path / "release"
    assert list((release / "dicom").rglob("*.dcm"))
    raw = sorted((release / "raw").rglob("*.h5"))
    assert len(raw) == 4  # a noise and an image measurement per subject
    assert len(list((release / "fastmri").rglob("*.h5"))) == 2
    # Raw and DICOM data of a subject share one pseudonym folder.
    assert {p.relative_to(release / "raw").parts[0] for p in raw} == {
        p.name for p in (release / "dicom").iterdir() if p.name != ".mricurate"
    }
    assert (tmp_path / "private" / "findings.json").is_file()
    # Defacing looked at every series and touched none of them (no head volume).
    marked = [
        p
        for p in (release / "dicom").rglob("*.dcm")
        if pydicom.dcmread(p, stop_before_pixels=True).get("RecognizableVisualFeatures") == "NO"
    ]
    assert marked == []


def test_the_leak_check_can_fail(tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    (release / "a.dcm").write_bytes(b"\x00" * 10 + b"Mustermann^Erika" + b"20161014171002")
    with h5py.File(release / "b.h5", "w") as f:
        f.attrs["patient_id"] = "MRN-123456"
        f["kspace"] = np.zeros(4, np.complex64)
    (release / "c.txt").write_bytes(b"serial 45385.")
    found = leaked_values(
        release, ["MUSTERMANN", "MRN-123456", "41710", "171002", "45385", "ABSENT"]
    )
    # A number inside a longer one (a shifted date-time) is not a leak; alone it is.
    assert found == ["45385", "MRN-123456", "MUSTERMANN"]
