"""Where each checked item goes: to a person, or on to the release.

Doubtful outputs (pixel text blanked, text cleaned by a default rule, a
subject the converter could not name) were queued when they were made; on
top of these a share of series is drawn for a spot check, deterministically
from the key (the same series is drawn on every rerun, and which series are
drawn cannot be predicted without the key).  Everything else is
``VERIFIED``.  A reviewer's approval moves an item on at the next run, a
rejection keeps it out of every release.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.catalog import Catalog, StateChange
from pipeline.catalog.states import Decision, ItemState, ReviewReason
from pipeline.keys import SecretKey

_SPOT_DOMAIN = "spot-check"


@dataclass(frozen=True)
class RouteReport:
    verified: int
    to_review: int
    spot_checks: int
    approved: int
    rejected: int


def drawn_for_spot_check(key: SecretKey, series: str, share: float) -> bool:
    """Whether ``series`` (an output's series folder, pseudonymous) is in the spot-check sample."""
    if share <= 0:
        return False
    point = int.from_bytes(key.mac(_SPOT_DOMAIN, series)[:8], "big") / 2**64
    return point < share


def route(catalog: Catalog, run_id: int, key: SecretKey, spot_check_share: float) -> RouteReport:
    """Move ``PROCESSED`` items to ``NEEDS_REVIEW`` or ``VERIFIED``; apply reviewers' decisions."""
    queued = {r.sha256: r.reasons for r in catalog.pending_reviews()}
    processed = [i.sha256 for i in catalog.items([ItemState.PROCESSED])]
    outputs = catalog.outputs_of(processed)
    series: dict[str, set[str]] = {}
    for o in outputs:
        series.setdefault(o.input_sha256, set()).add(f"{o.area}/{o.relpath.rsplit('/', 1)[0]}")
    changes, spot = [], []
    for sha in processed:
        if sha in queued:
            first = queued[sha][0] if queued[sha] else ReviewReason.CLEANING_DOUBT
            changes.append(StateChange(sha, ItemState.NEEDS_REVIEW, first.value))
        elif any(drawn_for_spot_check(key, s, spot_check_share) for s in series.get(sha, ())):
            spot.append(sha)
            changes.append(StateChange(sha, ItemState.NEEDS_REVIEW, ReviewReason.SPOT_CHECK.value))
        else:
            changes.append(StateChange(sha, ItemState.VERIFIED, None))
    for sha in spot:
        catalog.enqueue_review(sha, [ReviewReason.SPOT_CHECK], run_id)
    decided = _decided(catalog, queued)
    approve, reject = Decision.APPROVE, Decision.REJECT
    changes += [StateChange(sha, ItemState.VERIFIED, approve.value) for sha in decided[approve]]
    changes += [StateChange(sha, ItemState.QUARANTINED, reject.value) for sha in decided[reject]]
    catalog.transition(changes, run_id)
    counts = Counter(c.to for c in changes)
    return RouteReport(
        verified=counts[ItemState.VERIFIED] - len(decided[Decision.APPROVE]),
        to_review=counts[ItemState.NEEDS_REVIEW], spot_checks=len(spot),
        approved=len(decided[Decision.APPROVE]), rejected=len(decided[Decision.REJECT]),
    )  # fmt: skip


def _decided(catalog: Catalog, queued: Mapping[str, object]) -> dict[Decision, list[str]]:
    """Items awaiting review whose latest decision approves or rejects them (none pending)."""
    found: dict[Decision, list[str]] = {Decision.APPROVE: [], Decision.REJECT: []}
    for item in catalog.items([ItemState.NEEDS_REVIEW]):
        if item.sha256 in queued:
            continue
        decisions = catalog.decisions(item.sha256)
        if decisions and decisions[-1].decision in found:
            found[decisions[-1].decision].append(item.sha256)
    return found
