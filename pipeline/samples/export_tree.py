"""A messy, PACS-export-like folder tree of the synthetic objects, damaged files included.

Real inputs arrive as such trees: PHI in folder names, a DICOMDIR, a file
without preamble or file meta, one subject spelled two ways, and files that
are empty, truncated or not DICOM at all.  Discovery and the runners must
cope with all of it, so one call writes it all, the same way for the same
seed.
"""

from __future__ import annotations

import copy
import random
from dataclasses import replace
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID

from pipeline.samples.classic_mr import mr_series
from pipeline.samples.diffusion import diffusion_series
from pipeline.samples.enhanced_mr import enhanced_mr
from pipeline.samples.headers import (
    CHARSET,
    format_da,
    item,
    new_dataset,
    sample_uid,
    sequence,
    subject_study_uid,
)
from pipeline.samples.other_objects import other_objects
from pipeline.samples.subjects import Subject, make_subjects, name_variant, study_moment

__all__ = ["MEDIA_STORAGE_DIRECTORY", "write_sample_tree"]

MEDIA_STORAGE_DIRECTORY = UID("1.2.840.10008.1.3.10")


def _path_safe(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_'" else "_" for c in name.rstrip("^"))
    return cleaned.strip("_")


def _save(ds: Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _save_without_meta(ds: Dataset, path: Path) -> None:
    """Implicit VR, no preamble, no file meta: what old PACS exports contain."""
    bare = copy.deepcopy(ds)
    del bare.file_meta
    path.parent.mkdir(parents=True, exist_ok=True)
    dcmwrite(path, bare, implicit_vr=True, little_endian=True, enforce_file_format=False)


def _dicomdir(subject: Subject, patient_name: str) -> Dataset:
    """A Media Storage Directory with one PATIENT record; offsets are fixed up on write."""
    fileset_uid = sample_uid("fileset", subject.phi.patient_id)
    ds = new_dataset(MEDIA_STORAGE_DIRECTORY, fileset_uid, study_moment(subject))
    for keyword in (
        "SpecificCharacterSet",
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceCreationDate",
        "InstanceCreationTime",
        "TimezoneOffsetFromUTC",
    ):
        delattr(ds, keyword)
    ds.FileSetID = "MRICURATE"
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.FileSetConsistencyFlag = 0
    record = item(
        OffsetOfTheNextDirectoryRecord=0,
        RecordInUseFlag=0xFFFF,
        OffsetOfReferencedLowerLevelDirectoryEntity=0,
        DirectoryRecordType="PATIENT",
        SpecificCharacterSet=CHARSET,
        PatientName=patient_name,
        PatientID=subject.phi.patient_id,
        PatientBirthDate=subject.phi.birth_date,
    )
    ds.DirectoryRecordSequence = sequence(record)
    return ds


def _write_dicomdir(ds: Dataset, path: Path) -> None:
    """Write, then point the root offsets at the one record, as a reader expects."""
    _save(ds, path)
    data = path.read_bytes()
    header = b"\x04\x00\x20\x12SQ\x00\x00"
    offset = data.index(header) + len(header) + 4
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = offset
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = offset
    _save(ds, path)


def write_sample_tree(
    root: Path,
    *,
    n_subjects: int = 3,
    slices: int = 4,
    seed: int = 0,
    include_bad: bool = True,
) -> list[Subject]:
    """Write a messy, PACS-export-like tree of synthetic DICOM files.

    Per subject a folder named after the patient and MRN (PHI in the path on
    purpose) holding one study with two MR series.  The first subject's
    second series is a Siemens diffusion series and it also gets an Enhanced
    MR, the non-MR objects and a DICOMDIR; the second subject's is a GE
    diffusion series.  The last subject's second series spells the name as
    :func:`name_variant` does, with the same PatientID.  One file is written
    without preamble or file meta (implicit VR): read it with ``force=True``.

    Parameters
    ----------
    root : pathlib.Path
        Created if missing.
    n_subjects : int, optional
        At least 1.
    slices : int, optional
        Slices per classic series.
    seed : int, optional
        Same seed, same tree.
    include_bad : bool, optional
        Also write an empty file, a DICOM file truncated to 300 bytes, a
        ``notes.txt`` naming the patient and random bytes named ``IM9999``.

    Returns
    -------
    list of Subject
        The subjects, with their canonical (not variant) names.
    """
    if n_subjects < 1:
        raise ValueError("n_subjects must be at least 1")
    subjects = make_subjects(n_subjects, seed)
    first_file: Path | None = None
    for index, subject in enumerate(subjects):
        phi = subject.phi
        folder = root / f"{_path_safe(phi.patient_name)}_{phi.patient_id}"
        study_uid = subject_study_uid(subject, seed)
        study_dir = folder / f"Study_{format_da(study_moment(subject))}"
        first = mr_series(subject, n_slices=slices, seed=seed, study_uid=study_uid)
        for k, ds in enumerate(first):
            path = study_dir / "Series_001" / f"IM{k + 1:04d}"
            if index == 0 and k == 1:
                _save_without_meta(ds, path)
            else:
                _save(ds, path)
            first_file = first_file or path
        # The last subject's second series spells the name another way, same PatientID.
        second_subject = subject
        if index == n_subjects - 1:
            second_subject = replace(
                subject, phi=replace(phi, patient_name=name_variant(phi.patient_name))
            )
        if index == 0:
            second = diffusion_series(
                second_subject, vendor="SIEMENS", seed=seed, study_uid=study_uid
            )
        elif index == 1:
            second = diffusion_series(second_subject, vendor="GE", seed=seed, study_uid=study_uid)
        else:
            second = mr_series(
                second_subject, n_slices=slices, seed=seed, study_uid=study_uid, series_number=2
            )
        for k, ds in enumerate(second):
            _save(ds, study_dir / f"Series_{int(ds.SeriesNumber):03d}" / f"slice_{k}.dcm")
        if index == 0:
            _save(
                enhanced_mr(subject, seed=seed, study_uid=study_uid),
                study_dir / "Enhanced" / f"{sample_uid('file', phi.patient_id)}.dcm",
            )
            for key, ds in other_objects(subject, seed=seed, study_uid=study_uid).items():
                _save(ds, folder / "misc" / f"{key}.dcm")
            _write_dicomdir(_dicomdir(subject, phi.patient_name), folder / "DICOMDIR")
    if include_bad and first_file is not None:
        subject = subjects[0]
        folder = root / f"{_path_safe(subject.phi.patient_name)}_{subject.phi.patient_id}"
        (root / "empty.dcm").write_bytes(b"")
        (folder / "IM0001_truncated.dcm").write_bytes(first_file.read_bytes()[:300])
        (folder / "notes.txt").write_text(
            f"Patient {subject.phi.patient_name} ({subject.phi.patient_id}) "
            "called to reschedule the follow-up.\n",
            encoding="utf-8",
        )
        noise = random.Random(f"mricurate-noise-{seed}").randbytes(4096)
        (folder / "IM9999").write_bytes(noise)
    return subjects
