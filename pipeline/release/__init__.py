"""Versioned releases: ``release/<version>/`` with curated manifests (issue 10).

A version holds the released data (``dicom/``, ``raw/``, ``fastmri/``), one
manifest row per file in Parquet and CSV checked against
``data_contracts/manifest.schema.json``, a Frictionless ``datapackage.json``,
``SHA256SUMS``, a dataset card and a changelog.  Versions are immutable and
appear whole or not at all (:mod:`pipeline.release.publish`); subjects are
split into train, validation and test by the key (:mod:`pipeline.release.splits`).

This package reads the released files themselves (pydicom, h5py); it never
imports the runner, the steps or the private store: the caller says what to
publish, and records what was published from the result.
"""

from __future__ import annotations

from pipeline.release.areas import DataArea
from pipeline.release.errors import ContractViolation, ReleaseError
from pipeline.release.publish import Publishable, PublishResult, ReleasedFileRow, publish
from pipeline.release.splits import Split, SplitRatios, split_of
from pipeline.release.versions import latest_version

__all__ = [
    "ContractViolation",
    "DataArea",
    "PublishResult",
    "Publishable",
    "ReleaseError",
    "ReleasedFileRow",
    "Split",
    "SplitRatios",
    "latest_version",
    "publish",
    "split_of",
]
