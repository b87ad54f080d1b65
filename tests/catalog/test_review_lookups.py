"""What the review page looks up: one queue entry (decided or not), where its content was seen."""

from __future__ import annotations

import pytest

from pipeline.catalog import (
    Catalog,
    CatalogError,
    Decision,
    InputKind,
    ReviewReason,
    Sighting,
)
from tests.catalog.conftest import sha, staged


def test_an_entry_decided_or_not_and_the_paths_its_content_was_seen_at(
    catalog: Catalog, run: int
) -> None:
    item = sha("a")
    catalog.register([(item, InputKind.DICOM, 10)], run)
    staged(catalog, run, item)
    catalog.record_sightings([(b"/in/DOE^JOHN/1.dcm", Sighting(10, 1, item))])
    catalog.record_sightings([(b"/in/copy/\xff.dcm", Sighting(10, 2, item))])
    queue = catalog.enqueue_review(
        item, [ReviewReason.SPOT_CHECK, ReviewReason.PIXEL_FINDINGS], run
    )
    entry = catalog.review_entry(queue)
    assert (entry.queue_id, entry.sha256, entry.run_id) == (queue, item, run)
    assert entry.reasons == (ReviewReason.PIXEL_FINDINGS, ReviewReason.SPOT_CHECK)
    catalog.decide(queue, Decision.APPROVE, reviewer="r", reason="", ruleset_version="v")
    assert catalog.review_entry(queue).reasons == entry.reasons  # decided: still there
    with pytest.raises(CatalogError, match="no review 999"):
        catalog.review_entry(999)
    # The latest sighting first; any bytes a file system gives.
    assert catalog.paths_of(item) == [b"/in/copy/\xff.dcm", b"/in/DOE^JOHN/1.dcm"]
    assert catalog.paths_of(sha("never seen")) == []
