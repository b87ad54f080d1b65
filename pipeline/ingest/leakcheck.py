"""The independent leak check of every processed input before anything is published.

:mod:`pipeline.verify` reads the outputs as a person would and looks for
what identified someone in the inputs; this module only chooses what to
check and moves each item on.  An output with a hit is quarantined (its
input goes to ``QUARANTINED`` with reason ``leak-check``) and flagged for
review; it never reaches ``release/``.  An item whose input is no longer in
``incoming/`` cannot be checked against it and stays ``PROCESSED``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.catalog import Catalog, StateChange
from pipeline.catalog.states import ItemState, ReviewReason
from pipeline.ingest.discovery import IncomingFile
from pipeline.verify import check_outputs, collect_identifiers

LEAK_CHECK = ReviewReason.LEAK_CHECK.value


@dataclass(frozen=True)
class LeakReport:
    """PHI-free: how many items were checked, how many failed, hits by kind and location kind."""

    checked: int
    outputs: int
    failed: int
    unverifiable: int
    hits: Mapping[str, int]


def check_processed(
    catalog: Catalog, run_id: int, files: Mapping[str, IncomingFile], staging: Path
) -> LeakReport:
    """Check the outputs of every ``PROCESSED`` item against the identifiers of all their inputs."""
    items = [i.sha256 for i in catalog.items([ItemState.PROCESSED])]
    present = [sha for sha in items if sha in files]
    if not present:
        return LeakReport(0, 0, 0, len(items), {})
    identifiers = collect_identifiers(files[sha].path for sha in present)
    outputs = catalog.outputs_of(present)
    by_key = {f"{o.input_sha256}/{o.area}/{o.relpath}": o.input_sha256 for o in outputs}
    hits = check_outputs(
        (
            (f"{o.input_sha256}/{o.area}/{o.relpath}", staging / o.area / o.relpath,
             f"{o.area}/{o.relpath}")
            for o in outputs
        ),
        identifiers,
    )  # fmt: skip
    failed = sorted({by_key[hit.output] for hit in hits})
    if failed:
        catalog.transition(
            [StateChange(sha, ItemState.QUARANTINED, LEAK_CHECK) for sha in failed], run_id
        )
        for sha in failed:
            catalog.enqueue_review(sha, [ReviewReason.LEAK_CHECK], run_id)
    kinds = Counter(hit.kind.value for hit in hits)
    return LeakReport(
        len(present), len(outputs), len(failed), len(items) - len(present), dict(kinds)
    )
