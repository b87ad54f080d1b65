"""The audit report for the IRB or data-protection officer: what was done, without any patient.

:func:`build_report` reads the catalog and the workspace into a PHI-free
:class:`~pipeline.report.model.AuditReport`; :func:`write_report` renders it
as one self-contained HTML page (inline SVG plots, nothing fetched) and
:func:`run_artifacts` as the markdown and table artifacts the ingest flow
posts to Prefect.  Both check what they produce with the release's own leak
check (:mod:`pipeline.report.guard`) and refuse, writing nothing, on a hit.

    with Catalog.open(workspace.catalog_url) as catalog:
        path = write_report(catalog, workspace, workspace.root / "reports" / "audit.html")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from pipeline.atomic import atomic_write_text
from pipeline.catalog import Catalog
from pipeline.report.artifacts import MARKDOWN_KEY, TABLE_KEY, RunArtifacts, run_artifacts_of
from pipeline.report.gather import build_report
from pipeline.report.guard import (
    ReportRefused,
    check_texts,
    readable_text,
    workspace_identifiers,
)
from pipeline.report.html import render_html
from pipeline.report.model import AuditReport
from pipeline.workspace import Workspace

__all__ = [
    "MARKDOWN_KEY",
    "TABLE_KEY",
    "AuditReport",
    "ReportRefused",
    "RunArtifacts",
    "build_report",
    "default_report_path",
    "render_html",
    "run_artifacts",
    "write_checked",
    "write_report",
]


def default_report_path(workspace: Workspace, run_id: int | None = None) -> Path:
    """``W/reports/audit[-run-N].html``: outside ``private/``, it is meant to be shared."""
    name = f"audit-run-{run_id}.html" if run_id is not None else "audit.html"
    return workspace.root / "reports" / name


def checked_html(
    report: AuditReport, catalog: Catalog, workspace: Workspace, inputs: Iterable[Path] = ()
) -> str:
    """The page of ``report``, after the leak check found nothing in it (else ReportRefused)."""
    html = render_html(report)
    check_texts(
        {"report.html": html, "report-text.txt": readable_text(html)},
        workspace_identifiers(catalog, inputs),
        workspace.private / "tmp",
    )
    return html


def write_report(
    catalog: Catalog,
    workspace: Workspace,
    out: Path,
    *,
    run_id: int | None = None,
    inputs: Iterable[Path] | None = None,
) -> Path:
    """Build, check and atomically write the HTML report; return its path.

    ``inputs``: files whose identifiers the check looks for besides the link
    table's originals (default: everything in ``incoming/``).

    Raises
    ------
    ReportRefused
        The report holds an identifying value of the inputs; nothing was written.
    LookupError
        ``run_id`` is not a run of this catalog.
    """
    report = build_report(catalog, workspace, run_id=run_id)
    found = [workspace.incoming] if inputs is None else list(inputs)
    return write_checked(report, catalog, workspace, out, found)


def write_checked(
    report: AuditReport,
    catalog: Catalog,
    workspace: Workspace,
    out: Path,
    inputs: Iterable[Path] = (),
) -> Path:
    """Render ``report``, check it, write it atomically (nothing is written on a hit)."""
    atomic_write_text(out, checked_html(report, catalog, workspace, inputs))
    return out


def run_artifacts(
    catalog: Catalog,
    workspace: Workspace,
    run_id: int,
    summary: Mapping[str, object],
    *,
    inputs: Iterable[Path] = (),
) -> RunArtifacts:
    """The checked artifacts of a run still open (its summary not yet recorded).

    Raises
    ------
    ReportRefused
        An artifact holds an identifying value of the inputs.
    """
    report = build_report(catalog, workspace, run_id=run_id, open_run=(run_id, summary))
    artifacts = run_artifacts_of(report)
    check_texts(
        {"run-report.md": artifacts.markdown, "run-rule-edits.json": artifacts.table_text()},
        workspace_identifiers(catalog, inputs),
        workspace.private / "tmp",
    )
    return artifacts
