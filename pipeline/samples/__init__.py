"""Deterministic synthetic DICOM samples with planted PHI, for tests, the demo and the benchmark."""

from __future__ import annotations

from pipeline.samples.csa import encode_csa
from pipeline.samples.mr import (
    PlantedPHI,
    Subject,
    diffusion_series,
    enhanced_mr,
    make_subjects,
    mr_series,
    name_variant,
    other_objects,
    write_sample_tree,
)

__all__ = [
    "PlantedPHI",
    "Subject",
    "diffusion_series",
    "encode_csa",
    "enhanced_mr",
    "make_subjects",
    "mr_series",
    "name_variant",
    "other_objects",
    "write_sample_tree",
]
