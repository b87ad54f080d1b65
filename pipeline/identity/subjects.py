"""Who a file belongs to, and that subject's pseudonym and date shift.

The DICOM and the raw side both call these, so a subject's series and raw
measurements share one pseudonym and one shift in a release made with one key.
"""

from __future__ import annotations

from pipeline.identity.names import normalise_id, normalise_name
from pipeline.keys import SecretKey


def subject_key(
    patient_id: str | None,
    issuer: str | None = None,
    patient_name: str | None = None,
    study_uid: str | None = None,
) -> str:
    """A normalised identity string for keyed derivations (never released).

    The patient ID (qualified by its issuer) identifies the subject; a file
    without one falls back to the normalised name, and a file without either
    to its study, so at least one study's dates stay consistent.
    """
    pid = normalise_id(patient_id or "")
    if pid:
        return f"id:{normalise_id(issuer or '')}:{pid}"
    name = normalise_name(patient_name or "")
    if name:
        return f"name:{name}"
    return f"study:{(study_uid or '').strip()}"


def subject_pseudonym(key: SecretKey, subject: str) -> str:
    """``SUBJ-`` and 10 keyed base32 characters: fits SH, LO and PN."""
    return key.pseudonym("subject", subject, prefix="SUBJ-")


def subject_day_offset(key: SecretKey, subject: str, span: tuple[int, int]) -> int:
    """The subject's whole-day date shift within ``span``."""
    return key.day_offset(subject, span[0], span[1])
