"""What happens to one input of a run: the same outcomes on the DICOM and the raw side."""

from __future__ import annotations

import enum


class Outcome(enum.Enum):
    WRITTEN = "written"
    DUPLICATE = "duplicate"  # same output as another input of the run, same bytes
    QUARANTINED = "quarantined"
    HELD_BACK = "held back"
    NOT_COPIED = "not copied"  # DICOMDIR: an index that names patients
