"""The header modules every synthetic object shares, and how their values are spelled.

SOP Common, Patient, Study, Series and Equipment carry most of the planted
PHI, in the same places on an MR image, a screenshot or a report, so they
are written by one set of functions; so is the private ``ACME 1.1`` block a
PACS adds to every MR image.  UIDs are derived from their inputs under a fixed
root, never random, so the same arguments always give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from pipeline.samples.exams import Protocol, Region, Vendor, subject_region
from pipeline.samples.subjects import Subject, study_moment

__all__ = [
    "CHARSET",
    "PrivateElement",
    "Series",
    "add_acme_block",
    "add_equipment",
    "add_patient",
    "add_pixel_module",
    "add_private",
    "add_series",
    "add_study",
    "code_item",
    "format_da",
    "format_ds",
    "format_dt",
    "format_tm",
    "item",
    "new_dataset",
    "new_series",
    "sample_uid",
    "sequence",
    "subject_study_uid",
]

# The retired Detached Study Management class is what scanners still put in
# Referenced Study Sequence items.
_STUDY_REFERENCE_CLASS = UID("1.2.840.10008.3.1.2.3.1")

CHARSET = "ISO_IR 100"
_TZ = "+0100"
_UID_ROOT = "1.2.826.0.1.3680043.8.498."


def format_ds(value: float) -> str:
    """A DS string that always fits the 16 characters pydicom enforces on write."""
    return format_number_as_ds(float(value))


def sample_uid(*parts: object) -> UID:
    """A UID derived from ``parts`` alone, so the same inputs always give the same UID."""
    return generate_uid(_UID_ROOT, entropy_srcs=["mricurate", *(str(p) for p in parts)])


def format_da(moment: datetime) -> str:
    """DA: ``YYYYMMDD``."""
    return moment.strftime("%Y%m%d")


def format_tm(moment: datetime) -> str:
    """TM: ``HHMMSS.ffffff``."""
    return moment.strftime("%H%M%S.%f")


def format_dt(moment: datetime) -> str:
    """DT with microseconds and the samples' fixed UTC offset."""
    return moment.strftime("%Y%m%d%H%M%S.%f") + _TZ


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    """A code sequence item (value, coding scheme, meaning)."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _family(subject: Subject) -> str:
    return subject.phi.patient_name.split("^")[0]


def item(**elements: object) -> Dataset:
    """A sequence item from keywords, so nested functional groups read as one expression."""
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def sequence(*items: Dataset) -> DicomSequence:
    """A sequence of ``items``; the partner of :func:`item`."""
    return DicomSequence(list(items))


@dataclass(frozen=True)
class Series:
    """What every instance of one series shares."""

    subject: Subject
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    series_number: int
    description: str
    start: datetime
    protocol: Protocol
    region: Region
    vendor: Vendor
    patient_name: str


def subject_study_uid(subject: Subject, seed: int) -> UID:
    """The subject's study for ``seed``: series made separately still join one study."""
    return sample_uid("study", subject.phi.patient_id, seed)


def new_series(
    subject: Subject,
    *,
    seed: int,
    study_uid: str | None,
    series_number: int,
    description: str,
    protocol: Protocol,
    vendor: Vendor,
    kind: str,
    region: Region | None = None,
) -> Series:
    """What the series of one subject, number and kind share; ``region`` overrides the exam's."""
    study = study_uid or subject_study_uid(subject, seed)
    region = region or subject_region(subject)
    return Series(
        subject=subject,
        study_uid=study,
        series_uid=sample_uid("series", study, kind, series_number, description, seed),
        frame_of_reference_uid=sample_uid("frame-of-reference", study, region.body_part),
        series_number=series_number,
        description=description,
        start=study_moment(subject) + timedelta(minutes=4 * series_number, seconds=17),
        protocol=protocol,
        region=region,
        vendor=vendor,
        patient_name=subject.phi.patient_name,
    )


def new_dataset(sop_class: str, sop_uid: str, moment: datetime) -> Dataset:
    """An empty instance with file meta and SOP Common, ready for ``save_as``."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "MRICURATE_SMPL"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = CHARSET
    ds.InstanceCreationDate = format_da(moment)
    ds.InstanceCreationTime = format_tm(moment)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.TimezoneOffsetFromUTC = _TZ
    return ds


def add_patient(ds: Dataset, subject: Subject, patient_name: str) -> None:
    """Patient module; ``patient_name`` may be a :func:`name_variant` of the subject's."""
    phi = subject.phi
    ds.PatientName = patient_name
    ds.PatientID = phi.patient_id
    ds.IssuerOfPatientID = phi.institution_name[:64]
    ds.PatientBirthDate = phi.birth_date
    ds.PatientSex = subject.sex
    ds.OtherPatientIDs = phi.other_patient_ids
    other = Dataset()
    other.PatientID = phi.other_patient_ids
    other.IssuerOfPatientID = "KH-PACS"
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = DicomSequence([other])
    ds.PatientAge = subject.age
    ds.PatientSize = format_ds(subject.size_m)
    ds.PatientWeight = format_ds(subject.weight_kg)
    if phi.patient_address:
        ds.PatientAddress = phi.patient_address


def add_study(ds: Dataset, series: Series) -> None:
    """General Study module; StudyDescription names the patient, as free text often does."""
    subject, phi = series.subject, series.subject.phi
    start = study_moment(subject)
    ds.StudyInstanceUID = series.study_uid
    ds.StudyDate = format_da(start)
    ds.StudyTime = format_tm(start)
    ds.AccessionNumber = phi.accession_number
    ds.ReferringPhysicianName = phi.referring_physician
    ds.StudyID = phi.accession_number
    ds.StudyDescription = f"{subject_region(subject).description} {_family(subject)}"
    reference = Dataset()
    reference.ReferencedSOPClassUID = _STUDY_REFERENCE_CLASS
    reference.ReferencedSOPInstanceUID = series.study_uid
    ds.ReferencedStudySequence = DicomSequence([reference])


def add_series(ds: Dataset, series: Series, modality: str) -> None:
    """General Series module plus the request attributes that repeat the accession number."""
    phi = series.subject.phi
    ds.Modality = modality
    ds.SeriesInstanceUID = series.series_uid
    ds.SeriesNumber = str(series.series_number)
    ds.SeriesDate = format_da(series.start)
    ds.SeriesTime = format_tm(series.start)
    ds.SeriesDescription = series.description
    ds.PerformingPhysicianName = phi.operator_name
    ds.OperatorsName = phi.operator_name
    ds.BodyPartExamined = series.region.body_part
    if series.region.laterality:
        ds.Laterality = series.region.laterality
    request = Dataset()
    request.RequestedProcedureID = phi.accession_number
    request.AccessionNumber = phi.accession_number
    request.StudyInstanceUID = series.study_uid
    ordered = subject_region(series.subject).description
    request.RequestedProcedureDescription = ordered
    request.ScheduledProcedureStepID = phi.accession_number
    request.ScheduledProcedureStepDescription = f"{ordered} for {_family(series.subject)}"
    ds.RequestAttributesSequence = DicomSequence([request])


def add_equipment(ds: Dataset, subject: Subject, vendor: Vendor) -> None:
    """General Equipment module: the institution, station and serial are planted PHI."""
    phi = subject.phi
    ds.Manufacturer = vendor.manufacturer
    ds.InstitutionName = phi.institution_name
    ds.InstitutionAddress = phi.institution_address
    ds.InstitutionalDepartmentName = "Radiology"
    ds.StationName = phi.station_name
    ds.ManufacturerModelName = vendor.model
    ds.DeviceSerialNumber = phi.device_serial_number
    ds.SoftwareVersions = vendor.software


PrivateElement = tuple[int, str, object]


def add_private(ds: Dataset, group: int, creator: str, elements: Sequence[PrivateElement]) -> None:
    """Reserve the first free private block of ``group`` for ``creator`` and fill it.

    ``Dataset.private_block`` does the same but slices the dataset on every
    call, which dominated generating thousands of slices.
    """
    slot = next(s for s in range(0x10, 0x100) if (group << 16 | s) not in ds)
    ds.add_new(group << 16 | slot, "LO", creator)
    for offset, vr, value in elements:
        ds.add_new(group << 16 | slot << 8 | offset, vr, value)


def add_acme_block(ds: Dataset, subject: Subject) -> None:
    """A PACS-added private block: a date and the name in elements no profile knows."""
    phi = subject.phi
    add_private(
        ds, 0x0009, "ACME 1.1", [(0x01, "DA", phi.birth_date), (0x02, "LO", phi.patient_name)]
    )


def add_pixel_module(ds: Dataset, rows: int, cols: int, *, bits: int = 12) -> None:
    """Grey-scale Image Pixel module: 12 bits stored in 16 (MR) or 8 in 8 (captures)."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
