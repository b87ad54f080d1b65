"""The report of one run as Prefect artifacts: a markdown summary and a table of the rules' edits.

Prefect keeps artifacts in its database, where anyone with the server's
disk or API reads them: they are built from the same PHI-free model as the
HTML page and pass the same leak check before the flow hands them over
(:func:`pipeline.report.run_artifacts`).  Plain data here; the flow calls
Prefect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pipeline.report.model import AuditReport, Count

#: Artifact keys (Prefect: lower-case letters, digits and dashes).
MARKDOWN_KEY = "mricurate-run-report"
TABLE_KEY = "mricurate-run-rule-edits"
_TOP_EDITS = 25


@dataclass(frozen=True)
class RunArtifacts:
    """What the flow posts for its run (checked: no identifier of the inputs in them)."""

    markdown: str
    table: tuple[dict[str, str | int], ...]

    def table_text(self) -> str:
        """The table as the leak check reads it (JSON, as Prefect stores it)."""
        return json.dumps(list(self.table), ensure_ascii=False, indent=1)


def _line(counts: tuple[Count, ...]) -> str:
    return ", ".join(f"{c.label} {c.count:g}" for c in counts) or "none"


def run_markdown(report: AuditReport) -> str:
    """The markdown summary of the report's run (or runs)."""
    lines = [f"# {report.title}", ""]
    for run in report.runs:
        lines += [
            f"## Run {run.run_id} ({run.command}, {run.status})",
            "",
            "| came in | processed | released | quarantined | to review | version |",
            "|---:|---:|---:|---:|---:|---|",
            f"| {run.came_in} | {run.processed} | {run.released} | {run.quarantined_total} "
            f"| {run.to_review} | {run.version or '-'} |",
            "",
            f"- quarantined by reason: {_line(run.quarantined)}",
        ]
        leak = run.leak_check
        if leak is None:
            lines.append("- leak check: not recorded")
        else:
            verdict = "passed" if leak.passed else "FAILED"
            lines.append(
                f"- leak check: {verdict} ({leak.outputs} outputs of {leak.checked} inputs; "
                f"{leak.failed} failed, {leak.unverifiable} not verifiable; hits by kind: "
                f"{_line(leak.hits)})"
            )
        deface = run.deface
        if deface is not None and deface.enabled:
            lines.append(
                f"- defacing: {deface.defaced} series defaced, {deface.failed} deface "
                f"failures to review ({_line(deface.problems)}), {deface.head_kspace_held} "
                "head k-space held"
            )
        lines += [f"- rule-set version: `{run.ruleset_version}`", ""]
    rules = report.rules
    lines += [
        "## What the rules did",
        "",
        f"- elements changed: {rules.elements_changed} ({_line(rules.by_action)})",
        f"- decided by a VR default: {_line(rules.by_default)}",
        f"- pixel scan: {_line(report.pixels.outcomes)}; kept for a person "
        f"(text not blanked): {_line(report.pixels.held_back)}",
        f"- review queue: {report.review.queued} entries, {report.review.pending} waiting",
        "",
    ]
    for rule_set in rules.rule_sets:
        lines.append(f"Rule files of version `{rule_set.version}`:")
        lines += [f"- `{name}` sha256 `{digest}`" for name, digest in rule_set.files.items()]
        lines.append("")
    if rules.edits:
        lines += ["| rule | attribute | action | elements |", "|---|---|---|---:|"]
        lines += [
            f"| {e.rule} | {e.attribute} | {e.action} | {e.count} |"
            for e in rules.edits[:_TOP_EDITS]
        ]
        if len(rules.edits) > _TOP_EDITS:
            lines.append(f"\n({len(rules.edits) - _TOP_EDITS} more in the table artifact)")
    return "\n".join(lines) + "\n"


def run_artifacts_of(report: AuditReport) -> RunArtifacts:
    """Both artifacts of a report (not yet checked)."""
    table: tuple[dict[str, str | int], ...] = tuple(
        {"rule": e.rule, "attribute": e.attribute, "action": e.action, "elements": e.count}
        for e in report.rules.edits
    )
    return RunArtifacts(run_markdown(report), table)
