from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from pipeline.dicom.profile import Profile, load_profile
from pipeline.keys import SecretKey
from pipeline.rulefiles import rules_root

KEY = SecretKey(bytes(range(32)))
STUDY = "1.3.12.2.1107.5.2.30.25245.30000024031107233521800000011"
SERIES = "1.3.12.2.1107.5.2.30.25245.2024031114301234567890123"
SOP = "1.3.12.2.1107.5.2.30.25245.2024031114301234567890124"
OTHER_SOP = "1.3.12.2.1107.5.2.30.25245.2024031114301234567890125"


def tiny_mr() -> Dataset:
    """A small classic MR dataset with PHI at the top level, nested and private."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = SOP
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = "HOSP_PACS"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = SOP
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = SERIES
    ds.FrameOfReferenceUID = STUDY + ".9"
    ds.PatientName = "Müller^José^"
    ds.PatientID = "MRN48213977"
    ds.PatientBirthDate = "19580314"
    ds.PatientSex = "M"
    ds.PatientAge = "066Y"
    ds.PatientWeight = 81.5
    ds.AccessionNumber = "ACC20240042"
    ds.InstitutionName = "St. Elsewhere Hospital"
    ds.ReferringPhysicianName = "Smith^Anna"
    ds.StationName = "MRC25245"
    ds.DeviceSerialNumber = "25245"
    ds.StudyDate = "20240311"
    ds.StudyTime = "143012.123"
    ds.AcquisitionDateTime = "20240311143512.500000+0100"
    ds.StudyDescription = "MRI KNEE LEFT MÜLLER"
    ds.SeriesDescription = "t2_tse_sag"
    ds.ProtocolName = "knee MRN48213977"
    ds.Modality = "MR"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.Manufacturer = "SIEMENS"
    ds.MagneticFieldStrength = 3
    ds.RepetitionTime = 3000.0
    ds.EchoTime = 90.0
    ds.ImagePositionPatient = [-100.0, -100.0, 12.5]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = b"\x01\x00\x02\x00\x03\x00\x04\x00"
    ref = Dataset()
    ref.ReferencedSOPClassUID = MRImageStorage
    ref.ReferencedSOPInstanceUID = OTHER_SOP
    inner = Dataset()
    inner.ReferencedSOPClassUID = MRImageStorage
    inner.ReferencedSOPInstanceUID = SOP
    inner.ContentDate = "20240310"
    inner.PatientName = "MULLER^JOSE"
    ref.ReferencedImageSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([ref])
    request = Dataset()
    request.AccessionNumber = "ACC20240042"
    request.RequestedProcedureID = "RP998877"
    ds.RequestAttributesSequence = Sequence([request])
    block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0C, "IS", "1000")
    block.add_new(0x0E, "FD", [0.0, 0.0, 1.0])
    acme = ds.private_block(0x0009, "ACME 1.1", create=True)
    acme.add_new(0x01, "DA", "20240311")
    acme.add_new(0x02, "LO", "Müller^José")
    ds.add_new(0x60000010, "US", 2)
    ds.add_new(0x60000011, "US", 2)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", b"\x0f\x00")
    ds.add_new(0x60004000, "LT", "overlay of Müller")
    return ds


@pytest.fixture
def mr() -> Dataset:
    return tiny_mr()


@pytest.fixture
def key() -> SecretKey:
    return KEY


@pytest.fixture(scope="session")
def research() -> Profile:
    return load_profile("research")


@pytest.fixture
def site_profile(tmp_path: Path) -> Callable[[str], Profile]:
    """A profile that includes research and adds the given rules lines."""

    def make(rules: str, base: str = "research") -> Profile:
        path = tmp_path / "site.yaml"
        path.write_text(
            f"name: site\ninclude:\n  - {rules_root() / 'dicom' / (base + '.yaml')}\nrules:\n{rules}"
        )
        return load_profile(path)

    return make
