"""The audit report on a real ingest: its counts, its rules' edits, no PHI, the page in a browser.

One small workspace (the generated sample of one subject, planted PHI in
headers, paths and private elements; pixels scanned by Tesseract) is
ingested once, two of its queue entries are decided (one reviewer types a
patient's name into a reason), and a second run publishes what was
approved; every test reads that one state.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import html
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.catalog import Catalog, Decision, ItemState, PhiView
from pipeline.dicom.deidentify import explain
from pipeline.dicom.profile import load_profile
from pipeline.dicom.tally import attribute_of
from pipeline.ingest.once import ingest_once
from pipeline.keys import load_key
from pipeline.report import (
    AuditReport,
    ReportRefused,
    build_report,
    render_html,
    run_artifacts,
    write_checked,
    write_report,
)
from pipeline.report.model import DecisionLine
from pipeline.workspace import Workspace
from tests.flows.sample import sample_workspace

REVIEWERS = ("Reviewer Alpha", "Reviewer Beta")


@dataclass
class Ingested:
    workspace: Workspace
    planted: list[str]
    summaries: list[dict[str, object]]
    report: AuditReport
    html_path: Path


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingested]:
    root = tmp_path_factory.mktemp("report") / "w"
    # No spot check: which series it draws depends on the workspace's random key, and the
    # first run must publish something (the pixel findings and a capture kept for review queue two).
    workspace, people, planted = sample_workspace(root, subjects=1, spot=0.0)
    shutil.rmtree(workspace.incoming / "raw")  # DICOM only: the rules' edits are DICOM's
    planted = [v for person in people for v in person.phi.values()]
    first = ingest_once(workspace, jobs=2)
    with Catalog.open(workspace.catalog_url) as catalog:
        queued = catalog.pending_reviews()
        assert len(queued) >= 2, "the sample sends some inputs to review"
        # Approve one that has an output (the next run publishes it), reject another.
        pending = sorted(queued, key=lambda e: not catalog.outputs_of([e.sha256]))
        words = f"looks fine, {planted[0]} is not visible"  # a reviewer's words may hold PHI
        catalog.decide(pending[0].queue_id, Decision.APPROVE, reviewer=REVIEWERS[0],
                       reason=words, ruleset_version="test")  # fmt: skip
        catalog.decide(pending[1].queue_id, Decision.REJECT, reviewer=REVIEWERS[1],
                       reason=f"text over the image: {planted[0]}", ruleset_version="test")  # fmt: skip
        # The review app logs each view of PHI: two of one input, one of another.
        token = catalog.issue_login_token(REVIEWERS[0], ttl=dt.timedelta(minutes=1))
        _, session = catalog.open_session(token)
        for entry, what in ((pending[0], PhiView.IMAGE), (pending[0], PhiView.IMAGE),
                            (pending[1], PhiView.ORIGINAL_HEADER)):  # fmt: skip
            catalog.record_phi_view(session.session_id, entry.sha256, what)
    second = ingest_once(workspace, jobs=2)
    with Catalog.open(workspace.catalog_url) as catalog:
        report = build_report(catalog, workspace)
        path = write_report(catalog, workspace, root.parent / "audit.html")
    yield Ingested(workspace, planted, [first, second], report, path)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_counts_agree_with_the_catalog(ingested: Ingested) -> None:
    report, workspace = ingested.report, ingested.workspace
    with Catalog.open(workspace.catalog_url) as catalog:
        items = catalog.items()
        histories = {i.sha256: catalog.history(i.sha256) for i in items}
        pending = catalog.pending_reviews()
        releases = [catalog.latest_release()]
    assert {c.label: c.count for c in report.items_by_state} == dict(
        Counter(i.state.value for i in items)
    )
    quarantined = Counter(i.reason for i in items if i.state is ItemState.QUARANTINED)
    assert {c.label: c.count for c in report.quarantined_by_reason} == dict(quarantined)
    assert [r.run_id for r in report.runs] == [1, 2]
    first, second = report.runs
    assert first.came_in == len(items) == report.total_in and second.came_in == 0
    for account in report.runs:
        moved = Counter(
            (t.to_state, t.reason)
            for h in histories.values()
            for t in h
            if t.run_id == account.run_id
        )
        assert account.released == sum(n for (s, _), n in moved.items() if s is ItemState.RELEASED)
        assert account.to_review == sum(
            n for (s, _), n in moved.items() if s is ItemState.NEEDS_REVIEW
        )
        assert {c.label: c.count for c in account.quarantined} == {
            r: n for (s, r), n in moved.items() if s is ItemState.QUARANTINED
        }
    # The summaries the runs recorded say the same.
    assert first.released == ingested.summaries[0]["release"]["items_released"]  # type: ignore[index]
    assert second.released == 1, "the approved input is published by the next run"
    assert second.version == ingested.summaries[1]["release"]["version"] == "v0002"  # type: ignore[index]
    assert first.leak_check is not None and first.leak_check.passed
    assert report.review.pending == len(pending)
    assert [(d.reviewer, d.decision) for d in report.review.decisions] == [
        (REVIEWERS[0], "approve"), (REVIEWERS[1], "reject"),
    ]  # fmt: skip
    assert report.review.decisions_with_reason == 2
    assert [r.version for r in report.releases] == ["v0001", "v0002"]
    latest = releases[0]
    assert latest is not None and report.latest_release is not None
    assert report.latest_release.files == len(latest.files)
    assert report.latest_release.by_field_strength, "field strengths read from the manifest"
    assert report.rules.rule_sets and report.rules.rule_sets[0].files
    assert all(len(h) == 64 for h in report.rules.rule_sets[0].files.values())
    assert report.pixels.outcomes, "the pixel scan ran"
    # The sample's screen capture: written as it is for a person, counted by its reason.
    assert report.pixels.held_back, "a file kept from release for its text is counted"
    assert [p.label for p in report.states_over_time] == ["run 1", "run 2", "now"]
    assert [(v.reviewer, v.what) for v in report.phi_views] == [
        (REVIEWERS[0], "image"), (REVIEWERS[0], "image"), (REVIEWERS[0], "original-header"),
    ]  # fmt: skip
    page = ingested.html_path.read_text()
    assert "3 views of PHI recorded, of 2 input(s)" in page


def test_rule_counts_agree_with_the_dry_run_on_the_same_files(ingested: Ingested) -> None:
    workspace = ingested.workspace
    with Catalog.open(workspace.catalog_url) as catalog:
        outputs = catalog.outputs_of(i.sha256 for i in catalog.items())
    written = {o.input_sha256 for o in outputs if o.area == "dicom"}
    files = {_sha(p): p for p in workspace.incoming.rglob("*") if p.is_file()}
    key, profile = load_key(workspace.key_file), load_profile("research")
    expected: Counter[tuple[str, str, str]] = Counter()
    for sha in written:
        for change in explain(files[sha].read_bytes(), key, profile):
            if change.edited and change.action != "rebuild":  # the CSA rebuild has its own fact
                tag = int(change.path[-10:-6] + change.path[-5:-1], 16)
                expected[(change.rule, attribute_of(tag), change.action)] += 1
    first = build_report_of_run(workspace, 1)
    found = Counter({(e.rule, e.attribute, e.action): e.count for e in first.rules.edits})
    assert found == expected
    assert sum(found.values()) == first.rules.elements_changed > 0
    assert first.rules.by_default, "the VR defaults are counted too"


def build_report_of_run(workspace: Workspace, run_id: int) -> AuditReport:
    with Catalog.open(workspace.catalog_url) as catalog:
        return build_report(catalog, workspace, run_id=run_id)


def _planted_found(text: str, planted: list[str]) -> list[str]:
    shown = (text + "\n" + html.unescape(text)).upper()
    return sorted(v for v in planted if len(v) >= 4 and v.upper() in shown)


def test_the_page_and_the_artifacts_hold_no_planted_value(ingested: Ingested) -> None:
    page = ingested.html_path.read_text(encoding="utf-8")
    paths = [str(p.relative_to(ingested.workspace.incoming)) for p in
             ingested.workspace.incoming.rglob("*")]  # fmt: skip
    assert _planted_found(page, ingested.planted + paths) == []
    assert "is not visible" not in page, "a reviewer's words are counted, never shown"
    for reviewer in REVIEWERS:
        assert reviewer in page
    with Catalog.open(ingested.workspace.catalog_url) as catalog:
        artifacts = run_artifacts(catalog, ingested.workspace, 1, ingested.summaries[0])
    assert "Run 1" in artifacts.markdown and artifacts.table
    assert _planted_found(artifacts.markdown + artifacts.table_text(), ingested.planted) == []
    assert "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )


def test_a_report_that_names_a_patient_is_refused(ingested: Ingested, tmp_path: Path) -> None:
    report = ingested.report
    name = next(v for v in ingested.planted if "^" in v)  # the patient's name, DICOM PN
    planted = dataclasses.replace(
        report,
        review=dataclasses.replace(
            report.review,
            decisions=(
                DecisionLine(
                    9, name.replace("^", " "), "approve", report.generated_at, "x", (), False
                ),
            ),
        ),
    )
    out = tmp_path / "refused.html"
    with (
        Catalog.open(ingested.workspace.catalog_url) as catalog,
        pytest.raises(ReportRefused, match="nothing was written") as refused,
    ):
        write_checked(planted, catalog, ingested.workspace, out)
    assert not out.exists() and not list(tmp_path.iterdir())
    assert name.split("^")[0] not in str(refused.value), "the refusal names no one"
    tmp = ingested.workspace.private / "tmp"
    assert not any(p.name.startswith("report-check-") for p in tmp.iterdir())
    assert name.split("^")[0].upper() not in render_html(report).upper()


def test_the_page_shows_its_sections_and_plots_in_a_browser(
    ingested: Ingested, browser: Any
) -> None:
    context = browser.new_context()
    requests: list[str] = []
    try:
        page = context.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.goto(ingested.html_path.as_uri())
        for section in ("summary", "runs", "rules", "pixels", "review", "phi-views",
                        "releases", "over-time"):  # fmt: skip
            assert page.locator(f"section#{section} h2").is_visible(), section
        charts = page.locator("svg.chart")
        assert charts.count() >= 5
        for index in range(charts.count()):
            box = charts.nth(index).bounding_box()
            assert box is not None and box["width"] > 0 and box["height"] > 0
        assert page.locator("svg.bars rect.bar").count() > 0
        assert page.locator("svg.lines polyline.series").count() > 0
        assert page.locator("table.edits tbody tr").count() > 5
        assert page.locator("table.rule-files tbody tr").count() > 3
    finally:
        context.close()
    assert [url for url in requests if not url.startswith("file://")] == []
