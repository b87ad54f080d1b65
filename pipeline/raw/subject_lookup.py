"""Whose raw data is this?  Find the subject, or hold the file back.

Twix files often carry masked patient fields (``xxxxxxxx``), and ISMRMRD
files from other converters may carry none.  Releasing such a file under a
made-up subject would split one person into two pseudonyms (or merge two
people), so the subject is looked up, in this order:

1. the patient ID in the header, when it is not masked (qualified by the
   issuer DICOM files of the same ID were de-identified with);
2. the study or frame-of-reference UID shared with DICOM series that were
   already de-identified with the same private location (the scanner writes
   the same UIDs into the images it reconstructs from this raw data);
3. a mapping file the user gives (``--subjects CSV``: the raw file's SHA-256
   or the measurement ID → patient ID, optionally its issuer).

A file none of these decides is held back with that reason.
"""

from __future__ import annotations

import csv
import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipeline.errors import RuleError, SubjectUnknown
from pipeline.identity.subjects import subject_key

# What scanners and export tools put where a field was masked.
_MASKED = re.compile(r"^[\sxX*#?0_.-]*$")


class IdentityIndex(Protocol):
    """Where the identities of DICOM data already de-identified are kept (the link table)."""

    def identities_for(
        self, *, study_uid: str = "", frame_of_reference_uid: str = "", patient_id: str = ""
    ) -> set[tuple[str, str, str, str]]:
        """(patient ID, issuer, name, study UID) of DICOM files linked to these UIDs or ID."""
        ...


class SubjectSource(enum.Enum):
    """How a raw file's subject was found (recorded in the private store)."""

    HEADER = "patient ID in the header"
    DICOM_STUDY = "study UID shared with de-identified DICOM"
    DICOM_FRAME = "frame of reference UID shared with de-identified DICOM"
    MAPPING = "--subjects mapping file"


@dataclass(frozen=True)
class SubjectMatch:
    """A found subject: the keyed-derivation identity and where it came from."""

    subject: str  # normalised identity (see pipeline.identity.subjects.subject_key): PHI
    source: SubjectSource
    patient_id: str  # the original patient ID when known: PHI
    issuer: str


@dataclass(frozen=True)
class RawIdentity:
    """What a raw header says about whose data it is (all PHI)."""

    patient_id: str = ""
    issuer: str = ""
    study_uid: str = ""
    frame_of_reference_uid: str = ""
    measurement_id: str = ""
    study_id: str = ""  # groups an exam's measurements when there is no study UID


def is_masked(value: str) -> bool:
    """True for an empty or masked field (``xxxxxxxx``, ``****``, ``0000``)."""
    return bool(_MASKED.match(value or ""))


def load_subject_mapping(path: Path) -> dict[str, tuple[str, str]]:
    """Read ``--subjects``: a CSV with columns ``raw`` and ``patient_id`` (``issuer`` optional).

    ``raw`` is the raw file's SHA-256 (64 hex digits, as ``sha256sum`` prints
    it) or a measurement ID from its header.  Errors name the file and line.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(path, None, f"cannot read the subject mapping: {exc}") from None
    reader = csv.DictReader(text.splitlines())
    fields = set(reader.fieldnames or ())
    if not {"raw", "patient_id"} <= fields:
        raise RuleError(path, 1, "the header row must name the columns 'raw' and 'patient_id'")
    mapping: dict[str, tuple[str, str]] = {}
    for row in reader:
        line = reader.line_num
        raw = (row.get("raw") or "").strip()
        patient = (row.get("patient_id") or "").strip()
        if not raw or not patient or is_masked(patient):
            raise RuleError(path, line, "each row needs a 'raw' key and a real 'patient_id'")
        raw = raw.lower() if re.fullmatch(r"[0-9a-fA-F]{64}", raw) else raw
        entry = (patient, (row.get("issuer") or "").strip())
        if mapping.get(raw, entry) != entry:
            raise RuleError(path, line, "this raw key is mapped to two different patients")
        mapping[raw] = entry
    return mapping


class SubjectLookup:
    """Decide the subject of each raw file (see the module docstring for the order)."""

    def __init__(
        self, private: IdentityIndex, mapping: Mapping[str, tuple[str, str]] | None = None
    ) -> None:
        self._private = private
        self._mapping = dict(mapping or {})

    def _issuer_of(self, patient_id: str) -> str:
        """The issuer DICOM gave this patient ID, since raw headers carry none.

        The DICOM side keys a subject by ID *and* issuer; without this, one
        person's raw and DICOM data would get two pseudonyms.  An ID known
        under several issuers may be several people: never guessed.
        """
        issuers = {
            issuer for _, issuer, _, _ in self._private.identities_for(patient_id=patient_id)
        }
        if len(issuers) > 1:
            raise SubjectUnknown(
                f"subject ambiguous: the patient ID in the header is known under {len(issuers)} "
                "issuers in the link table; name the file in a --subjects CSV with its issuer"
            )
        return issuers.pop() if issuers else ""

    def find(self, identity: RawIdentity, sha256: str | Callable[[], str]) -> SubjectMatch:
        """The subject of a raw file, or :class:`SubjectUnknown` saying why none could be found.

        ``sha256`` may be a callable: the hash of a large file is only waited
        for when the mapping file is the last resort.
        """
        if not is_masked(identity.patient_id):
            issuer = identity.issuer or self._issuer_of(identity.patient_id)
            subject = subject_key(identity.patient_id, issuer)
            return SubjectMatch(subject, SubjectSource.HEADER, identity.patient_id, issuer)
        for uid, source, kwarg in (
            (identity.study_uid, SubjectSource.DICOM_STUDY, "study_uid"),
            (identity.frame_of_reference_uid, SubjectSource.DICOM_FRAME, "frame_of_reference_uid"),
        ):
            if not uid:
                continue
            identities = self._private.identities_for(**{kwarg: uid})
            found = {subject_key(*identity): identity for identity in identities}
            if len(found) == 1:
                ((subject, (patient, issuer, _, _)),) = found.items()
                return SubjectMatch(subject, source, patient, issuer)
            if len(found) > 1:
                raise SubjectUnknown(
                    f"subject ambiguous: its {source.value.split(' shared')[0]} belongs to "
                    f"{len(found)} subjects in the link table; map the file with --subjects"
                )
        digest = sha256() if callable(sha256) else sha256
        for raw_key in (digest, identity.measurement_id):
            if raw_key and raw_key in self._mapping:
                patient, issuer = self._mapping[raw_key]
                return SubjectMatch(
                    subject_key(patient, issuer), SubjectSource.MAPPING, patient, issuer
                )
        raise SubjectUnknown(
            "subject unknown: the patient ID in the header is masked or missing, no DICOM "
            "series de-identified with this private location shares its study or frame of "
            "reference UID, and no --subjects row names it; de-identify the matching DICOM "
            "first or add its SHA-256 to a --subjects CSV"
        )
