"""C-FIND in the Study Root model: a cohort row's studies, and each study's instances.

The study-level query matches what a row asks for (Accession Number, or
Patient ID with a Study Date range); the series- and image-level queries
list every instance of a matching study (SOP Instance UID and SOP Class
UID), hierarchically, as every Query/Retrieve SCP must answer them (no
relational query is assumed).  The instance list is what a pull expects to
arrive: it says which storage contexts a C-GET must propose, and a row is
retrieved only when every listed instance is in the catalog's ``received``.

Identifiers and answers are PHI: nothing here logs them, and an error says
what failed, never which values.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
)

from pipeline.net.cohort import CohortRow
from pipeline.net.errors import NetworkError, TransientError

FIND_MODEL = StudyRootQueryRetrieveInformationModelFind
_PENDING = (0xFF00, 0xFF01)


@dataclass(frozen=True)
class Instance:
    """One instance a node lists for a study (PHI: the UIDs)."""

    sop_instance_uid: str
    sop_class_uid: str


@dataclass(frozen=True)
class Study:
    """A study that matches a cohort row, and every instance the node lists for it."""

    study_instance_uid: str
    instances: tuple[Instance, ...]


def study_identifier(row: CohortRow) -> Dataset:
    """The study-level C-FIND identifier of ``row`` (its matching keys, the UID to return)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    ds.AccessionNumber = row.accession_number
    ds.PatientID = row.patient_id
    ds.StudyDate = row.study_date
    return ds


def find_studies(assoc: Association, row: CohortRow) -> list[Study]:
    """The studies of the node that match ``row``, with their instances (none: missing)."""
    uids = [
        str(answer.StudyInstanceUID)
        for answer in _find(assoc, study_identifier(row))
        if answer.get("StudyInstanceUID")
    ]
    return [Study(uid, tuple(_instances(assoc, uid))) for uid in dict.fromkeys(uids)]


def _instances(assoc: Association, study_uid: str) -> Iterator[Instance]:
    series = Dataset()
    series.QueryRetrieveLevel = "SERIES"
    series.StudyInstanceUID = study_uid
    series.SeriesInstanceUID = ""
    series_uids = [str(a.SeriesInstanceUID) for a in _find(assoc, series)
                   if a.get("SeriesInstanceUID")]  # fmt: skip
    seen: set[str] = set()
    for series_uid in dict.fromkeys(series_uids):
        image = Dataset()
        image.QueryRetrieveLevel = "IMAGE"
        image.StudyInstanceUID = study_uid
        image.SeriesInstanceUID = series_uid
        image.SOPInstanceUID = ""
        image.SOPClassUID = ""
        for answer in _find(assoc, image):
            uid = str(answer.get("SOPInstanceUID", ""))
            if uid and uid not in seen:
                seen.add(uid)
                yield Instance(uid, str(answer.get("SOPClassUID", "")))


def _find(assoc: Association, identifier: Dataset) -> Iterator[Dataset]:
    """The answers of one C-FIND; a transient error when the node does not answer.

    Raises
    ------
    TransientError
        No answer (a timeout or an aborted association): worth trying again.
    NetworkError
        The node answered a failure status (it refuses this query).
    """
    level = str(identifier.QueryRetrieveLevel).lower()
    for status, answer in assoc.send_c_find(identifier, FIND_MODEL):
        code = getattr(status, "Status", None)
        if code is None:
            raise TransientError(f"the node did not answer a {level}-level C-FIND (timed out "
                                 "or aborted)")  # fmt: skip
        if code in _PENDING:
            if answer is not None:
                yield answer
            continue
        if code == 0x0000:
            return
        if code in (0xA700, 0xA701, 0xA702):
            raise TransientError(f"the node is out of resources for a {level}-level C-FIND "
                                 f"(status 0x{code:04X})")  # fmt: skip
        raise NetworkError(f"the node refused a {level}-level C-FIND with status 0x{code:04X}: "
                           "check that it allows us to query (AllowFind or its equivalent)")  # fmt: skip
