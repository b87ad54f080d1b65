"""Where each checked item goes: to a person, or on to the release.

Doubtful outputs (pixel text blanked, text cleaned by a default rule, a
subject the converter could not name) were queued when they were made; on
top of these a share of series is drawn for a spot check, deterministically
from the key (the same series is drawn on every rerun, and which series are
drawn cannot be predicted without the key).  Everything else is
``VERIFIED``.  A reviewer's decision moves the item itself
(:meth:`pipeline.catalog.Catalog.decide`): an approved item is ``VERIFIED``
and published by the next run, a rejected one is kept out of every release.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pipeline.catalog import Catalog, StateChange
from pipeline.catalog.states import ItemState, ReviewReason
from pipeline.keys import SecretKey

_SPOT_DOMAIN = "spot-check"


@dataclass(frozen=True)
class RouteReport:
    verified: int
    to_review: int
    spot_checks: int


def drawn_for_spot_check(key: SecretKey, series: str, share: float) -> bool:
    """Whether ``series`` (an output's series folder, pseudonymous) is in the spot-check sample."""
    if share <= 0:
        return False
    point = int.from_bytes(key.mac(_SPOT_DOMAIN, series)[:8], "big") / 2**64
    return point < share


def route(catalog: Catalog, run_id: int, key: SecretKey, spot_check_share: float) -> RouteReport:
    """Move ``PROCESSED`` items to ``NEEDS_REVIEW`` (queued doubts, spot checks) or ``VERIFIED``."""
    queued = {r.sha256: r.reasons for r in catalog.pending_reviews()}
    processed = [i.sha256 for i in catalog.items([ItemState.PROCESSED])]
    outputs = catalog.outputs_of(processed)
    series: dict[str, set[str]] = {}
    for o in outputs:
        series.setdefault(o.input_sha256, set()).add(f"{o.area}/{o.relpath.rsplit('/', 1)[0]}")
    changes, spot = [], []
    for sha in processed:
        if sha in queued:
            reasons = queued[sha]
            # Back after a redaction: that is what the person checks first.
            first = (
                ReviewReason.REDACTED
                if ReviewReason.REDACTED in reasons
                else (reasons[0] if reasons else ReviewReason.CLEANING_DOUBT)
            )
            changes.append(StateChange(sha, ItemState.NEEDS_REVIEW, first.value))
        elif any(drawn_for_spot_check(key, s, spot_check_share) for s in series.get(sha, ())):
            spot.append(sha)
            changes.append(StateChange(sha, ItemState.NEEDS_REVIEW, ReviewReason.SPOT_CHECK.value))
        else:
            changes.append(StateChange(sha, ItemState.VERIFIED, None))
    for sha in spot:
        catalog.enqueue_review(sha, [ReviewReason.SPOT_CHECK], run_id)
    catalog.transition(changes, run_id)
    counts = Counter(c.to for c in changes)
    return RouteReport(counts[ItemState.VERIFIED], counts[ItemState.NEEDS_REVIEW], len(spot))
