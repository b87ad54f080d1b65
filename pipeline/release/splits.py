"""Train, validation and test splits, per subject and fixed by the key.

Each subject gets a point in ``[0, 1)`` from a keyed HMAC of its pseudonym
and falls into the split whose share of the interval holds that point:
``[0, train)`` is train, ``[train, train + validation)`` validation, the rest
test.  The point depends on the key and the subject alone, so

- every file of a subject is in one split (no subject spans two, which
  would leak a patient's anatomy from training into evaluation);
- adding subjects later never moves an existing one, because no other
  subject takes part in deciding it;
- the same key gives the same splits on any machine, and nothing but the
  key is needed to repeat them (no table of assignments to keep).

Changing the ratios would move the subjects whose points lie between the old
and the new boundaries; :func:`assign_splits` (what a publish uses) therefore
keeps the split a subject was first released in, and applies the ratios to
new subjects only.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pipeline.keys import SecretKey

_DOMAIN = "release-split"
_POINT_BITS = 53  # a float in [0, 1) represents every multiple of 2**-53 exactly


class Split(enum.Enum):
    """The part of a release a subject's files belong to."""

    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


@dataclass(frozen=True)
class SplitRatios:
    """Shares of the subjects in each split: each in ``[0, 1]``, together 1.

    Raises
    ------
    ValueError
        A share that is negative, larger than 1 or not a number, or shares
        that do not add up to 1 (within 1e-6: ``0.7, 0.2, 0.1`` is accepted
        although its binary sum is 0.9999999999999999).
    """

    train: float
    validation: float
    test: float

    def __post_init__(self) -> None:
        shares = self.shares()
        for split, share in shares:
            if not isinstance(share, int | float) or not math.isfinite(share):
                raise ValueError(f"split ratio {split.value} must be a number, got {share!r}")
            if not 0 <= share <= 1:
                raise ValueError(f"split ratio {split.value} must lie in [0, 1], got {share}")
        total = math.fsum(share for _, share in shares)
        if not math.isclose(total, 1.0, rel_tol=0, abs_tol=1e-6):
            raise ValueError(
                f"split ratios must add up to 1, got {self.train} + {self.validation} + "
                f"{self.test} = {total}; set train, validation and test shares that do"
            )

    def shares(self) -> tuple[tuple[Split, float], ...]:
        """``(split, share)`` in the order the interval ``[0, 1)`` is cut."""
        return (
            (Split.TRAIN, self.train),
            (Split.VALIDATION, self.validation),
            (Split.TEST, self.test),
        )


def split_point(key: SecretKey, subject: str) -> float:
    """The subject's fixed point in ``[0, 1)``: 53 bits of a keyed HMAC of its pseudonym."""
    digest = key.mac(_DOMAIN, subject)
    return (int.from_bytes(digest[:8], "big") >> (64 - _POINT_BITS)) / (1 << _POINT_BITS)


def split_of(key: SecretKey, subject: str, ratios: SplitRatios) -> Split:
    """The split of ``subject`` (a pseudonym) under ``key`` and ``ratios``.

    A split with share 0 never gets a subject, even where the shares add up
    to slightly less than 1 in binary: the last split with a positive share
    takes the rest of the interval.
    """
    point = split_point(key, subject)
    positive = [(split, share) for split, share in ratios.shares() if share > 0]
    bound = 0.0
    for split, share in positive[:-1]:
        bound += share
        if point < bound:
            return split
    return positive[-1][0]


def assign_splits(
    subjects: Iterable[str], key: SecretKey, ratios: SplitRatios, *, earlier: Mapping[str, Split]
) -> dict[str, Split]:
    """Each subject's split: the one it was given ``earlier`` (a previous version), else its own.

    A subject never moves, even when the ratios change between versions:
    the new ratios apply to subjects released for the first time.
    """
    return {
        subject: earlier[subject] if subject in earlier else split_of(key, subject, ratios)
        for subject in subjects
    }
