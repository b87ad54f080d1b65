"""Which series are head volumes that reach the face (``head`` in ``rules/deface/head.yaml``).

Anatomy first, from the header alone (modality, BodyPartExamined, the words
of ProtocolName and SeriesDescription), then geometry from the frames'
positions, still without decoding a pixel: enough images, and a bounding
box that spans the head in all three directions.  A series whose anatomy
says head and that has enough images but whose frames make no regular stack
is :attr:`HeadVerdict.UNASSEMBLED`: it may carry a face that cannot be
removed, so it goes to review.  Everything else is never touched.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from pipeline.deface.rules import HeadRules
from pipeline.deface.volume import AssemblyError, frame_geometry, stack_geometry

_WORD = re.compile(r"[a-z]+")


class HeadVerdict(enum.Enum):
    """What the rules say about one series (stable codes, counted per run)."""

    HEAD = "head-volume"
    NOT_MR = "not-mr"
    NOT_HEAD = "not-head-anatomy"
    TOO_FEW_IMAGES = "too-few-images"
    SHORT_COVERAGE = "does-not-reach-the-face"
    UNASSEMBLED = "head-not-assembled"


@dataclass(frozen=True)
class HeadDecision:
    verdict: HeadVerdict
    problem: AssemblyError | None = None  # for UNASSEMBLED


def head_anatomy(ds: Dataset, rules: HeadRules) -> bool:
    """Whether the header names a head: body part, or a word of the protocol or series name."""
    if str(ds.get("Modality", "") or "").strip().upper() not in rules.modalities:
        return False
    if str(ds.get("BodyPartExamined", "") or "").strip().upper() in rules.body_parts:
        return True
    return bool(name_words(ds) & rules.anatomy_words)


def name_words(ds: Dataset) -> set[str]:
    text = " ".join(str(ds.get(k, "") or "") for k in ("ProtocolName", "SeriesDescription"))
    return set(_WORD.findall(text.lower()))


def classify_series(headers: Sequence[Dataset], rules: HeadRules) -> HeadDecision:
    """Decide from the headers of one series' images (pixel data need not be read)."""
    first = headers[0]
    if str(first.get("Modality", "") or "").strip().upper() not in rules.modalities:
        return HeadDecision(HeadVerdict.NOT_MR)
    if not head_anatomy(first, rules):
        return HeadDecision(HeadVerdict.NOT_HEAD)
    try:
        planes = [plane for i, ds in enumerate(headers) for plane in frame_geometry(ds, i)]
    except AssemblyError as exc:
        return HeadDecision(HeadVerdict.UNASSEMBLED, exc)
    if len(planes) < rules.min_slices:
        return HeadDecision(HeadVerdict.TOO_FEW_IMAGES)
    try:
        _, affine = stack_geometry(planes)
    except AssemblyError as exc:
        return HeadDecision(HeadVerdict.UNASSEMBLED, exc)
    rows, cols = int(first.get("Rows", 0) or 0), int(first.get("Columns", 0) or 0)
    corners = np.array(
        [[i, j, k, 1.0] for i in (0, cols) for j in (0, rows) for k in (0, len(planes))]
    )
    points = (corners @ affine.T)[:, :3]
    extent = points.max(axis=0) - points.min(axis=0)
    if any(e < need for e, need in zip(extent, rules.min_extent_mm, strict=True)):
        return HeadDecision(HeadVerdict.SHORT_COVERAGE)
    return HeadDecision(HeadVerdict.HEAD)
