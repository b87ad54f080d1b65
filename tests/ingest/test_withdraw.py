"""Consent revoked: ``mricurate withdraw`` keeps a subject out of every later release."""

from __future__ import annotations

from pathlib import Path

from mricurate.cli import main
from pipeline.catalog import Catalog
from pipeline.catalog.states import ItemState
from pipeline.ingest.once import ingest_once
from tests.flows.sample import sample_workspace


def test_withdrawn_subject_is_in_no_later_release_and_named_nowhere(tmp_path: Path) -> None:
    workspace, people, _ = sample_workspace(tmp_path / "w", subjects=2, clean_pixels=False)
    first = ingest_once(workspace, jobs=2)
    assert first["release"]["version"] == "v0001"  # type: ignore[index]
    gone = people[0].phi

    assert main(["withdraw", "--workspace", str(workspace.root), gone.patient_id]) == 0

    with Catalog.open(workspace.catalog_url) as catalog:
        subjects = catalog.withdrawn_subjects()
        latest = catalog.latest_release()
        withdrawn = [i for i in catalog.items() if i.state is ItemState.WITHDRAWN]
    assert len(subjects) == 1 and withdrawn
    assert latest is not None and latest.version == "v0002"
    (subject,) = subjects
    v1, v2 = workspace.release / "v0001", workspace.release / "v0002"
    assert any(p.is_relative_to(v1 / "dicom" / subject) for p in v1.rglob("*"))
    assert not (v2 / "dicom" / subject).exists() and not (v2 / "raw" / subject).exists()
    assert all(f.relpath.split("/")[1] != subject for f in latest.files)
    changelog = (v2 / "CHANGELOG.md").read_text()
    assert "withdrawn" in changelog
    for text in (
        changelog,
        (v2 / "README.md").read_text(),
        (v2 / "manifests/files.csv").read_text(),
    ):
        assert subject not in text and gone.patient_id not in text


def test_an_unknown_patient_withdraws_nothing(tmp_path: Path) -> None:
    from pipeline.workspace import init_workspace

    workspace = init_workspace(tmp_path / "w")
    assert main(["withdraw", "--workspace", str(workspace.root), "NO-SUCH-ID"]) == 1
