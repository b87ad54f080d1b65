"""Collecting identifiers from inputs: DICOM in its encodings, twix headers, ISMRMRD XML."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import pytest
from pydicom import dcmread
from pydicom.data import get_charset_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
)

from pipeline.samples.ismrmrd import IsmrmrdSample, write_ismrmrd_sample
from pipeline.samples.twix import SyntheticMeasurement, write_vb17_twix, write_vd_twix
from pipeline.verify import IdentifierKind, collect_identifiers, identifiers_of
from pipeline.verify.inputs import ismrmrd_header_identifiers
from tests.reference import needs_reference, reference_path

K = IdentifierKind
SOP = "1.2.826.0.1.3680043.8.498.4711.1"


def _kinds_and_values(path: Path) -> set[tuple[IdentifierKind, str]]:
    return {(i.kind, i.value) for i in identifiers_of(path)}


def _dataset(charset: str = "ISO_IR 192") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = SOP
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = SOP
    ds.PatientName = "Søren^Ærø=山田^太郎"
    ds.PatientID = "0012345"
    ds.PatientSex = "M"
    ds.StationName = "MR-ROOM-2"
    request = Dataset()
    request.AccessionNumber = "A7788123"
    request.ScheduledPerformingPhysicianName = "Kniegelenk^Erika"
    other = Dataset()
    other.PatientID = "KH-99812"
    ds.OtherPatientIDsSequence = Sequence([other])
    request.private_block(0x0011, "ACME NESTED", create=True).add_new(0x01, "PN", "Hidden^Name")
    ds.RequestAttributesSequence = Sequence([request])
    ds.private_block(0x0013, "SIEMENS CM VA0  CMS", create=True).add_new(0x30, "DA", "19610417")
    ds.add_new(0x7FE00010, "OW", b"\x00\x00")
    return ds


@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]
)
def test_dicom_every_element_nested_private_and_in_every_encoding(
    tmp_path: Path, syntax: str
) -> None:
    ds = _dataset()
    ds.file_meta.TransferSyntaxUID = syntax
    path = tmp_path / "in.dcm"
    ds.save_as(path, enforce_file_format=True)
    found = _kinds_and_values(path)
    # A private element of an unknown creator has no VR in implicit VR: it could be
    # anything, so it adds only a UID (the output side reads its bytes as text).
    private_name = {(K.PERSON_NAME, "Hidden^Name")} if syntax != ImplicitVRLittleEndian else set()
    assert (
        private_name
        | {
            (K.PATIENT_NAME, "Søren^Ærø=山田^太郎"),
            (K.PATIENT_ID, "0012345"),
            (K.STATION, "MR-ROOM-2"),
            (K.ACCESSION_NUMBER, "A7788123"),  # inside a sequence
            (K.PERSON_NAME, "Kniegelenk^Erika"),
            (K.OTHER_ID, "KH-99812"),  # a PatientID inside OtherPatientIDsSequence
            (
                K.BIRTH_DATE,
                "19610417",
            ),  # private, named "Patient Birthdate" by pydicom's dictionary
            (K.ORIGINAL_UID, SOP),
        }
        <= found
    )
    # The class and the transfer syntax are not this patient's; sex identifies no one.
    values = {v for _, v in found}
    assert MRImageStorage not in values and syntax not in values and "M" not in values


def test_dicom_without_preamble_or_file_meta(tmp_path: Path) -> None:
    ds = _dataset("ISO_IR 100")
    ds.PatientName = "Müller^José"
    del ds.file_meta
    path = tmp_path / "IM0001"
    dcmwrite(path, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert (K.PATIENT_NAME, "Müller^José") in _kinds_and_values(path)


@pytest.mark.parametrize("name", ["chrH31.dcm", "chrX1.dcm", "chrRuss.dcm", "chrSQEncoding.dcm"])
def test_dicom_in_other_character_sets_is_read_as_pydicom_decodes_it(name: str) -> None:
    path = Path(get_charset_files(name)[0])  # ISO 2022 Japanese, UTF-8, Cyrillic, nested
    names = {v for k, v in _kinds_and_values(path) if k is K.PATIENT_NAME}
    expected = {str(e.value) for e in dcmread(path).iterall() if e.keyword == "PatientName"}
    assert names == expected and all("\x1b" not in n for n in names)


def test_twix_every_identifying_field_of_the_protocol(tmp_path: Path) -> None:
    meas = SyntheticMeasurement(
        patient_name="WEISS^HEDWIG", patient_id="PID-77123", birth_date="19470223",
        institution="Kreisklinik Unterhaching", institution_address="Bahnhofstr. 1,Haching",
        station_name="MRC88231", serial="88231", referring_physician="KRAUSE^OTTO",
        patient_loid=71234560, study_loid=71234565,
    )  # fmt: skip
    vd, vb = tmp_path / "meas_vd.dat", tmp_path / "meas_vb.dat"
    write_vd_twix(vd, [meas])
    write_vb17_twix(vb, meas)
    expected = {
        (K.PATIENT_NAME, "WEISS^HEDWIG"),
        (K.PATIENT_ID, "PID-77123"),
        (K.BIRTH_DATE, "19470223"),  # text, not twixtools' 19470223.0
        (K.INSTITUTION, "Kreisklinik Unterhaching"),
        (K.ADDRESS, "Bahnhofstr. 1,Haching"),
        (K.STATION, "MRC88231"),
        (K.DEVICE_SERIAL, "88231"),
        (K.PERSON_NAME, "KRAUSE^OTTO"),
        (K.ORIGINAL_UID, "6.0.71234560"),
        (K.ORIGINAL_UID, "71234560"),  # the LOID's number, as the measurement ID repeats it
        (K.ORIGINAL_UID, "6.0.71234565"),
        (K.ORIGINAL_UID, meas.frame_of_reference),
        (K.ORIGINAL_UID, meas.uid_root),  # the scanner's root holds its serial
    }
    assert expected <= _kinds_and_values(vd)
    assert expected <= _kinds_and_values(vb)


@needs_reference("twix", "gre.dat")
def test_twix_reference_file_masked_names_are_no_identifiers() -> None:
    found = _kinds_and_values(reference_path("twix", "gre.dat"))
    kinds = {k for k, _ in found}
    assert K.PATIENT_NAME not in kinds and K.BIRTH_DATE not in kinds  # xxxxxxx in the file
    assert (K.DEVICE_SERIAL, "45385") in found
    assert (K.INSTITUTION, "DZNE_Bonn-Venusberg") in found
    assert (K.ORIGINAL_UID, "6.0.66327770") in found and (K.ORIGINAL_UID, "66327770") in found
    assert (K.ORIGINAL_UID, "1.3.12.2.1107.5.2.19.45385") in found


def test_ismrmrd_header_and_fastmri_attribute(tmp_path: Path) -> None:
    path = tmp_path / "in.h5"
    write_ismrmrd_sample(path, IsmrmrdSample(patient_id="SUBJ-7788"))
    with h5py.File(path, "r+") as f:
        f.attrs["patient_id"] = "PID-4711"
    found = _kinds_and_values(path)
    assert {(K.PATIENT_ID, "SUBJ-7788"), (K.PATIENT_ID, "PID-4711")} <= found
    header = (
        '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><subjectInformation>'
        "<patientName>Mustermann^Erika</patientName><patientBirthdate>1961-04-17"
        "</patientBirthdate></subjectInformation><studyInformation><accessionNumber>7788123"
        "</accessionNumber><referringPhysicianName>Dr^Knie</referringPhysicianName>"
        "<studyInstanceUID>1.2.826.0.1.3680043.2.1125.7788123.1</studyInstanceUID>"
        "</studyInformation><measurementInformation><measurementID>45385_66327770_66327775_358"
        "</measurementID><frameOfReferenceUID>1.3.12.2.1107.5.2.19.45385.1.2</frameOfReferenceUID>"
        "</measurementInformation><acquisitionSystemInformation><institutionName>DZNE"
        "</institutionName><stationName>MRC45385</stationName><deviceSerialNumber>45385"
        "</deviceSerialNumber></acquisitionSystemInformation></ismrmrdHeader>"
    )
    assert {(i.kind, i.value) for i in ismrmrd_header_identifiers(header)} == {
        (K.PATIENT_NAME, "Mustermann^Erika"),
        (K.BIRTH_DATE, "1961-04-17"),
        (K.ACCESSION_NUMBER, "7788123"),
        (K.PERSON_NAME, "Dr^Knie"),
        (K.ORIGINAL_UID, "1.2.826.0.1.3680043.2.1125.7788123.1"),
        (K.OTHER_ID, "45385_66327770_66327775_358"),
        (K.ORIGINAL_UID, "1.3.12.2.1107.5.2.19.45385.1.2"),
        (K.INSTITUTION, "DZNE"),
        (K.STATION, "MRC45385"),
        (K.DEVICE_SERIAL, "45385"),
    }


def test_an_unreadable_input_adds_nothing_and_is_listed_by_its_hash(tmp_path: Path) -> None:
    good = tmp_path / "good.dcm"
    _dataset().save_as(good, enforce_file_format=True)
    bad = {
        "empty.dcm": b"",
        "notes.txt": "Patient Müller^José called.\n".encode(),
        "IM9999": bytes(range(256)) * 16,
        "cut.h5": b"\x89HDF\r\n\x1a\n" + b"\x00" * 40,
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    # An input cut short still gives what it holds.
    (tmp_path / "cut.dcm").write_bytes(good.read_bytes()[:700])
    identifiers = collect_identifiers([tmp_path])
    assert identifiers.inputs == 6
    assert set(identifiers.unreadable) == {hashlib.sha256(d).hexdigest() for d in bad.values()}
    assert len(identifiers) == len(collect_identifiers([good]))
    assert "Müller" not in repr(identifiers)
