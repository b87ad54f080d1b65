"""Why a written output waits for a person: the step's doubts become review reasons."""

from __future__ import annotations

from pipeline.batch.step import StepResult
from pipeline.catalog.states import ReviewReason
from pipeline.ingest.process import review_reasons_of
from pipeline.reasons import DOUBTS, Outcome, Reason


def test_each_doubt_and_cleaned_pixels_become_review_reasons_once() -> None:
    sha = "a" * 64
    assert review_reasons_of(StepResult(Outcome.WRITTEN, sha)) == []
    result = StepResult(
        Outcome.WRITTEN,
        sha,
        facts=(("pixels cleaned", 1),),
        doubts=(Reason.FREE_TEXT_NAMED_SUBJECT, Reason.UNKNOWN_PRIVATE_CREATOR_KEPT),
    )
    assert review_reasons_of(result) == [
        ReviewReason.PIXEL_FINDINGS,
        ReviewReason.CLEANING_DOUBT,
        ReviewReason.UNKNOWN_PRIVATE_CREATOR,
    ]
    assert all(doubt.outcome is Outcome.WRITTEN for doubt in DOUBTS)  # written, not held back
