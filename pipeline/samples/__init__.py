"""Deterministic synthetic DICOM samples with planted PHI, for tests, the demo and the benchmark.

Tests, ``mricurate demo`` and the benchmark need inputs that look like a
hospital export (Siemens and GE private blocks, a binary CSA header, nested
request sequences, names with accents, PHI in folder names) but that contain
no real patient.  Everything here is deterministic from a seed, so a failing
test can be replayed byte for byte, and every planted value is recorded in
:class:`PlantedPHI` so a test can assert that none of it survives.
"""

from __future__ import annotations

from pipeline.samples.classic_mr import mr_series
from pipeline.samples.csa import encode_csa
from pipeline.samples.diffusion import diffusion_series
from pipeline.samples.enhanced_mr import enhanced_mr
from pipeline.samples.export_tree import write_sample_tree
from pipeline.samples.other_objects import other_objects
from pipeline.samples.philips import philips_dti_series, philips_enhanced_dti
from pipeline.samples.subjects import PlantedPHI, Subject, make_subjects, name_variant

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
    "philips_dti_series",
    "philips_enhanced_dti",
    "write_sample_tree",
]
