"""What one input's identifiers became: the row the link table keeps for it.

Steps return these; only the runner records them, in the private location
(they hold the originals).
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class LinkRecord:
    """Original identifiers of one file and what they became."""

    patient_id: str
    issuer: str
    patient_name: str
    subject: str
    day_offset: int
    study_uid: str
    new_study_uid: str
    series_uid: str
    new_series_uid: str
    sop_uid: str
    new_sop_uid: str
    # Lets raw data whose patient fields are masked find its subject through a
    # DICOM series of the same scan session (see pipeline.raw.subject_lookup).
    frame_of_reference_uid: str = ""

    def row(self) -> tuple[str | int, ...]:
        """The values in field order (the link table's column order), without copying."""
        return tuple(getattr(self, name) for name in _FIELDS)


_FIELDS = tuple(f.name for f in fields(LinkRecord))
