"""Lay a finished release out as a DICOM File-set with a new DICOMDIR (``--dicomdir``).

A DICOMDIR in the input is never copied: it is an index that names patients.
A site that needs one for media or a PACS import gets a new one, built only
from the de-identified files.  PS3.10 file IDs are at most eight upper-case
characters per component, which the pseudonym tree does not meet, so the
release is re-laid out as pydicom's File-set (``PT000000/ST000000/...``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet, RecordNode

from pipeline.atomic import TEMP_PREFIX
from pipeline.errors import CurationError


def _record(kind: str, **values: object) -> RecordNode:
    record = Dataset()
    record.DirectoryRecordType = kind
    for keyword, value in values.items():
        setattr(record, keyword, value)
    return RecordNode(record)


def _leaf(ds: Dataset, study_id: str) -> RecordNode:
    """PATIENT > STUDY > SERIES > IMAGE records from the de-identified header."""
    patient = _record("PATIENT", PatientID=ds.PatientID, PatientName=ds.get("PatientName", ""))
    study = _record(
        "STUDY",
        StudyDate=ds.get("StudyDate", ""),
        StudyTime=ds.get("StudyTime", ""),
        StudyDescription=ds.get("StudyDescription", ""),
        StudyInstanceUID=ds.StudyInstanceUID,
        StudyID=study_id,  # Type 1 here; the header's own Study ID was emptied
        AccessionNumber="",
    )
    series = _record(
        "SERIES",
        Modality=ds.get("Modality", "OT") or "OT",
        SeriesInstanceUID=ds.SeriesInstanceUID,
        SeriesNumber=ds.get("SeriesNumber", 0) or 0,
    )
    image = _record(
        "IMAGE",
        InstanceNumber=ds.get("InstanceNumber", 0) or 0,
        ReferencedSOPClassUIDInFile=ds.SOPClassUID,
        ReferencedSOPInstanceUIDInFile=ds.SOPInstanceUID,
        ReferencedTransferSyntaxUIDInFile=ds.file_meta.TransferSyntaxUID,
        ReferencedFileID="PLACEHOLDER",  # pydicom assigns the real one when writing
    )
    image.parent, series.parent, study.parent = series, study, patient
    return image


def write_fileset(output: Path, relpaths: list[str]) -> dict[str, str]:
    """Re-lay ``relpaths`` (files under ``output``) as a File-set; return old -> new paths."""
    staging = output / f"{TEMP_PREFIX}fileset"
    shutil.rmtree(staging, ignore_errors=True)
    fileset = FileSet()
    by_uid: dict[str, str] = {}
    for relpath in relpaths:
        path = output / relpath
        ds = dcmread(path, stop_before_pixels=True)
        by_uid[str(ds.SOPInstanceUID)] = relpath
        study_token = Path(relpath).parts[1][:16]
        fileset.add_custom(path, _leaf(ds, study_token))
    fileset.write(staging)
    moved: dict[str, str] = {}
    for instance in fileset:
        new = Path(instance.path).relative_to(staging)
        moved[by_uid[str(instance.SOPInstanceUID)]] = new.as_posix()
    for relpath in relpaths:
        (output / relpath).unlink()
    for folder in sorted({(output / r).parent for r in relpaths}, key=lambda p: -len(p.parts)):
        for empty in (folder, *folder.parents):
            if empty == output or any(empty.iterdir()):
                break
            empty.rmdir()
    for entry in staging.iterdir():
        target = output / entry.name
        if target.exists():
            raise CurationError(
                f"{target} already exists in OUTPUT; --dicomdir writes a whole File-set "
                "and needs an OUTPUT that holds nothing else"
            )
        os.replace(entry, target)
    staging.rmdir()
    return moved
