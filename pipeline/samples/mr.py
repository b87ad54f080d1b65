"""Synthetic MR DICOM files with identifying values planted where real scanners put them.

Tests, ``mricurate demo`` and the benchmark need inputs that look like a
hospital export (Siemens and GE private blocks, a binary CSA header, nested
request sequences, names with accents, PHI in folder names) but that contain
no real patient.  Everything here is deterministic from a seed, so a failing
test can be replayed byte for byte, and every planted value is recorded in
:class:`PlantedPHI` so a test can assert that none of it survives.
"""

from __future__ import annotations

import copy
import hashlib
import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from pipeline.samples.csa import encode_csa

__all__ = [
    "ENHANCED_MR_STORAGE",
    "MR_IMAGE_STORAGE",
    "PRIVATE_SOP_CLASS",
    "PlantedPHI",
    "Subject",
    "diffusion_series",
    "enhanced_mr",
    "make_subjects",
    "mr_series",
    "name_variant",
    "other_objects",
    "write_sample_tree",
]

MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
ENHANCED_MR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4.1")
SECONDARY_CAPTURE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7")
ENCAPSULATED_PDF_STORAGE = UID("1.2.840.10008.5.1.4.1.1.104.1")
BASIC_TEXT_SR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.88.11")
US_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")
MEDIA_STORAGE_DIRECTORY = UID("1.2.840.10008.1.3.10")
# Siemens "CSA Non-Image Storage": private, so a pipeline must decide what to do with it.
PRIVATE_SOP_CLASS = UID("1.3.12.2.1107.5.9.1")
# The retired Detached Study Management class is what scanners still put in
# Referenced Study Sequence items.
_STUDY_REFERENCE_CLASS = UID("1.2.840.10008.3.1.2.3.1")

_CHARSET = "ISO_IR 100"
_TZ = "+0100"
_UID_ROOT = "1.2.826.0.1.3680043.8.498."


# ---------------------------------------------------------------------------
# Subjects and their planted identifiers
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PlantedPHI:
    """The identifying values planted in one synthetic subject, so tests can assert none survive.

    Person names are DICOM PN strings and some are deliberately untidy
    (accents, lower case, trailing ``^``) to exercise name normalisation.
    All values are encodable in ISO 8859-1 (``ISO_IR 100``).
    """

    patient_name: str
    patient_id: str
    birth_date: str
    accession_number: str
    institution_name: str
    institution_address: str
    referring_physician: str
    operator_name: str
    station_name: str
    device_serial_number: str
    other_patient_ids: str
    # Not in the original brief's field list, so it comes last with a default.
    patient_address: str = ""

    def values(self) -> list[str]:
        """Every planted string, plus the name components of 3+ characters.

        Returns
        -------
        list of str
            Unique values in a stable order; a leak check searches output for
            each of them (case-insensitively, since :func:`name_variant`
            re-cases names in one series).
        """
        found = [
            self.patient_name,
            self.patient_id,
            self.birth_date,
            self.accession_number,
            self.institution_name,
            self.institution_address,
            self.referring_physician,
            self.operator_name,
            self.station_name,
            self.device_serial_number,
            self.other_patient_ids,
            self.patient_address,
        ]
        for person in (self.patient_name, self.referring_physician, self.operator_name):
            found += [part for part in person.split("^") if len(part) >= 3]
        return list(dict.fromkeys(value for value in found if value))


@dataclass(frozen=True)
class Subject:
    """One synthetic patient: planted PHI plus the characteristics a scanner records."""

    phi: PlantedPHI
    sex: str
    age: str
    size_m: float
    weight_kg: float


# (family name, given name, sex): all Latin-1, most with accents.
_FAMILY = (
    "MÜLLER", "SCHRÖDER", "GARCÍA", "NÚÑEZ", "LEFÈVRE", "DUBOIS", "SØRENSEN",
    "ÅBERG", "JANSSEN", "O'BRIEN", "HÄKKINEN", "CÔTÉ", "BRANDÃO", "FERREIRA",
    "KOWALSKI", "BJÖRKMAN", "ROSSI", "NAKAMURA", "MCALLISTER", "DÍAZ",
)  # fmt: skip
_GIVEN = (
    ("JOSÉ", "M"), ("AMÉLIE", "F"), ("JÜRGEN", "M"), ("SØREN", "M"), ("INÊS", "F"),
    ("FRANÇOIS", "M"), ("MARÍA", "F"), ("BJÖRN", "M"), ("CHLOÉ", "F"), ("ZOË", "F"),
    ("HÉLÈNE", "F"), ("RAFAËL", "M"), ("SIOBHÁN", "F"), ("ÅSA", "F"), ("LEÓN", "M"),
    ("MATTHIAS", "M"), ("ANNA", "F"), ("LUCAS", "M"),
)  # fmt: skip
_STAFF_FAMILY = (
    "HOFFMANN", "WAGNER", "LAMBERT", "NOVÁK", "EKSTRÖM", "MORENO", "FISCHER",
    "BECKER", "GIRAUD", "LINDQVIST", "CASTILLO", "KELLER",
)  # fmt: skip
_STAFF_GIVEN = (
    "KLAUS", "HELGA", "SVEN", "ODILE", "PETRA", "TOMÁS", "INGRID", "ANDRÉ", "GRETA", "PABLO",
)  # fmt: skip
_INSTITUTIONS = (
    ("Klinikum Am Rosenhügel", "Rosenhügelstraße 42, 81375 München"),
    ("Hôpital Sainte-Bérénice", "14 rue des Écoles, 69003 Lyon"),
    ("St. Aldhelm's General Hospital", "7 Harbour Road, Bristol BS1 4QA"),
    ("Centro Médico San Ildefonso", "Calle de Alcalá 310, 28027 Madrid"),
    ("Sjukhuset i Västerås Norra", "Östra Ringvägen 3, 721 89 Västerås"),
)
_STREETS = (
    "Lindenallee 7, 80331 München", "12 avenue Foch, 75016 Paris",
    "Gran Vía 48, 28013 Madrid", "Storgatan 19, 111 51 Stockholm",
    "21 Elm Street, Oxford OX1 2JD", "Rua Augusta 101, 1100-048 Lisboa",
)  # fmt: skip


def _study_moment(subject: Subject) -> datetime:
    """When the subject's exam starts: fixed per subject so every series of a study agrees."""
    digest = hashlib.sha256(subject.phi.patient_id.encode()).digest()
    day = date(2019, 1, 7) + timedelta(days=int.from_bytes(digest[:4], "big") % 2000)
    minute = 7 * 60 + 30 + int.from_bytes(digest[4:6], "big") % (10 * 60)
    second = digest[6] % 60
    return datetime(day.year, day.month, day.day, minute // 60, minute % 60, second)


def _age(birth: date, on: date) -> str:
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return f"{years:03d}Y"


def _styled(family: str, given: str, initial: str, style: int) -> str:
    """A PN in one of the spellings scanners and RIS systems produce."""
    if style == 0:
        return f"{family}^{given}^{initial}"
    if style == 1:
        return f"{family.capitalize()}^{given.capitalize()}"
    if style == 2:
        return f"{family}^{given}^^"
    return f"{family.lower()}^{given.lower()}"


def make_subjects(n: int, seed: int = 0) -> list[Subject]:
    """Make ``n`` distinct synthetic subjects.

    Parameters
    ----------
    n : int
        Number of subjects.
    seed : int, optional
        The same seed always gives the same subjects.

    Returns
    -------
    list of Subject
        Distinct names, MRNs, accession numbers and scanners; the name
        spelling cycles through upper case with a middle initial, mixed case,
        trailing ``^`` and lower case.
    """
    rng = random.Random(f"mricurate-subjects-{seed}")
    subjects: list[Subject] = []
    families: set[str] = set()
    names: set[tuple[str, str]] = set()
    ids: set[str] = set()
    singles = len(_FAMILY) * len(_GIVEN)
    while len(subjects) < n:
        index = len(subjects)
        family = rng.choice(_FAMILY)
        given, sex = rng.choice(_GIVEN)
        # The last digit's parity picks the exam: even a brain, odd a left knee, alternating.
        mrn = f"MRN{rng.randrange(10**6, 10**7)}{2 * rng.randrange(5) + index % 2}"
        if mrn in ids:
            continue
        if len(families) < len(_FAMILY):
            # Distinct surnames while they last, so a leaked surname names one subject.
            if family in families:
                continue
        elif len(names) >= singles:
            family = f"{family}-{rng.choice(_FAMILY)}"
            if len(names) >= singles * len(_FAMILY) // 2:
                family = f"{family}{index}"
        if (family, given) in names:
            continue
        families.add(family)
        names.add((family, given))
        ids.add(mrn)
        birth = date(1936, 1, 1) + timedelta(days=rng.randrange(0, 365 * 72))
        institution, address = rng.choice(_INSTITUTIONS)
        serial = f"{rng.randrange(10**4, 10**5)}"
        phi = PlantedPHI(
            patient_name=_styled(family, given, chr(ord("A") + rng.randrange(26)), index % 4),
            patient_id=mrn,
            birth_date=birth.strftime("%Y%m%d"),
            accession_number=f"RAD{rng.randrange(10**9, 10**10)}",
            institution_name=institution,
            institution_address=address,
            referring_physician=f"{rng.choice(_STAFF_FAMILY)}^{rng.choice(_STAFF_GIVEN)}^^DR",
            operator_name=f"{rng.choice(_STAFF_FAMILY)}^{rng.choice(_STAFF_GIVEN)}",
            station_name=f"MRC{serial}",
            device_serial_number=serial,
            other_patient_ids=f"KH{rng.randrange(10**6, 10**7)}",
            patient_address=rng.choice(_STREETS),
        )
        placeholder = Subject(phi, sex, "", 0.0, 0.0)
        height = rng.uniform(1.55, 1.95) if sex == "M" else rng.uniform(1.50, 1.82)
        subjects.append(
            Subject(
                phi=phi,
                sex=sex,
                age=_age(birth, _study_moment(placeholder).date()),
                size_m=round(height, 2),
                weight_kg=round(rng.uniform(48.0, 112.0), 1),
            )
        )
    return subjects


def name_variant(name: str) -> str:
    """The same person name as another system writes it: re-cased, trailing ``^`` added.

    ``"MÜLLER^JOSÉ^A"`` becomes ``"Müller^José^A^"``; both normalise to the
    same person, so a pseudonymiser must give them one pseudonym.
    """
    parts = name.rstrip("^").split("^")
    recased = [p.capitalize() if p.isupper() or p.islower() else p.upper() for p in parts]
    return "^".join(recased) + "^"


# ---------------------------------------------------------------------------
# Formatting and identifiers
# ---------------------------------------------------------------------------


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


# Latin-1 letters that NFKD does not decompose into a base letter and an accent.
_UNDECOMPOSABLE = str.maketrans({"Ø": "O", "ø": "o", "Æ": "AE", "æ": "ae", "ß": "ss", "Ð": "D"})


def _ascii_fold(text: str) -> str:
    """``"SØRENSEN^ZOË"`` -> ``"SORENSEN^ZOE"``: how scanner overlays print names."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_UNDECOMPOSABLE))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


# ---------------------------------------------------------------------------
# Exams: where the subject is scanned and with which protocols
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Protocol:
    name: str
    contrast: str
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    scan_options: tuple[str, ...]
    acquisition_type: str
    repetition_time: float
    echo_time: float
    inversion_time: float | None
    flip_angle: float
    echo_train_length: int
    sequence_name: str
    orientation: tuple[float, float, float, float, float, float]
    slice_thickness: float
    field_of_view_mm: float


_AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
_SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
_CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


@dataclass(frozen=True)
class _Region:
    body_part: str
    description: str
    laterality: str
    patient_position: str
    anatomy: tuple[str, str, str]
    centre: tuple[float, float, float]
    protocols: tuple[_Protocol, ...]


_BRAIN = _Region(
    body_part="BRAIN",
    description="MRI BRAIN",
    laterality="",
    patient_position="HFS",
    anatomy=("12738006", "SCT", "Brain"),
    centre=(0.0, -18.0, 25.0),
    protocols=(
        _Protocol("t2_tse_tra", "T2", ("SE",), ("SK", "SP", "OSP"), ("PFP",), "2D",
                  6000.0, 96.0, None, 150.0, 17, "*tse2d1_17", _AXIAL, 4.0, 220.0),
        _Protocol("t1_mprage_sag", "T1", ("GR", "IR"), ("SK", "SP", "MP"), ("PFP",), "3D",
                  2300.0, 2.98, 900.0, 9.0, 1, "*tfl3d1_16ns", _SAGITTAL, 1.0, 256.0),
        _Protocol("t2_tirm_tra_dark-fluid", "FLAIR", ("SE", "IR"), ("SK", "SP", "MP", "OSP"),
                  ("FS",), "2D", 9000.0, 81.0, 2500.0, 150.0, 16, "*tir2d1_16", _AXIAL,
                  5.0, 230.0),
    ),
)  # fmt: skip
_KNEE = _Region(
    body_part="KNEE",
    description="MRI KNEE LEFT",
    laterality="L",
    patient_position="FFS",
    anatomy=("72696002", "SCT", "Knee"),
    centre=(80.0, 10.0, -480.0),
    protocols=(
        _Protocol("pd_tse_fs_sag", "PROTON_DENSITY", ("SE",), ("SK", "SP", "OSP"), ("FS", "PFP"),
                  "2D", 3200.0, 33.0, None, 150.0, 7, "*tse2d1_7", _SAGITTAL, 3.0, 160.0),
        _Protocol("t1_tse_cor", "T1", ("SE",), ("SK", "SP", "OSP"), ("PFP",), "2D",
                  650.0, 12.0, None, 150.0, 3, "*tse2d1_3", _CORONAL, 3.0, 160.0),
        _Protocol("t2_tse_tra", "T2", ("SE",), ("SK", "SP", "OSP"), ("PFP",), "2D",
                  4500.0, 76.0, None, 150.0, 13, "*tse2d1_13", _AXIAL, 3.5, 150.0),
    ),
)  # fmt: skip
_DIFFUSION = _Protocol("ep2d_diff_3scan_trace", "DIFFUSION", ("EP",), ("SK", "SP"), ("PFP", "FS"),
                       "2D", 5200.0, 89.0, None, 90.0, 1, "*ep_b0", _AXIAL, 5.0, 230.0)  # fmt: skip


def _region(subject: Subject) -> _Region:
    """Brain or left knee, by the parity of the MRN's last character (alternates in make_subjects)."""
    return _BRAIN if ord(subject.phi.patient_id[-1:] or "0") % 2 == 0 else _KNEE


@dataclass(frozen=True)
class _Vendor:
    manufacturer: str
    model: str
    software: str
    field_strength: float
    frequency: float
    coil: str


_SIEMENS = _Vendor("SIEMENS", "Prisma_fit", "syngo MR E11", 3.0, 123.251615, "HeadNeck_20")
_GE = _Vendor("GE MEDICAL SYSTEMS", "DISCOVERY MR750", "27\\LX\\MR Software release:DV26.0_R03",
              3.0, 127.766345, "8HRBRAIN")  # fmt: skip


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


# ---------------------------------------------------------------------------
# Modules shared by every object
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Pixel data
# ---------------------------------------------------------------------------

_Image = npt.NDArray[np.float64]


@dataclass(frozen=True)
class _Phantom:
    """Tissue maps of a head-like phantom; frames are mixes of them, so each is cheap."""

    body: _Image
    fluid: _Image
    fibre: _Image


def _ellipse(y: _Image, x: _Image, cy: float, cx: float, ry: float, rx: float) -> _Image:
    """A filled ellipse with a soft edge, so images have no aliasing staircase."""
    r = np.sqrt(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2)
    result: _Image = 0.5 - 0.5 * np.tanh((r - 1.0) * 20.0)
    return result


def _phantom(rows: int, cols: int, seed: int) -> _Phantom:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1.0 : 1.0 : rows * 1j, -1.0 : 1.0 : cols * 1j]
    jitter = rng.uniform(-0.04, 0.04, size=8)
    skull = _ellipse(y, x, 0.0, 0.0, 0.92 + jitter[0], 0.74 + jitter[1])
    brain = _ellipse(y, x, 0.02, 0.0, 0.84 + jitter[0], 0.66 + jitter[1])
    bias = 1.0 + 0.15 * x - 0.1 * y**2
    body = (0.35 * skull + 0.65 * brain) * bias
    fluid = (
        _ellipse(y, x, -0.05 + jitter[2], -0.17, 0.28, 0.09)
        + _ellipse(y, x, -0.05 + jitter[3], 0.17, 0.28, 0.09)
        + _ellipse(y, x, 0.45, jitter[4], 0.06, 0.06)
    ) * brain
    fibre = _ellipse(y, x, -0.45 + jitter[5], 0.0, 0.10, 0.40) * brain
    noise = rng.normal(0.0, 0.012, size=(rows, cols))
    return _Phantom(body=body + noise, fluid=fluid, fibre=fibre)


def _frame(phantom: _Phantom, contrast: str, position: float, scale: float = 2600.0) -> bytes:
    """A 12-bit frame: tissue weights by contrast, anatomy drifting with slice position."""
    fluid_weight = {"T1": -0.55, "T2": 0.9, "FLAIR": -0.6, "PROTON_DENSITY": 0.3}.get(contrast, 0.5)
    image = phantom.body + fluid_weight * phantom.fluid * (0.6 + 0.4 * np.cos(position))
    image = image + 0.25 * phantom.fibre * np.sin(position)
    return bytes(np.clip(image * scale, 0, 4095).astype("<u2").tobytes())


def _diffusion_frame(
    phantom: _Phantom, bvalue: int, direction: tuple[float, float, float]
) -> bytes:
    """Signal decay ``S0·exp(-b·ADC)`` with an anisotropic tract along x."""
    adc_tissue = 0.0008
    adc_fluid = 0.003
    adc_fibre = 0.0003 + 0.0015 * direction[0] ** 2
    tissue = np.clip(phantom.body - phantom.fluid - phantom.fibre, 0.0, None)
    image = (
        tissue * np.exp(-bvalue * adc_tissue)
        + 1.2 * phantom.fluid * np.exp(-bvalue * adc_fluid)
        + phantom.fibre * np.exp(-bvalue * adc_fibre)
    )
    return bytes(np.clip(image * 2200.0, 0, 4095).astype("<u2").tobytes())


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


# ---------------------------------------------------------------------------
# Classic MR Image Storage
# ---------------------------------------------------------------------------


def _geometry(
    protocol: _Protocol, region: _Region, rows: int, cols: int, n_positions: int
) -> tuple[float, list[list[float]], list[float], float]:
    """Pixel spacing, per-slice positions and locations, and the slice spacing.

    Positions step along the slice normal (row direction × column direction)
    and are centred on the region, as a planned scan is.
    """
    o = np.array(protocol.orientation)
    row_dir, col_dir = o[:3], o[3:]
    normal = np.cross(row_dir, col_dir)
    spacing = round(protocol.field_of_view_mm / max(rows, cols), 6)
    step = protocol.slice_thickness * (1.0 if protocol.acquisition_type == "3D" else 1.2)
    centre = np.array(region.centre)
    first = (
        centre
        - row_dir * spacing * cols / 2
        - col_dir * spacing * rows / 2
        - normal * step * (n_positions - 1) / 2
    )
    positions = [
        [round(float(v), 4) for v in first + normal * step * k] for k in range(n_positions)
    ]
    locations = [round(float(np.dot(p, normal)), 4) for p in positions]
    return spacing, positions, locations, step


def _siemens_private(
    ds: Dataset,
    series: _Series,
    *,
    bvalue: int | None,
    direction: tuple[float, float, float] | None,
) -> None:
    """The ``SIEMENS MR HEADER`` and ``SIEMENS CSA HEADER`` blocks of a Siemens image.

    The image CSA header is a real SV10 blob: it repeats the diffusion
    values (dcm2niix reads them from there).  Its ``PatientName`` tag is
    not one Siemens writes; it stands for the identifying text that does
    hide in vendor blobs, so a de-identifier that keeps the blob leaks it.
    Likewise the series header's protocol text embeds the series UID.
    """
    diffusion: list[_PrivateElement]
    if bvalue is None:
        diffusion = [(0x0C, "IS", None), (0x0E, "FD", None)]
    else:
        diffusion = [
            (0x0C, "IS", str(bvalue)),
            (0x0D, "CS", "DIRECTIONAL" if direction else "NONE"),
        ]
        if direction:
            diffusion.append((0x0E, "FD", list(direction)))
    _add_private(
        ds,
        0x0019,
        "SIEMENS MR HEADER",
        [
            (0x08, "CS", "IMAGE NUM 4"),
            (0x09, "LO", "1.0"),
            (0x0B, "DS", "5560"),
            *diffusion,
            (0x0F, "SH", "Fast"),
            (0x11, "SH", "No"),
            (0x12, "SL", [0, 0, 0]),
            (0x13, "SL", [0, 0, 0]),
            (0x14, "IS", ["0", "0", "0"]),
        ],
    )
    o = series.protocol.orientation
    normal = [float(v) for v in np.cross(o[:3], o[3:])]
    image_tags: dict[str, list[str]] = {
        "EchoLinePosition": ["128"],
        "ProtocolSliceNumber": ["0"],
        "SliceNormalVector": [f"{v:.8f}" for v in normal],
        "ImaPATModeText": ["p2"],
        "ImaCoilString": [series.vendor.coil],
        "UsedPatientWeight": [str(round(series.subject.weight_kg))],
        "PatientName": [series.patient_name],
    }
    if bvalue is not None:
        image_tags["B_value"] = [str(bvalue)]
        image_tags["DiffusionDirectionality"] = ["DIRECTIONAL" if direction else "NONE"]
        image_tags["DiffusionGradientDirection"] = (
            [f"{v:.8f}" for v in direction] if direction else []
        )
        b_matrix = (
            [bvalue * a * b for i, a in enumerate(direction) for b in direction[i:]]
            if direction
            else [0.0] * 6
        )
        image_tags["B_matrix"] = [f"{v:.8f}" for v in b_matrix]
    protocol_text = "\n".join(
        [
            "### ASCCONV BEGIN ###",
            f'tProtocolName\t = "{series.protocol.name}"',
            'sProtConsistencyInfo.tBaselineString\t = "N4_VE11E_LATEST_20181129"',
            f"sProtConsistencyInfo.flNominalB0\t = {series.vendor.field_strength}",
            f"sSliceArray.asSlice[0].sPosition.dTra\t = {series.region.centre[2]}",
            f'tReferenceImage0\t = "{series.series_uid}"',
            "### ASCCONV END ###",
        ]
    )
    _add_private(
        ds,
        0x0029,
        "SIEMENS CSA HEADER",
        [
            (0x08, "CS", "IMAGE NUM 4"),
            (0x09, "LO", "20181129"),
            (0x10, "OB", encode_csa(image_tags)),
            (0x18, "CS", "MR"),
            (0x19, "LO", "20181129"),
            (0x20, "OB", encode_csa({"MrPhoenixProtocol": [protocol_text]})),
        ],
    )


def _mr_instance(
    series: _Series,
    *,
    index: int,
    sop_uid: str,
    referenced_uid: str,
    position: list[float],
    location: float,
    spacing: float,
    step: float,
    rows: int,
    cols: int,
    pixels: bytes,
    acquisition_number: int,
    acquired: datetime,
    image_type: Sequence[str],
    sequence_name: str,
) -> Dataset:
    """One classic MR image: every module dciodvfy checks, plus the PHI a scanner adds."""
    subject, protocol, vendor = series.subject, series.protocol, series.vendor
    created = acquired + timedelta(seconds=42)
    ds = _new_dataset(MR_IMAGE_STORAGE, sop_uid, created)
    ds.ImageType = list(image_type)
    _add_patient(ds, subject, series.patient_name)
    _add_study(ds, series)
    _add_series(ds, series, "MR")
    ds.ProtocolName = protocol.name
    ds.PatientPosition = series.region.patient_position
    _add_equipment(ds, subject, vendor)
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""

    # General Image and General Acquisition
    ds.AcquisitionDate = _da(acquired)
    ds.AcquisitionTime = _tm(acquired)
    ds.AcquisitionDateTime = _dt(acquired)
    ds.ContentDate = _da(created)
    ds.ContentTime = _tm(created)
    ds.AcquisitionNumber = str(acquisition_number)
    ds.InstanceNumber = str(index + 1)
    ds.ImageComments = f"Pat. {subject.phi.patient_id}: mild motion, repeat not needed"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    referenced = Dataset()
    referenced.ReferencedSOPClassUID = MR_IMAGE_STORAGE
    referenced.ReferencedSOPInstanceUID = referenced_uid
    ds.ReferencedImageSequence = DicomSequence([referenced])

    # Image Plane
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.ImageOrientationPatient = [_ds(v) for v in protocol.orientation]
    ds.PixelSpacing = [_ds(spacing), _ds(spacing)]
    ds.SliceThickness = _ds(protocol.slice_thickness)
    ds.SpacingBetweenSlices = _ds(step)
    ds.SliceLocation = _ds(location)

    # MR Image
    ds.ScanningSequence = list(protocol.scanning_sequence)
    ds.SequenceVariant = list(protocol.sequence_variant)
    ds.ScanOptions = list(protocol.scan_options)
    ds.MRAcquisitionType = protocol.acquisition_type
    ds.SequenceName = sequence_name
    ds.AngioFlag = "N"
    ds.RepetitionTime = _ds(protocol.repetition_time)
    ds.EchoTime = _ds(protocol.echo_time)
    if protocol.inversion_time is not None:
        ds.InversionTime = _ds(protocol.inversion_time)
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = _ds(vendor.frequency)
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = "1"
    ds.MagneticFieldStrength = _ds(vendor.field_strength)
    ds.NumberOfPhaseEncodingSteps = str(rows)
    ds.EchoTrainLength = str(protocol.echo_train_length)
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = "100"
    ds.PixelBandwidth = "200"
    ds.TransmitCoilName = "Body"
    ds.ReceiveCoilName = vendor.coil
    ds.AcquisitionMatrix = [0, cols, rows, 0]
    ds.InPlanePhaseEncodingDirection = "ROW"
    ds.FlipAngle = _ds(protocol.flip_angle)
    ds.VariableFlipAngleFlag = "N"
    ds.SAR = "0.42"
    ds.dBdt = "0"

    _add_pixel_module(ds, rows, cols)
    ds.WindowCenter = "1100"
    ds.WindowWidth = "2400"
    ds.PixelData = pixels
    return ds


def mr_series(
    subject: Subject,
    *,
    n_slices: int = 4,
    rows: int = 64,
    cols: int = 64,
    seed: int = 0,
    study_uid: str | None = None,
    series_number: int = 1,
    description_suffix: str = "",
) -> list[Dataset]:
    """A classic MR Image Storage series as a Siemens scanner exports it.

    Parameters
    ----------
    subject : Subject
        Whose PHI to plant.
    n_slices, rows, cols : int, optional
        Series size; the phantom is computed once per series, so thousands of
        256×256 slices take seconds.
    seed : int, optional
        Drives UIDs and the phantom; same arguments, same bytes.
    study_uid : str, optional
        Put the series into an existing study (default: the subject's study for ``seed``).
    series_number : int, optional
        Also picks the protocol (T2, T1, FLAIR for a brain; PD, T1, T2 for a knee).
    description_suffix : str, optional
        Appended to the SeriesDescription, e.g. to plant free text.

    Returns
    -------
    list of pydicom.Dataset
        Explicit VR little endian instances with ``file_meta``; write each
        with ``ds.save_as(path, enforce_file_format=True)``.
    """
    region = _region(subject)
    protocol = region.protocols[(series_number - 1) % len(region.protocols)]
    series = _new_series(
        subject,
        seed=seed,
        study_uid=study_uid,
        series_number=series_number,
        description=protocol.name + description_suffix,
        protocol=protocol,
        vendor=_SIEMENS,
        kind="mr",
    )
    spacing, positions, locations, step = _geometry(protocol, region, rows, cols, n_slices)
    uids = [_uid("image", series.series_uid, k) for k in range(n_slices)]
    phantom = _phantom(rows, cols, seed * 1000 + series_number)
    instances = []
    for k in range(n_slices):
        acquired = series.start + timedelta(seconds=30, milliseconds=int(k * 1000 * step))
        phase = np.pi * (k + 0.5) / n_slices
        ds = _mr_instance(
            series,
            index=k,
            sop_uid=uids[k],
            referenced_uid=uids[(k + 1) % n_slices],
            position=positions[k],
            location=locations[k],
            spacing=spacing,
            step=step,
            rows=rows,
            cols=cols,
            pixels=_frame(phantom, protocol.contrast, phase),
            acquisition_number=1,
            acquired=acquired,
            image_type=("ORIGINAL", "PRIMARY", "M", "ND"),
            sequence_name=protocol.sequence_name,
        )
        _siemens_private(ds, series, bvalue=None, direction=None)
        _add_acme_block(ds, subject)
        instances.append(ds)
    return instances


# ---------------------------------------------------------------------------
# Diffusion series with vendor-private b-values
# ---------------------------------------------------------------------------

_DIRECTIONS = (
    (1.0, 0.0, 0.0),
    (0.0, 1.0, 0.0),
    (0.0, 0.0, 1.0),
    (0.70710678, 0.70710678, 0.0),
    (0.70710678, 0.0, 0.70710678),
    (0.0, 0.70710678, 0.70710678),
)


def _ge_private(ds: Dataset, bvalue: int, direction: tuple[float, float, float]) -> None:
    """GE keeps b-value and gradient in its own blocks, the b-value offset by 10⁹."""
    _add_private(
        ds,
        0x0009,
        "GEMS_IDEN_01",
        [(0x01, "LO", "GE_GENESIS_FF"), (0x02, "SH", "MRS1"), (0x04, "SH", "SIGNA")],
    )
    _add_private(
        ds,
        0x0019,
        "GEMS_ACQU_01",
        [
            (0x9C, "LO", "epi2"),
            (0xBB, "DS", _ds(direction[0])),
            (0xBC, "DS", _ds(direction[1])),
            (0xBD, "DS", _ds(direction[2])),
            (0xE0, "DS", "3"),
        ],
    )
    _add_private(
        ds, 0x0043, "GEMS_PARM_01", [(0x39, "IS", [str(bvalue + 1_000_000_000), "8", "0", "0"])]
    )


def diffusion_series(
    subject: Subject,
    *,
    bvalues: tuple[int, ...] = (0, 1000, 1000, 1000),
    vendor: str = "SIEMENS",
    rows: int = 32,
    cols: int = 32,
    seed: int = 0,
    study_uid: str | None = None,
) -> list[Dataset]:
    """A single-slice diffusion series whose b-values live only in private elements.

    Parameters
    ----------
    subject : Subject
        Whose PHI to plant.
    bvalues : tuple of int, optional
        One image per entry, all at the same position; non-zero b-values
        cycle through x, y, z and oblique gradient directions.
    vendor : {"SIEMENS", "GE"}, optional
        ``"SIEMENS"``: ``(0019,"SIEMENS MR HEADER",0C/0D/0E)`` plus a binary
        CSA image header with ``B_value`` and ``DiffusionGradientDirection``.
        ``"GE"``: ``(0043,"GEMS_PARM_01",39)`` = [b + 10⁹, 8, 0, 0] and
        ``(0019,"GEMS_ACQU_01",BB/BC/BD)``.  Neither writes the standard
        DiffusionBValue, so a converter must read the private elements.
    rows, cols, seed, study_uid
        As for :func:`mr_series`.

    Returns
    -------
    list of pydicom.Dataset
        One instance per b-value, each its own acquisition number.
    """
    vendor = vendor.upper()
    if vendor not in ("SIEMENS", "GE"):
        raise ValueError(f"vendor must be 'SIEMENS' or 'GE', not {vendor!r}")
    series_number = 10
    # Diffusion is a neuro sequence: head first supine, axial brain, whatever the study.
    region = _BRAIN
    series = _new_series(
        subject,
        seed=seed,
        study_uid=study_uid,
        series_number=series_number,
        description=f"ep2d_diff_{len(bvalues)}dir" if vendor == "SIEMENS" else "DTI ASSET",
        protocol=_DIFFUSION,
        vendor=_SIEMENS if vendor == "SIEMENS" else _GE,
        kind=f"diffusion-{vendor}",
        region=region,
    )
    spacing, positions, locations, step = _geometry(_DIFFUSION, region, rows, cols, 1)
    uids = [_uid("image", series.series_uid, k) for k in range(len(bvalues))]
    phantom = _phantom(rows, cols, seed * 1000 + series_number)
    instances = []
    n_directions = 0
    for k, bvalue in enumerate(bvalues):
        direction: tuple[float, float, float] | None = None
        if bvalue > 0:
            direction = _DIRECTIONS[n_directions % len(_DIRECTIONS)]
            n_directions += 1
        # One volume per TR, so converters that estimate TR from times agree with the header.
        acquired = series.start + timedelta(milliseconds=30_000 + _DIFFUSION.repetition_time * k)
        if vendor == "SIEMENS":
            image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE", "ND")
            sequence_name = f"*ep_b{bvalue}#{n_directions}" if direction else f"*ep_b{bvalue}"
        else:
            image_type = ("ORIGINAL", "PRIMARY", "OTHER")
            sequence_name = "epi2"
        ds = _mr_instance(
            series,
            index=k,
            sop_uid=uids[k],
            referenced_uid=uids[0] if k else uids[-1],
            position=positions[0],
            location=locations[0],
            spacing=spacing,
            step=step,
            rows=rows,
            cols=cols,
            pixels=_diffusion_frame(phantom, bvalue, direction or (0.0, 0.0, 0.0)),
            acquisition_number=k + 1,
            acquired=acquired,
            image_type=image_type,
            sequence_name=sequence_name,
        )
        if vendor == "SIEMENS":
            _siemens_private(ds, series, bvalue=bvalue, direction=direction)
        else:
            _ge_private(ds, bvalue, direction or (0.0, 0.0, 0.0))
        _add_acme_block(ds, subject)
        instances.append(ds)
    return instances


# ---------------------------------------------------------------------------
# Enhanced MR Image Storage
# ---------------------------------------------------------------------------


def _item(**elements: object) -> Dataset:
    item = Dataset()
    for keyword, value in elements.items():
        setattr(item, keyword, value)
    return item


def _seq(*items: Dataset) -> DicomSequence:
    return DicomSequence(list(items))


def enhanced_mr(
    subject: Subject,
    *,
    n_frames: int = 3,
    rows: int = 32,
    cols: int = 32,
    seed: int = 0,
    study_uid: str | None = None,
) -> Dataset:
    """A multi-frame Enhanced MR Image Storage instance, PHI included.

    Identifying values sit at the top level as in a classic image, and
    dates also inside every per-frame item (FrameAcquisitionDateTime,
    FrameReferenceDateTime), so date shifting must reach into functional groups.

    Parameters
    ----------
    subject : Subject
        Whose PHI to plant.
    n_frames, rows, cols : int, optional
        One stack of ``n_frames`` parallel slices.
    seed : int, optional
        Drives UIDs and the phantom.
    study_uid : str, optional
        Put the instance into an existing study.

    Returns
    -------
    pydicom.Dataset
        With ``file_meta``; dciodvfy reports no errors for it.
    """
    region = _region(subject)
    protocol = region.protocols[0]
    series_number = 20
    series = _new_series(
        subject,
        seed=seed,
        study_uid=study_uid,
        series_number=series_number,
        description=f"{protocol.name}_enhanced",
        protocol=protocol,
        vendor=_SIEMENS,
        kind="enhanced",
    )
    spacing, positions, _, step = _geometry(protocol, region, rows, cols, n_frames)
    acquired = series.start + timedelta(seconds=25)
    duration_ms = protocol.repetition_time * rows / protocol.echo_train_length
    created = acquired + timedelta(milliseconds=duration_ms * n_frames + 5000)
    sop_uid = _uid("image", series.series_uid, 0)
    ds = _new_dataset(ENHANCED_MR_STORAGE, sop_uid, created)
    frame_type = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.ImageType = frame_type
    _add_patient(ds, subject, series.patient_name)
    _add_study(ds, series)
    _add_series(ds, series, "MR")
    # Laterality goes into FrameLaterality; dciodvfy rejects the series-level one here.
    if "Laterality" in ds:
        del ds.Laterality
    ds.ProtocolName = protocol.name
    ds.PatientPosition = region.patient_position
    _add_equipment(ds, subject, _SIEMENS)
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""

    # Multi-frame Functional Groups, Enhanced MR Image, MR Image and Spectroscopy Instance
    ds.InstanceNumber = "1"
    ds.ContentDate = _da(created)
    ds.ContentTime = _tm(created)
    ds.NumberOfFrames = str(n_frames)
    ds.AcquisitionNumber = "1"
    ds.AcquisitionDateTime = _dt(acquired)
    ds.AcquisitionDuration = round(duration_ms * n_frames / 1000.0, 3)
    ds.ContentQualification = "PRODUCT"
    ds.ResonantNucleus = "1H"
    ds.KSpaceFiltering = "NONE"
    ds.MagneticFieldStrength = _ds(_SIEMENS.field_strength)
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.ImageComments = f"Pat. {subject.phi.patient_id}: enhanced export"
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ComplexImageComponent = "MAGNITUDE"
    ds.AcquisitionContrast = protocol.contrast
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.AcquisitionContextSequence = DicomSequence([])

    # MR Pulse Sequence
    ds.PulseSequenceName = protocol.sequence_name.lstrip("*")
    ds.MRAcquisitionType = protocol.acquisition_type
    ds.EchoPulseSequence = "SPIN"
    ds.MultipleSpinEcho = "NO"
    ds.MultiPlanarExcitation = "NO"
    ds.PhaseContrast = "NO"
    ds.TimeOfFlightContrast = "NO"
    ds.SteadyStatePulseSequence = "NONE"
    ds.EchoPlanarPulseSequence = "NO"
    ds.SaturationRecovery = "NO"
    ds.SpectrallySelectedSuppression = "FAT" if "FS" in protocol.scan_options else "NONE"
    ds.OversamplingPhase = "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.RectilinearPhaseEncodeReordering = "LINEAR"
    ds.SegmentedKSpaceTraversal = "PARTIAL"
    ds.NumberOfKSpaceTrajectories = 1

    # Multi-frame Dimension: one stack, frames ordered by position within it
    dimension_uid = _uid("dimension-organization", sop_uid)
    ds.DimensionOrganizationSequence = _seq(_item(DimensionOrganizationUID=dimension_uid))
    ds.DimensionOrganizationType = "3D"
    ds.DimensionIndexSequence = _seq(
        _item(
            DimensionOrganizationUID=dimension_uid,
            DimensionIndexPointer=0x00209056,
            FunctionalGroupPointer=0x00209111,
            DimensionDescriptionLabel="Stack ID",
        ),
        _item(
            DimensionOrganizationUID=dimension_uid,
            DimensionIndexPointer=0x00209057,
            FunctionalGroupPointer=0x00209111,
            DimensionDescriptionLabel="In-Stack Position Number",
        ),
    )

    localizer_uid = _uid("localizer", series.study_uid)
    localizer = _item(
        ReferencedSOPClassUID=MR_IMAGE_STORAGE,
        ReferencedSOPInstanceUID=localizer_uid,
        PurposeOfReferenceCodeSequence=_seq(_code("121311", "DCM", "Localizer")),
    )
    # A frame that references an image must also list it as evidence, by study and series.
    ds.ReferencedImageEvidenceSequence = _seq(
        _item(
            StudyInstanceUID=series.study_uid,
            ReferencedSeriesSequence=_seq(
                _item(
                    SeriesInstanceUID=_uid("localizer-series", series.study_uid),
                    ReferencedSOPSequence=_seq(
                        _item(
                            ReferencedSOPClassUID=MR_IMAGE_STORAGE,
                            ReferencedSOPInstanceUID=localizer_uid,
                        )
                    ),
                )
            ),
        )
    )
    shared = _item(
        ReferencedImageSequence=_seq(localizer),
        PixelMeasuresSequence=_seq(
            _item(
                PixelSpacing=[_ds(spacing), _ds(spacing)],
                SliceThickness=_ds(protocol.slice_thickness),
                SpacingBetweenSlices=_ds(step),
            )
        ),
        PlaneOrientationSequence=_seq(
            _item(ImageOrientationPatient=[_ds(v) for v in protocol.orientation])
        ),
        FrameAnatomySequence=_seq(
            _item(
                AnatomicRegionSequence=_seq(_code(*region.anatomy)),
                FrameLaterality=region.laterality or "U",
            )
        ),
        PixelValueTransformationSequence=_seq(
            _item(RescaleIntercept="0", RescaleSlope="1", RescaleType="US")
        ),
        MRImageFrameTypeSequence=_seq(
            _item(
                FrameType=frame_type,
                PixelPresentation="MONOCHROME",
                VolumetricProperties="VOLUME",
                VolumeBasedCalculationTechnique="NONE",
                ComplexImageComponent="MAGNITUDE",
                AcquisitionContrast=protocol.contrast,
            )
        ),
        MRTimingAndRelatedParametersSequence=_seq(
            _item(
                RepetitionTime=_ds(protocol.repetition_time),
                FlipAngle=_ds(protocol.flip_angle),
                EchoTrainLength=str(protocol.echo_train_length),
                RFEchoTrainLength=protocol.echo_train_length,
                GradientEchoTrainLength=0,
                SpecificAbsorptionRateSequence=_seq(
                    _item(
                        SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY",
                        SpecificAbsorptionRateValue=0.42,
                    )
                ),
                GradientOutputType="DB_DT",
                GradientOutput=12.5,
                OperatingModeSequence=_seq(
                    _item(OperatingModeType="STATIC FIELD", OperatingMode="IEC_NORMAL"),
                    _item(OperatingModeType="RF", OperatingMode="IEC_NORMAL"),
                    _item(OperatingModeType="GRADIENT", OperatingMode="IEC_NORMAL"),
                ),
            )
        ),
        MRFOVGeometrySequence=_seq(
            _item(
                InPlanePhaseEncodingDirection="ROW",
                MRAcquisitionFrequencyEncodingSteps=cols,
                MRAcquisitionPhaseEncodingStepsInPlane=rows,
                PercentSampling="100",
                PercentPhaseFieldOfView="100",
            )
        ),
        MREchoSequence=_seq(_item(EffectiveEchoTime=protocol.echo_time)),
        MRModifierSequence=_seq(
            _item(
                InversionRecovery="NO",
                FlowCompensation="NONE",
                T2Preparation="NO",
                SpectrallySelectedExcitation="NONE",
                SpatialPresaturation="NONE",
                PartialFourier="NO",
                ParallelAcquisition="NO",
            )
        ),
        MRImagingModifierSequence=_seq(
            _item(
                MagnetizationTransfer="NONE",
                BloodSignalNulling="NO",
                Tagging="NONE",
                TransmitterFrequency=_SIEMENS.frequency,
                PixelBandwidth="200",
            )
        ),
        MRReceiveCoilSequence=_seq(
            _item(
                ReceiveCoilName=_SIEMENS.coil,
                ReceiveCoilManufacturerName="SIEMENS",
                ReceiveCoilType="VOLUME",
                QuadratureReceiveCoil="NO",
            )
        ),
        MRTransmitCoilSequence=_seq(
            _item(
                TransmitCoilName="Body",
                TransmitCoilManufacturerName="SIEMENS",
                TransmitCoilType="BODY",
            )
        ),
        MRDiffusionSequence=_seq(_item(DiffusionBValue=0.0, DiffusionDirectionality="NONE")),
        MRAveragesSequence=_seq(_item(NumberOfAverages="1")),
    )
    ds.SharedFunctionalGroupsSequence = _seq(shared)

    per_frame = []
    for k in range(n_frames):
        frame_time = acquired + timedelta(milliseconds=duration_ms * k)
        content = _item(
            FrameAcquisitionNumber=1,
            FrameReferenceDateTime=_dt(frame_time),
            FrameAcquisitionDateTime=_dt(frame_time),
            FrameAcquisitionDuration=round(duration_ms, 3),
            DimensionIndexValues=[1, k + 1],
            StackID="1",
            InStackPositionNumber=k + 1,
        )
        per_frame.append(
            _item(
                FrameContentSequence=_seq(content),
                PlanePositionSequence=_seq(
                    _item(ImagePositionPatient=[_ds(v) for v in positions[k]])
                ),
            )
        )
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)

    _add_pixel_module(ds, rows, cols)
    phantom = _phantom(rows, cols, seed * 1000 + series_number)
    ds.PixelData = b"".join(
        _frame(phantom, protocol.contrast, np.pi * (k + 0.5) / n_frames) for k in range(n_frames)
    )
    _add_acme_block(ds, subject)
    return ds


# ---------------------------------------------------------------------------
# Non-MR objects a PACS export also contains
# ---------------------------------------------------------------------------

# 5×7 capitals and digits, so burned-in text is real pixels an OCR engine can read.
_GLYPHS: dict[str, tuple[str, ...]] = {
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "##..#", "##..#", "#.#.#", "#..##", "#..##", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
    "0": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    ":": (".....", "..#..", "..#..", ".....", "..#..", "..#..", "....."),
    "/": (".....", "....#", "...#.", "..#..", ".#...", "#....", "....."),
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    "'": ("..#..", "..#..", ".#...", ".....", ".....", ".....", "....."),
    " ": (".....",) * 7,
}


def _burn_text(
    image: npt.NDArray[np.uint8], text: str, top: int, left: int, scale: int, value: int
) -> None:
    """Draw ``text`` (accents folded, upper case) into ``image`` in place.

    Glyphs are scaled 5×7 bitmaps with softened edges: tesseract reads
    blurred blocks far more reliably than hard pixel staircases.
    """
    chars = _ascii_fold(text).upper()
    pad = scale
    mask = np.zeros((7 * scale + 2 * pad, 7 * scale * len(chars) + 2 * pad))
    block = np.ones((scale, scale))
    for index, char in enumerate(chars):
        glyph = np.array([[c == "#" for c in row] for row in _GLYPHS.get(char, _GLYPHS[" "])])
        column = pad + 7 * scale * index
        mask[pad : pad + 7 * scale, column : column + 5 * scale] = np.kron(glyph, block)
    for _ in range(2):
        mask = (np.roll(mask, 1, 0) + mask + np.roll(mask, -1, 0)) / 3.0
        mask = (np.roll(mask, 1, 1) + mask + np.roll(mask, -1, 1)) / 3.0
    top, left = top - pad, left - pad
    height = min(mask.shape[0], image.shape[0] - top)
    width = min(mask.shape[1], image.shape[1] - left)
    if height <= 0 or width <= 0:
        return
    region = image[top : top + height, left : left + width].astype(np.float64)
    alpha = mask[:height, :width]
    blended = region * (1.0 - alpha) + value * alpha
    image[top : top + height, left : left + width] = np.round(blended).astype(np.uint8)


def _display_name(name: str) -> str:
    return " ".join(part for part in name.split("^") if part)


def _secondary_capture(series: _Series, sop_uid: str, moment: datetime) -> Dataset:
    subject, phi = series.subject, series.subject.phi
    ds = _new_dataset(SECONDARY_CAPTURE_STORAGE, sop_uid, moment)
    ds.ImageType = ["DERIVED", "SECONDARY"]
    _add_patient(ds, subject, series.patient_name)
    _add_study(ds, series)
    _add_series(ds, series, "OT")
    _add_equipment(ds, subject, _SIEMENS)
    ds.ConversionType = "WSD"
    ds.SecondaryCaptureDeviceManufacturer = "ACME Screen Grabber"
    ds.DateOfSecondaryCapture = _da(moment)
    ds.TimeOfSecondaryCapture = _tm(moment)
    ds.InstanceNumber = "1"
    ds.PatientOrientation = ""
    ds.ContentDate = _da(moment)
    ds.ContentTime = _tm(moment)
    ds.BurnedInAnnotation = "YES"
    ds.ImageComments = f"Screenshot for {_display_name(series.patient_name)}"
    rows, cols = 96, 480
    ramp = np.linspace(20, 70, cols, dtype=np.float64)[None, :]
    image = np.repeat(ramp, rows, axis=0).astype(np.uint8)
    _burn_text(image, _display_name(series.patient_name), 6, 6, 3, 250)
    _burn_text(image, phi.patient_id, 36, 6, 3, 250)
    birth = phi.birth_date
    _burn_text(image, f"DOB {birth[:4]}-{birth[4:6]}-{birth[6:]}", 66, 6, 3, 250)
    _add_pixel_module(ds, rows, cols, bits=8)
    ds.PixelData = image.tobytes()
    return ds


def _tiny_pdf(lines: Sequence[str]) -> bytes:
    """A valid one-page PDF with ``lines`` as text (Latin-1, as PDFDocEncoding allows)."""
    text = " ".join(
        f"({line.replace(chr(92), '').replace('(', '').replace(')', '')}) Tj 0 -16 Td"
        for line in lines
    )
    stream = f"BT /F1 12 Tf 72 720 Td {text} ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def _encapsulated_pdf(series: _Series, sop_uid: str, moment: datetime) -> Dataset:
    subject, phi = series.subject, series.subject.phi
    ds = _new_dataset(ENCAPSULATED_PDF_STORAGE, sop_uid, moment)
    _add_patient(ds, subject, series.patient_name)
    _add_study(ds, series)
    _add_series(ds, series, "DOC")
    _add_equipment(ds, subject, _SIEMENS)
    ds.ConversionType = "WSD"
    ds.InstanceNumber = "1"
    ds.ContentDate = _da(moment)
    ds.ContentTime = _tm(moment)
    ds.AcquisitionDateTime = _dt(moment)
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = f"Referral {_display_name(series.patient_name)}"
    ds.ConceptNameCodeSequence = _seq(_code("18748-4", "LN", "Diagnostic imaging study"))
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    pdf = _tiny_pdf(
        [
            f"Patient: {series.patient_name.replace('^', ' ').strip()}",
            f"MRN: {phi.patient_id}  DOB: {phi.birth_date}",
            f"Referrer: {phi.referring_physician.replace('^', ' ').strip()}",
            f"{phi.institution_name}, {phi.institution_address}",
        ]
    )
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")
    return ds


def _basic_sr(series: _Series, sop_uid: str, moment: datetime) -> Dataset:
    subject, phi = series.subject, series.subject.phi
    ds = _new_dataset(BASIC_TEXT_SR_STORAGE, sop_uid, moment)
    _add_patient(ds, subject, series.patient_name)
    _add_study(ds, series)
    _add_series(ds, series, "SR")
    ds.ReferencedPerformedProcedureStepSequence = DicomSequence([])
    _add_equipment(ds, subject, _SIEMENS)
    ds.InstanceNumber = "1"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ContentDate = _da(moment)
    ds.ContentTime = _tm(moment)
    ds.PerformedProcedureCodeSequence = DicomSequence([])
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = _seq(_code("18748-4", "LN", "Diagnostic imaging report"))
    ds.ContinuityOfContent = "SEPARATE"
    observer = _item(
        RelationshipType="HAS OBS CONTEXT",
        ValueType="PNAME",
        ConceptNameCodeSequence=_seq(_code("121008", "DCM", "Person Observer Name")),
        PersonName=phi.referring_physician,
    )
    finding = _item(
        RelationshipType="CONTAINS",
        ValueType="TEXT",
        ConceptNameCodeSequence=_seq(_code("121071", "DCM", "Finding")),
        TextValue=(
            f"{_display_name(series.patient_name)} ({phi.patient_id}, born {phi.birth_date}), "
            f"referred by {_display_name(phi.referring_physician)}: no acute findings. "
            f"Compared with prior exam at {phi.institution_name}."
        ),
    )
    ds.ContentSequence = _seq(observer, finding)
    return ds


def _ultrasound(series: _Series, sop_uid: str, moment: datetime) -> Dataset:
    subject, phi = series.subject, series.subject.phi
    ds = _new_dataset(US_IMAGE_STORAGE, sop_uid, moment)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL", "0001"]
    _add_patient(ds, subject, series.patient_name)
    _add_study(ds, series)
    _add_series(ds, series, "US")
    _add_equipment(ds, subject, _Vendor("ACME Ultrasound", "SonoFake 9", "1.2", 0, 0, ""))
    ds.InstanceNumber = "1"
    ds.PatientOrientation = ""
    ds.ContentDate = _da(moment)
    ds.ContentTime = _tm(moment)
    ds.BurnedInAnnotation = "YES"
    ds.LossyImageCompression = "00"
    rows, cols = 240, 320
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    # The fan starts below the two text lines, as on a scanner's screen.
    radius = np.hypot(y - 20.0, x - cols / 2)
    angle = np.abs(np.arctan2(x - cols / 2, y - 20.0))
    sector = (radius > 40) & (radius < rows - 26) & (angle < 0.6)
    rng = np.random.default_rng(_stable_int(sop_uid))
    speckle = rng.gamma(2.0, 40.0, size=(rows, cols)) * (1.0 - radius / (rows * 1.5))
    gray = np.where(sector, np.clip(speckle, 0, 255), 0).astype(np.uint8)
    _burn_text(gray, _display_name(series.patient_name), 3, 3, 2, 255)
    _burn_text(gray, phi.patient_id, 22, 3, 2, 255)
    rgb = np.stack([gray, gray, gray], axis=-1)
    rgb[sector & (np.abs(x - cols / 2) < 6) & (radius > 90) & (radius < 120)] = (200, 40, 40)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = rgb.tobytes()
    return ds


def _stable_int(text: str) -> int:
    """A stable integer from text (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def other_objects(
    subject: Subject, *, seed: int = 0, study_uid: str | None = None
) -> dict[str, Dataset]:
    """Non-MR objects that turn up in MR exports and that a pipeline must handle or refuse.

    Parameters
    ----------
    subject : Subject
        Whose PHI to plant.
    seed : int, optional
        Drives UIDs.
    study_uid : str, optional
        Put the objects into an existing study.

    Returns
    -------
    dict of str to pydicom.Dataset
        ``"secondary_capture"``: 8-bit screenshot with name, MRN and birth date
        burned into the pixels; ``"encapsulated_pdf"``: a referral PDF naming
        the patient; ``"basic_sr"``: Basic Text SR with the name in a TEXT and
        a PNAME item; ``"private_sop"``: an MR image under Siemens' private
        CSA Non-Image SOP class; ``"ultrasound"``: RGB US image with the name
        burned in.
    """
    moment = _study_moment(subject) + timedelta(minutes=55)
    builders = {
        "secondary_capture": (_secondary_capture, 90, "Screen capture"),
        "encapsulated_pdf": (_encapsulated_pdf, 91, "Referral letter"),
        "basic_sr": (_basic_sr, 92, "Radiology report"),
        "private_sop": (None, 99, ""),
        "ultrasound": (_ultrasound, 93, "US survey"),
    }
    objects: dict[str, Dataset] = {}
    for key, (build, number, description) in builders.items():
        if build is None:
            # A scanner's non-image object: MR content under a SOP class no standard knows.
            private = mr_series(
                subject,
                n_slices=1,
                rows=16,
                cols=16,
                seed=seed,
                study_uid=study_uid,
                series_number=number,
                description_suffix=" CSA NON-IMAGE",
            )[0]
            private.SOPClassUID = PRIVATE_SOP_CLASS
            private.file_meta.MediaStorageSOPClassUID = PRIVATE_SOP_CLASS
            objects[key] = private
            continue
        series = _new_series(
            subject,
            seed=seed,
            study_uid=study_uid,
            series_number=number,
            description=description,
            protocol=_region(subject).protocols[0],
            vendor=_SIEMENS,
            kind=key,
        )
        objects[key] = build(series, _uid("image", series.series_uid, 0), moment)
    return objects


# ---------------------------------------------------------------------------
# A messy export tree
# ---------------------------------------------------------------------------


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
    fileset_uid = _uid("fileset", subject.phi.patient_id)
    ds = _new_dataset(MEDIA_STORAGE_DIRECTORY, fileset_uid, _study_moment(subject))
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
    record = _item(
        OffsetOfTheNextDirectoryRecord=0,
        RecordInUseFlag=0xFFFF,
        OffsetOfReferencedLowerLevelDirectoryEntity=0,
        DirectoryRecordType="PATIENT",
        SpecificCharacterSet=_CHARSET,
        PatientName=patient_name,
        PatientID=subject.phi.patient_id,
        PatientBirthDate=subject.phi.birth_date,
    )
    ds.DirectoryRecordSequence = _seq(record)
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
        study_uid = _study_uid(subject, seed)
        study_dir = folder / f"Study_{_da(_study_moment(subject))}"
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
                study_dir / "Enhanced" / f"{_uid('file', phi.patient_id)}.dcm",
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
