"""Defacing inside one ingest run (pipeline.ingest.once), on a workspace made like the flows'.

Dropped in ``incoming/`` beside a knee series: a head whose position was
entered wrongly (prone, recorded as supine: the face is at the back of the
volume's patient frame), a head tipped onto its ear that registration
cannot place, a head series with a missing slice, and the Siemens raw data
of a brain scan.  One run (two registrations) then shows: the first head is
defaced in ``private/staging``, its outputs re-hashed, checked for leaks and
released without its face; the other two heads wait for review as
``deface-failed`` and nothing of them is released; the head k-space is held
as ``head-kspace``; the knee is released untouched; the audit report counts
it all.  A second workspace whose rules release head k-space releases it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pipeline.catalog import Catalog
from pipeline.catalog.states import ItemState, ReviewReason
from pipeline.deface.volume import assemble
from pipeline.deface.write import CLEAN_RECOGNIZABLE_VISUAL_FEATURES, is_marked_defaced
from pipeline.demo import leaked_values, write_raw_sample
from pipeline.ingest.once import ingest_once
from pipeline.read.content import file_sha256
from pipeline.report import build_report, run_artifacts, write_report
from pipeline.samples import mr_series
from pipeline.samples.exams import subject_region
from pipeline.samples.head_volume import (
    HeadGrid,
    HeadPhantom,
    HeadPose,
    brain_subject,
    head_datasets,
    make_head,
    write_head_series,
)
from pipeline.samples.subjects import make_subjects
from pipeline.workspace import Workspace, init_workspace, open_workspace
from tests.flows.sample import config_text

# One ingest run (two registrations) for the module: one xdist worker (make test: loadgroup).
pytestmark = pytest.mark.xdist_group("deface-ingest")

GRID = HeadGrid(rows=64, cols=64, slices=20, pixel_mm=4.0, slice_mm=7.0)
SWAPPED = HeadPose((0.0, 0.0, 180.0), (3.0, -2.0, 4.0))  # prone, entered as supine
TIPPED = HeadPose((0.0, 90.0, 0.0))  # on its ear: registration cannot place it


@dataclass(frozen=True)
class Ingested:
    workspace: Workspace
    summary: dict[str, object]
    planted: list[str]
    swapped: HeadPhantom
    inputs: dict[str, set[str]]  # "swapped", "tipped", "gap", "knee", "raw" -> input sha256s


def _workspace(root: Path, deface_rules: str = "") -> Workspace:
    workspace = init_workspace(root)
    text = config_text(clean_pixels=False)
    if deface_rules:  # a site's own defacing rules beside the config
        (workspace.root / "deface.yaml").write_text(deface_rules)
        text += '\n[deface]\nrules = "deface.yaml"\n'
    (workspace.root / "mricurate.toml").write_text(text)
    return open_workspace(workspace.root)


def _hashes(paths: list[Path]) -> set[str]:
    return {file_sha256(p) for p in paths}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    workspace = _workspace(tmp_path_factory.mktemp("deface") / "w")
    subject = brain_subject()
    pacs = workspace.incoming / "pacs"
    swapped = make_head(GRID, SWAPPED, seed=1)
    inputs = {
        "swapped": _hashes(write_head_series(
            pacs / "head", head_datasets(subject, swapped, seed=1, series_number=31))),
        "tipped": _hashes(write_head_series(
            pacs / "tipped", head_datasets(subject, make_head(GRID, TIPPED, seed=2), seed=2,
                                           series_number=32))),
    }  # fmt: skip
    coarse = make_head(HeadGrid(rows=64, cols=64, slices=20, pixel_mm=4.0, slice_mm=6.0), seed=3)
    gap = head_datasets(subject, coarse, seed=3, series_number=33)
    del gap[10]  # one slice lost on the way: the stack has a gap
    inputs["gap"] = _hashes(write_head_series(pacs / "gap", gap))
    knee_subject = next(s for s in make_subjects(4) if subject_region(s).body_part == "KNEE")
    knee = mr_series(knee_subject, n_slices=6, rows=64, cols=64)
    inputs["knee"] = _hashes(write_head_series(pacs / "knee", knee))
    planted = list(subject.phi.values()) + list(knee_subject.phi.values())
    planted += write_raw_sample(workspace.incoming / "raw", [subject], head=True)
    inputs["raw"] = _hashes(sorted((workspace.incoming / "raw").rglob("*.dat")))
    summary = ingest_once(workspace, jobs=1)
    return Ingested(workspace, summary, planted, swapped, inputs)


def _states(ingested: Ingested) -> dict[str, tuple[ItemState, str | None]]:
    with Catalog.open(ingested.workspace.catalog_url) as catalog:
        return {i.sha256: (i.state, i.reason) for i in catalog.items()}


def _released(ingested: Ingested, group: str) -> list[Path]:
    with Catalog.open(ingested.workspace.catalog_url) as catalog:
        release = catalog.latest_release()
        assert release is not None
        root = ingested.workspace.release / release.version
        return [root / f.relpath for f in release.files if f.input_sha256 in ingested.inputs[group]]


def test_the_run_counts_what_defacing_did(ingested: Ingested) -> None:
    deface = ingested.summary["deface"]
    assert isinstance(deface, dict)
    assert deface["enabled"] is True
    assert deface["defaced"] == 1
    assert deface["to_review"] == 2
    assert deface["head_kspace_held"] == 1
    problems = dict(deface["problems"])
    assert problems.pop("uneven-slice-spacing") == 1  # the gap
    assert set(problems) <= {"head-outside-template", "template-outside-head"}  # the tipped head
    assert sum(problems.values()) == 1
    assert deface["verdicts"]["not-head-anatomy"] == 1  # the knee
    leak = ingested.summary["leak_check"]
    assert isinstance(leak, dict) and leak["failed"] == 0 and leak["unverifiable"] == 0


def test_the_head_is_released_without_its_face(ingested: Ingested) -> None:
    states = _states(ingested)
    assert {states[s] for s in ingested.inputs["swapped"]} == {(ItemState.RELEASED, None)}
    files = sorted(_released(ingested, "swapped"))
    assert len(files) == GRID.slices
    datasets = [pydicom.dcmread(p) for p in files]
    assert all(is_marked_defaced(ds) for ds in datasets)
    voxels = assemble(datasets).voxels
    truth, phantom = ingested.swapped, ingested.swapped.voxels
    background = 5 * truth.noise
    tissue = truth.face & (phantom > background)
    assert np.count_nonzero(tissue) > 3_000  # the face's tissue voxels (4 x 4 x 7 mm)
    assert np.count_nonzero(voxels[tissue] > background) <= 0.005 * np.count_nonzero(tissue)
    assert np.array_equal(voxels[truth.brain], phantom[truth.brain])
    changed = voxels != phantom
    assert np.all(voxels[changed] == phantom.min()), "what changed was set to the background"
    assert np.count_nonzero(changed & ~truth.face) < 0.05 * np.count_nonzero(changed)


def test_the_catalog_records_the_defaced_bytes(ingested: Ingested) -> None:
    with Catalog.open(ingested.workspace.catalog_url) as catalog:
        outputs = catalog.outputs_of(ingested.inputs["swapped"])
        release = catalog.latest_release()
    assert release is not None and outputs
    released = {f.relpath: f.sha256 for f in release.files}
    for output in outputs:
        path = ingested.workspace.release / release.version / output.area / output.relpath
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert output.sha256 == digest == released[f"{output.area}/{output.relpath}"]


def test_heads_that_cannot_be_defaced_wait_for_review_and_are_never_released(
    ingested: Ingested,
) -> None:
    states = _states(ingested)
    with Catalog.open(ingested.workspace.catalog_url) as catalog:
        queued = {r.sha256: r.reasons for r in catalog.pending_reviews()}
    for group in ("tipped", "gap"):
        for sha in ingested.inputs[group]:
            assert states[sha] == (ItemState.NEEDS_REVIEW, ReviewReason.DEFACE_FAILED.value)
            assert ReviewReason.DEFACE_FAILED in queued[sha]
        assert _released(ingested, group) == []


def test_head_kspace_is_held_for_review(ingested: Ingested) -> None:
    states = _states(ingested)
    (sha,) = ingested.inputs["raw"]
    assert states[sha] == (ItemState.NEEDS_REVIEW, ReviewReason.HEAD_KSPACE.value)
    assert _released(ingested, "raw") == []


def test_the_knee_is_released_untouched_by_defacing(ingested: Ingested) -> None:
    files = _released(ingested, "knee")
    assert len(files) == 6
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert not is_marked_defaced(ds)
        codes = [i.CodeValue for i in ds.get("DeidentificationMethodCodeSequence", [])]
        assert CLEAN_RECOGNIZABLE_VISUAL_FEATURES.value not in codes


def test_nothing_planted_reaches_the_release(ingested: Ingested) -> None:
    with Catalog.open(ingested.workspace.catalog_url) as catalog:
        release = catalog.latest_release()
    assert release is not None
    assert leaked_values(ingested.workspace.release / release.version, ingested.planted) == []


def test_head_kspace_is_released_where_the_rules_say_so(tmp_path: Path) -> None:
    rules = Path(__file__).resolve().parents[2] / "rules" / "deface" / "head.yaml"
    site = rules.read_text().replace("head_kspace: hold", "head_kspace: release")
    assert site != rules.read_text()
    workspace = _workspace(tmp_path / "w", site)
    subject = brain_subject()
    # The raw data's subject is known from the DICOM side: a few brain slices (not a head volume).
    write_head_series(workspace.incoming / "brain", mr_series(subject, n_slices=4))
    write_raw_sample(workspace.incoming / "raw", [subject], head=True)
    (raw,) = _hashes(sorted((workspace.incoming / "raw").rglob("*.dat")))
    summary = ingest_once(workspace, jobs=1)
    assert summary["deface"]["head_kspace_held"] == 0  # type: ignore[index]
    with Catalog.open(workspace.catalog_url) as catalog:
        states = {i.sha256: i.state for i in catalog.items()}
    assert states[raw] is ItemState.RELEASED


def test_the_audit_report_counts_defacing_per_run(ingested: Ingested, tmp_path: Path) -> None:
    workspace = ingested.workspace
    with Catalog.open(workspace.catalog_url) as catalog:
        (run,) = build_report(catalog, workspace).runs
        # Written only after the report's own leak check found nothing of the inputs in it.
        page = write_report(catalog, workspace, tmp_path / "audit.html").read_text()
        artifacts = run_artifacts(catalog, workspace, run.run_id, ingested.summary)
    assert run.deface is not None
    assert (run.deface.defaced, run.deface.failed, run.deface.head_kspace_held) == (1, 2, 1)
    assert {c.label for c in run.deface.problems} >= {"uneven-slice-spacing"}
    row = re.search(r'<table class="defacing">.*?<tbody><tr>(.*?)</tr>', page)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    assert cells[:8] == [str(run.run_id), "on", "4", "3", "1", "0", "2", "1"]
    assert "1 series defaced, 2 deface failures" in artifacts.markdown
    assert "1 head k-space held" in artifacts.markdown
    assert not [v for v in ingested.planted if len(v) >= 5 and v.upper() in page.upper()]
