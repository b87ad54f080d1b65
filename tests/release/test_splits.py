"""Splits per subject: fixed by the key, never moved by later subjects or later ratios."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.keys import SecretKey
from pipeline.release import Split, SplitRatios, split_of
from pipeline.release.splits import assign_splits
from tests.keyed import digest

subjects = st.lists(st.integers(0, 32**10 - 1), unique=True, max_size=40).map(
    lambda numbers: [f"SUBJ-{n:010X}" for n in numbers]
)
keys = st.binary(min_size=32, max_size=32).map(SecretKey)


@st.composite
def ratios(draw: st.DrawFn) -> SplitRatios:
    """Shares that add up to 1, zeros and ones included."""
    cuts = sorted(draw(st.lists(st.sampled_from([0, 1, 2, 3, 5, 8, 10]), min_size=2, max_size=2)))
    a, b = cuts[0] / 10, cuts[1] / 10
    return SplitRatios(
        train=min(a, 1.0), validation=min(b, 1.0) - min(a, 1.0), test=1 - min(b, 1.0)
    )


def expected_split(key: SecretKey, subject: str, r: SplitRatios) -> Split:
    """The documented rule, recomputed from hmac: 53 bits of HMAC('release-split', subject)."""
    point = (
        int.from_bytes(digest(key.material, "release-split", subject)[:8], "big") >> 11
    ) / 2**53
    if r.train > 0 and point < r.train:
        return Split.TRAIN
    if r.validation > 0 and (point < r.train + r.validation or r.test == 0):
        return Split.VALIDATION
    return Split.TEST if r.test > 0 else Split.TRAIN


@settings(max_examples=30, deadline=None)
@given(keys, subjects, ratios())
def test_split_is_the_documented_keyed_point(
    key: SecretKey, names: list[str], r: SplitRatios
) -> None:
    for name in names:
        assert split_of(key, name, r) is expected_split(key, name, r)


@settings(max_examples=30, deadline=None)
@given(keys, subjects, subjects, ratios(), ratios())
def test_adding_subjects_never_moves_one(
    key: SecretKey, first: list[str], later: list[str], r1: SplitRatios, r2: SplitRatios
) -> None:
    """Version 1 has ``first``; version 2 adds ``later`` under other ratios: nobody moves."""
    v1 = assign_splits(first, key, r1, earlier={})
    v2 = assign_splits(first + later, key, r2, earlier=v1)
    assert {s: v2[s] for s in first} == v1
    for name in set(later) - set(first):
        assert v2[name] is split_of(key, name, r2)  # the new ratios apply to new subjects


@settings(max_examples=10, deadline=None)
@given(keys, ratios())
def test_ratios_are_met_on_1000_subjects(key: SecretKey, r: SplitRatios) -> None:
    n = 1000
    counts = Counter(split_of(key, f"SUBJ-{i:010d}", r) for i in range(n))
    for split, share in r.shares():
        # Binomial: within 5 standard deviations (a false alarm about once in 10^6 runs).
        tolerance = 5 * math.sqrt(n * share * (1 - share)) + 1
        assert abs(counts[split] - n * share) <= tolerance, (split, counts, r)
        if share == 0:
            assert counts[split] == 0


def test_same_key_same_splits_other_key_others() -> None:
    names = [f"SUBJ-{i:010d}" for i in range(300)]
    r = SplitRatios(0.7, 0.2, 0.1)
    key = SecretKey(b"k" * 32)
    first = [split_of(key, s, r) for s in names]
    assert first == [split_of(SecretKey(b"k" * 32), s, r) for s in names]
    other = [split_of(SecretKey(b"o" * 32), s, r) for s in names]
    assert sum(a is not b for a, b in zip(first, other, strict=True)) > 50


@pytest.mark.parametrize(
    ("train", "validation", "test"),
    [(0.8, 0.1, 0.2), (0.5, 0.4, 0.0), (1.2, -0.1, -0.1), (math.nan, 0.5, 0.5), (0.0, 0.0, 0.0)],
)
def test_ratios_that_are_not_shares_are_refused(
    train: float, validation: float, test: float
) -> None:
    with pytest.raises(ValueError, match="split ratio"):
        SplitRatios(train, validation, test)


def test_ratios_with_binary_rounding_are_accepted() -> None:
    assert SplitRatios(0.7, 0.2, 0.1).train == 0.7  # 0.7 + 0.2 + 0.1 == 0.9999999999999999
