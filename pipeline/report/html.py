"""The report as one self-contained HTML page: inline CSS, inline SVG, no script, no link out.

A Content-Security-Policy in the page itself forbids loading anything, so
even a browser that is online fetches nothing when the officer opens it.
Every text of the model goes through :func:`html.escape`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from html import escape

from pipeline.report.model import AuditReport, Count, RunAccount
from pipeline.report.svg import bar_chart, line_chart

_CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.9em; } .ok { color: #17692b; } .bad { color: #a3001b; font-weight: bold; }
figure { margin: 1em 0; } .note { color: #555; font-size: 0.9em; }
"""
_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _table(head: Sequence[str], rows: Iterable[Sequence[object]], *, cls: str = "") -> str:
    out = [f'<table class="{cls}"><thead><tr>']
    out += [f"<th>{escape(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    empty = True
    for row in rows:
        empty = False
        out.append("<tr>")
        for cell in row:
            numeric = isinstance(cell, int | float) and not isinstance(cell, bool)
            text = f"{cell:g}" if isinstance(cell, float) else str(cell)
            out.append(f'<td class="n">{text}</td>' if numeric else f"<td>{escape(text)}</td>")
        out.append("</tr>")
    if empty:
        out.append(f'<tr><td colspan="{len(head)}">none</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


def _counts(head: str, counts: Sequence[Count], *, cls: str = "") -> str:
    return _table((head, "count"), ((c.label, c.count) for c in counts), cls=cls)


def _figure(svg: str, caption: str) -> str:
    return f'<figure>{svg}<figcaption class="note">{escape(caption)}</figcaption></figure>'


def _leak(run: RunAccount) -> str:
    leak = run.leak_check
    if leak is None:
        return "no leak check recorded"
    if leak.passed:
        return f"passed: {leak.outputs} outputs of {leak.checked} inputs"
    hits = ", ".join(f"{c.label} {c.count}" for c in leak.hits) or "none"
    return (
        f"FAILED: {leak.failed} inputs quarantined, {leak.unverifiable} not verifiable "
        f"(hits by kind: {hits})"
    )


def _section(ident: str, title: str, *body: str) -> str:
    return f'<section id="{ident}"><h2>{escape(title)}</h2>{"".join(body)}</section>'


def render_html(report: AuditReport) -> str:
    """The report page."""
    scope = f"run {report.run_id}" if report.run_id is not None else "all runs"
    runs = report.runs
    leak_cells = [(r.run_id, _leak(r)) for r in runs]
    summary = _section(
        "summary", "In total",
        f"<p>{report.total_in} inputs came in over {len(runs)} run(s) in scope; "
        f"{report.withdrawn_subjects} subject(s) withdrew consent.</p>",
        "<h3>Inputs by state now</h3>", _counts("state", report.items_by_state),
        "<h3>Inputs by kind</h3>", _counts("kind", report.items_by_kind),
        "<h3>Quarantined now, by reason</h3>", _counts("reason", report.quarantined_by_reason),
    )  # fmt: skip
    run_rows = (
        (
            r.run_id,
            r.command,
            r.status,
            _when(r.started_at),
            _when(r.finished_at),
            r.came_in,
            r.processed,
            r.released,
            r.quarantined_total,
            r.to_review,
            r.withdrawn,
            r.version or "—",
            r.seconds if r.seconds is not None else "—",
        )
        for r in runs
    )
    quarantine_rows = ((r.run_id, c.label, c.count) for r in runs for c in r.quarantined)
    throughput = [
        Count(f"run {r.run_id}", round(r.files_per_second or 0.0, 1))
        for r in runs
        if r.files_per_second is not None
    ]
    per_run = _section(
        "runs", "Per run",
        _table(("run", "command", "status", "started", "finished", "came in", "processed",
                "released", "quarantined", "to review", "withdrawn", "version", "seconds"),
               run_rows, cls="runs"),
        "<h3>Quarantined, by run and reason</h3>",
        _table(("run", "reason", "inputs"), quarantine_rows),
        "<h3>Leak check, per run</h3>",
        _table(("run", "result"), leak_cells, cls="leak-check"),
        _figure(bar_chart("Throughput per run (inputs processed per second)", throughput),
                "Inputs processed by a run, over the wall seconds of its stages."),
    )  # fmt: skip
    rules = report.rules
    rule_sets = "".join(
        f"<h3>Rule-set version <code>{escape(s.version)}</code> (runs "
        f"{escape(', '.join(map(str, s.runs)))})</h3>"
        + (
            _table(("rule file", "sha256"), sorted(s.files.items()), cls="rule-files")
            if s.files
            else '<p class="note">rule file hashes not recorded by these runs</p>'
        )
        for s in rules.rule_sets
    )
    rules_section = _section(
        "rules", "What the rules did",
        f"<p>{rules.elements_changed} header elements changed.</p>", rule_sets,
        "<h3>Elements by action</h3>", _counts("action", rules.by_action),
        "<h3>Per rule and attribute</h3>",
        _table(("rule", "attribute", "action", "elements"),
               ((e.rule, e.attribute, e.action, e.count) for e in rules.edits), cls="edits"),
        "<h3>Decided by a VR default (no rule names the attribute)</h3>",
        _counts("VR and action", rules.by_default),
        "<h3>Other facts of the steps</h3>", _counts("fact", rules.other_facts),
    )  # fmt: skip
    pixels = report.pixels
    pixel_section = _section(
        "pixels", "Burned-in text (pixel findings)",
        "<h3>What the pixel scan did</h3>", _counts("outcome", pixels.outcomes),
        "<h3>Kept from release for a person: text signalled or found that could not be "
        "blanked</h3>",
        _counts("reason", pixels.held_back),
        f"<p>{pixels.queued} queued for review for pixel findings; {pixels.pending} "
        "still waiting.</p>",
        _counts("latest decision", pixels.decided),
    )  # fmt: skip
    defacing = [(r.run_id, r.deface) for r in runs if r.deface is not None]
    deface_rows = (
        (run_id, "on" if d.enabled else "off", d.series, d.head_volumes, d.defaced,
         d.already_defaced, d.failed, d.head_kspace_held, d.seconds_per_volume)
        for run_id, d in defacing
    )  # fmt: skip
    deface_section = _section(
        "defacing", "Defacing (head volumes and head k-space)",
        "<p>Head volumes are defaced by <code>rules/deface</code>: the face under a "
        "registered template's mask removed (or blurred), the brain left as it was. A head "
        "that cannot be assembled or fails the quality check waits for review "
        "(<code>deface-failed</code>); raw k-space of a head scan is held for review "
        "(<code>head-kspace</code>) unless the rules release it.</p>",
        _table(("run", "defacing", "series", "head volumes", "defaced", "already defaced",
                "deface failures", "head k-space held", "slowest series (s)"),
               deface_rows, cls="defacing"),
        "<h3>Deface failures, by run and reason</h3>",
        _table(("run", "reason", "series"),
               ((run_id, c.label, c.count) for run_id, d in defacing for c in d.problems)),
    )  # fmt: skip
    review = report.review
    decisions = (
        (d.queue_id, d.reviewer, d.decision, _when(d.decided_at), ", ".join(d.queue_reasons),
         "yes" if d.with_reason else "no", d.ruleset_version)
        for d in review.decisions
    )  # fmt: skip
    review_section = _section(
        "review", "Review queue and decisions",
        f"<p>{review.queued} queue entries, {review.pending} waiting for a decision; "
        f"{len(review.decisions)} decisions, {review.decisions_with_reason} with a reason "
        "(reviewers' words stay in the private catalog).</p>",
        "<h3>Why entries were queued</h3>", _counts("reason", review.by_reason),
        "<h3>Latest decision per entry</h3>", _counts("decision", review.by_decision),
        "<h3>Decisions by reviewer</h3>", _counts("reviewer", review.by_reviewer),
        "<h3>Every decision</h3>",
        _table(("entry", "reviewer", "decision", "at", "queued for", "reason given",
                "rule-set version"), decisions, cls="decisions"),
        _figure(line_chart("Review backlog (entries waiting)",
                           [p.label for p in report.backlog_over_time],
                           {"waiting": [p.pending for p in report.backlog_over_time]}),
                "Entries queued and not yet decided, at the end of each run and now."),
    )  # fmt: skip
    per: dict[tuple[str, str], int] = {}
    seen: dict[tuple[str, str], set[str]] = {}
    for view in report.phi_views:
        per[(view.reviewer, view.what)] = per.get((view.reviewer, view.what), 0) + 1
        seen.setdefault((view.reviewer, view.what), set()).add(view.input)
    inputs = len({view.input for view in report.phi_views})
    views = (
        f"<p>{len(report.phi_views)} views of PHI recorded, of {inputs} input(s) "
        "(each image frame or original header shown counts once).</p>"
        + _table(
            ("reviewer", "what", "views", "inputs"),
            ((r, w, n, len(seen[(r, w)])) for (r, w), n in sorted(per.items())),
        )
    )
    views_section = _section("phi-views", "Reviewers' views of PHI", views)
    latest = report.latest_release
    contents = (
        '<p class="note">nothing released yet</p>'
        if latest is None
        else f"<p>Latest release <code>{escape(latest.version)}</code>: {latest.files} files of "
        f"{latest.subjects} subject(s).</p>"
        + _counts("area", latest.by_area)
        + _figure(bar_chart(f"Acquisition types in {latest.version}", latest.by_acquisition),
                  "Files per acquisition type, from the release manifest.")
        + _figure(bar_chart(f"Field strengths in {latest.version}", latest.by_field_strength),
                  "Files per magnetic field strength, from the release manifest.")
    )  # fmt: skip
    release_section = _section(
        "releases", "Releases",
        _table(("version", "published", "run", "files", "changes"),
               ((r.version, _when(r.created_at), r.run_id, r.files,
                 ", ".join(f"{c.label} {c.count}" for c in r.changes) or "—")
                for r in report.releases), cls="releases"),
        contents,
    )  # fmt: skip
    states = report.states_over_time
    names = list(dict.fromkeys(c.label for p in states for c in p.states))
    over_time = _section(
        "over-time", "Inputs per state over time",
        _figure(line_chart("Inputs per state", [p.label for p in states],
                           {n: [next((c.count for c in p.states if c.label == n), 0)
                                for p in states] for n in names}),
                "Inputs in each state at the end of each run and now."),
    )  # fmt: skip
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">'
        f"<title>{escape(report.title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(report.title)}</h1>"
        f'<p class="note">Generated {_when(report.generated_at)}, covering {scope}. It holds '
        "counts, codes, versions, hashes, times and reviewers' names only: no patient, no "
        "input, no value of a file.</p>"
        + summary
        + per_run
        + rules_section
        + pixel_section
        + deface_section
        + review_section
        + views_section
        + release_section
        + over_time
        + "</body></html>\n"
    )
