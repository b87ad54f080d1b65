"""The header modules every synthetic object shares, and how their values are spelled.

SOP Common, Patient, Study, Series and Equipment carry most of the planted
PHI, in the same places on an MR image, a screenshot or a report, so they
are written by one set of functions; so is the private ``ACME 1.1`` block a
PACS adds to everything.  UIDs are derived from their inputs under a fixed
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

from pipeline.samples.exams import _Protocol, _Region, _region, _Vendor
from pipeline.samples.subjects import Subject, _study_moment

# The retired Detached Study Management class is what scanners still put in
# Referenced Study Sequence items.
_STUDY_REFERENCE_CLASS = UID("1.2.840.10008.3.1.2.3.1")

_CHARSET = "ISO_IR 100"
_TZ = "+0100"
_UID_ROOT = "1.2.826.0.1.3680043.8.498."


def _ds(value: float) -> str:
    """A DS string that always fits the 16 characters pydicom enforces on write."""
    return format_number_as_ds(float(value))


def _uid(*parts: object) -> UID:
    return generate_uid(_UID_ROOT, entropy_srcs=["mricurate", *(str(p) for p in parts)])


def _da(moment: datetime) -> str:
    return moment.strftime("%Y%m%d")


def _tm(moment: datetime) -> str:
    return moment.strftime("%H%M%S.%f")


def _dt(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S.%f") + _TZ


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _family(subject: Subject) -> str:
    return subject.phi.patient_name.split("^")[0]


def _item(**elements: object) -> Dataset:
    item = Dataset()
    for keyword, value in elements.items():
        setattr(item, keyword, value)
    return item


def _seq(*items: Dataset) -> DicomSequence:
    return DicomSequence(list(items))


@dataclass(frozen=True)
class _Series:
    """What every instance of one series shares."""

    subject: Subject
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    series_number: int
    description: str
    start: datetime
    protocol: _Protocol
    region: _Region
    vendor: _Vendor
    patient_name: str


def _study_uid(subject: Subject, seed: int) -> UID:
    return _uid("study", subject.phi.patient_id, seed)


def _new_series(
    subject: Subject,
    *,
    seed: int,
    study_uid: str | None,
    series_number: int,
    description: str,
    protocol: _Protocol,
    vendor: _Vendor,
    kind: str,
    region: _Region | None = None,
) -> _Series:
    study = study_uid or _study_uid(subject, seed)
    region = region or _region(subject)
    return _Series(
        subject=subject,
        study_uid=study,
        series_uid=_uid("series", study, kind, series_number, description, seed),
        frame_of_reference_uid=_uid("frame-of-reference", study, region.body_part),
        series_number=series_number,
        description=description,
        start=_study_moment(subject) + timedelta(minutes=4 * series_number, seconds=17),
        protocol=protocol,
        region=region,
        vendor=vendor,
        patient_name=subject.phi.patient_name,
    )


def _new_dataset(sop_class: str, sop_uid: str, moment: datetime) -> Dataset:
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
    ds.SpecificCharacterSet = _CHARSET
    ds.InstanceCreationDate = _da(moment)
    ds.InstanceCreationTime = _tm(moment)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.TimezoneOffsetFromUTC = _TZ
    return ds


def _add_patient(ds: Dataset, subject: Subject, patient_name: str) -> None:
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
    ds.PatientSize = _ds(subject.size_m)
    ds.PatientWeight = _ds(subject.weight_kg)
    if phi.patient_address:
        ds.PatientAddress = phi.patient_address


def _add_study(ds: Dataset, series: _Series) -> None:
    subject, phi = series.subject, series.subject.phi
    start = _study_moment(subject)
    ds.StudyInstanceUID = series.study_uid
    ds.StudyDate = _da(start)
    ds.StudyTime = _tm(start)
    ds.AccessionNumber = phi.accession_number
    ds.ReferringPhysicianName = phi.referring_physician
    ds.StudyID = phi.accession_number
    ds.StudyDescription = f"{_region(subject).description} {_family(subject)}"
    reference = Dataset()
    reference.ReferencedSOPClassUID = _STUDY_REFERENCE_CLASS
    reference.ReferencedSOPInstanceUID = series.study_uid
    ds.ReferencedStudySequence = DicomSequence([reference])


def _add_series(ds: Dataset, series: _Series, modality: str) -> None:
    phi = series.subject.phi
    ds.Modality = modality
    ds.SeriesInstanceUID = series.series_uid
    ds.SeriesNumber = str(series.series_number)
    ds.SeriesDate = _da(series.start)
    ds.SeriesTime = _tm(series.start)
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
    ordered = _region(series.subject).description
    request.RequestedProcedureDescription = ordered
    request.ScheduledProcedureStepID = phi.accession_number
    request.ScheduledProcedureStepDescription = f"{ordered} for {_family(series.subject)}"
    ds.RequestAttributesSequence = DicomSequence([request])


def _add_equipment(ds: Dataset, subject: Subject, vendor: _Vendor) -> None:
    phi = subject.phi
    ds.Manufacturer = vendor.manufacturer
    ds.InstitutionName = phi.institution_name
    ds.InstitutionAddress = phi.institution_address
    ds.InstitutionalDepartmentName = "Radiology"
    ds.StationName = phi.station_name
    ds.ManufacturerModelName = vendor.model
    ds.DeviceSerialNumber = phi.device_serial_number
    ds.SoftwareVersions = vendor.software


_PrivateElement = tuple[int, str, object]


def _add_private(
    ds: Dataset, group: int, creator: str, elements: Sequence[_PrivateElement]
) -> None:
    """Reserve the first free private block of ``group`` for ``creator`` and fill it.

    ``Dataset.private_block`` does the same but slices the dataset on every
    call, which dominated generating thousands of slices.
    """
    slot = next(s for s in range(0x10, 0x100) if (group << 16 | s) not in ds)
    ds.add_new(group << 16 | slot, "LO", creator)
    for offset, vr, value in elements:
        ds.add_new(group << 16 | slot << 8 | offset, vr, value)


def _add_acme_block(ds: Dataset, subject: Subject) -> None:
    """A PACS-added private block: a date and the name in elements no profile knows."""
    phi = subject.phi
    _add_private(
        ds, 0x0009, "ACME 1.1", [(0x01, "DA", phi.birth_date), (0x02, "LO", phi.patient_name)]
    )


def _add_pixel_module(ds: Dataset, rows: int, cols: int, *, bits: int = 12) -> None:
    """Grey-scale Image Pixel module: 12 bits stored in 16 (MR) or 8 in 8 (captures)."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
