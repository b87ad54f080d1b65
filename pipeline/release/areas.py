"""The areas of a release: one folder per kind of data."""

from __future__ import annotations

import enum


class DataArea(enum.Enum):
    """Where a released file lives in a version: ``release/<version>/<area>/...``.

    ``DICOM`` holds de-identified DICOM objects, ``RAW`` anonymized ISMRMRD
    files (raw k-space), ``FASTMRI`` training files in the fastMRI layout made
    from the raw files.
    """

    DICOM = "dicom"
    RAW = "raw"
    FASTMRI = "fastmri"
