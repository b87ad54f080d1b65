"""``mricurate demo``: the whole pipeline on a generated sample, and its leak check."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pydicom

from pipeline.demo import leaked_values, run_demo


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
