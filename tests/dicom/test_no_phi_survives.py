"""Property: planted PHI never survives, kept clinical attributes stay bit-identical.

Hypothesis plants random identifying values in text, name, date and private
elements, at the top level and inside nested sequences (public and private),
embeds the patient's own name and ID in free-text descriptions the way RIS
systems do, and fills a Siemens CSA image header (kept, rebuilt, by the
research profile) with them: in allowlisted fields, in fields not on the
list, behind the NUL of a valid value, and in the CSA series header's
protocol text.  The written bytes must contain none of them.
"""

from __future__ import annotations

import datetime as dt
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pipeline.dicom.csa import decode_csa2, load_csa_allowlist
from pipeline.dicom.deidentify import deidentify_dataset
from pipeline.dicom.profile import load_profile
from pipeline.identity.uids import UidMapper
from pipeline.keys import SecretKey
from pipeline.samples import encode_csa

from .conftest import tiny_mr

PROFILE = load_profile("research")
KEY = SecretKey(b"\x42" * 32)
CLINICAL = ["KNEE", "T2", "SAG", "FS", "PD", "AXIAL", "MRI", "LEFT", "TSE"]
TEXT_KEYWORDS = [
    "OtherPatientIDs", "InstitutionName", "InstitutionAddress", "StationName",
    "DeviceSerialNumber", "StudyID", "PatientAddress", "PatientTelephoneNumbers",
    "MedicalRecordLocator", "RequestingService", "AdmissionID",
]  # fmt: skip
NAME_KEYWORDS = [
    "ReferringPhysicianName", "OperatorsName", "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName",
]  # fmt: skip
DESCRIPTION_KEYWORDS = [
    "StudyDescription", "SeriesDescription", "ProtocolName",
    "RequestedProcedureDescription", "PerformedProcedureStepDescription", "ImageComments",
    "PatientComments", "AdditionalPatientHistory", "Occupation",
]  # fmt: skip
KEPT = [
    "Modality", "RepetitionTime", "EchoTime", "MagneticFieldStrength", "ImagePositionPatient",
    "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "BitsStored", "PixelData",
    "SOPClassUID", "PatientSex", "PatientAge", "PatientWeight",
]  # fmt: skip

CSA_ALLOWED = sorted(set(load_csa_allowlist().fields) - {"NumberOfImagesInMosaic"})
CSA_OTHER = ["PatientName", "ImaCoilString", "UsedPatientWeight", "ImageComments", "Comp_JobID"]

# Identifying tokens: 8-14 capital letters, or an MRN-like code; long enough that
# finding one in the output can only mean it leaked.
token = st.text("ABCDEFGHJKLMNPRSTUVWXYZ", min_size=8, max_size=14)
mrn = st.from_regex(r"(MRN|PID|ACC)[1-9][0-9]{6,9}", fullmatch=True)
dates = st.dates(dt.date(1901, 1, 1), dt.date(2090, 1, 1)).map(lambda d: d.strftime("%Y%m%d"))


@st.composite
def planted(draw: st.DrawFn) -> tuple[Dataset, list[str]]:
    ds = tiny_mr()
    family, given_name = draw(token), draw(token)
    pid = draw(mrn)
    secrets = [family, given_name, pid]
    ds.PatientName = f"{family}^{given_name}^^"
    ds.PatientID = pid
    ds.PatientBirthDate = draw(dates)
    for keyword in draw(st.lists(st.sampled_from(TEXT_KEYWORDS), max_size=5, unique=True)):
        value = draw(token)
        secrets.append(value)
        setattr(ds, keyword, value[:16] if dictionary_VR(keyword) == "SH" else value)
    for keyword in draw(st.lists(st.sampled_from(NAME_KEYWORDS), max_size=3, unique=True)):
        a, b = draw(token), draw(token)
        secrets += [a, b]
        setattr(ds, keyword, f"{a}^{b}")
    for keyword in draw(st.lists(st.sampled_from(DESCRIPTION_KEYWORDS), min_size=1, unique=True)):
        words = draw(st.lists(st.sampled_from(CLINICAL), min_size=1, max_size=3))
        embedded = draw(st.sampled_from([family, given_name.lower(), pid]))
        position = draw(st.integers(0, len(words)))
        text = " ".join([*words[:position], embedded, *words[position:]])
        setattr(ds, keyword, text[:16] if dictionary_VR(keyword) == "SH" else text[:64])
    # private elements: text, a date and a nested private sequence
    creator = draw(st.sampled_from(["ACME 1.1", "HOSPITAL_RIS", "SIEMENS CSA HEADER"]))
    block = ds.private_block(0x0011, creator, create=True)
    value = draw(token)
    secrets.append(value)
    block.add_new(0x01, "LO", value)
    block.add_new(0x02, "DA", ds.PatientBirthDate)
    inner = Dataset()
    secret_inner = draw(token)
    secrets.append(secret_inner)
    inner.PatientName = secret_inner
    block.add_new(0x03, "SQ", Sequence([inner]))
    # a Siemens CSA image header: planted values in allowlisted fields and in
    # others, one behind the NUL of a valid mosaic count; and the series header
    fields: dict[str, list[str]] = {"NumberOfImagesInMosaic": ["48\0" + draw(token)]}
    for name in draw(st.lists(st.sampled_from(CSA_ALLOWED), max_size=4, unique=True)):
        fields[name] = [draw(st.one_of(token, mrn))]
    for name in draw(st.lists(st.sampled_from(CSA_OTHER), min_size=1, max_size=3, unique=True)):
        fields[name] = [draw(st.one_of(token, mrn))]
    secrets += [v.split("\0")[-1] for values in fields.values() for v in values]
    protocol = draw(token)
    secrets.append(protocol)
    csa = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    csa.add_new(0x10, "OB", encode_csa(fields))
    csa.add_new(0x20, "OB", encode_csa({"MrPhoenixProtocol": [f'tProtocolName = "{protocol}"']}))
    # nested public sequences at depth 1..3
    depth = draw(st.integers(1, 3))
    item = ds.ReferencedImageSequence[0]
    for _ in range(depth - 1):
        child = Dataset()
        item.ReferencedImageSequence = Sequence([child])
        item = child
    nested_name, nested_id = draw(token), draw(mrn)
    secrets += [nested_name, nested_id]
    item.PatientName = nested_name
    item.OtherPatientIDs = nested_id
    item.AccessionNumber = draw(mrn)
    secrets.append(item.AccessionNumber)
    return ds, secrets


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted())
def test_planted_phi_never_survives_and_clinical_values_are_bit_identical(
    case: tuple[Dataset, list[str]],
) -> None:
    ds, secrets = case
    kept = {k: ds[k].value for k in KEPT if k in ds}
    birth = ds.PatientBirthDate
    deidentify_dataset(ds, KEY, PROFILE, UidMapper(KEY))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    written = buffer.getvalue()
    upper = written.upper()
    for secret in secrets:
        assert secret.encode().upper() not in upper, f"planted {secret!r} survived"
    assert birth.encode() not in written
    back = dcmread(io.BytesIO(written))
    for keyword, value in kept.items():
        assert back[keyword].value == value, keyword
    # the rebuilt CSA image header still says what a converter needs
    assert csa_fields(back)["NumberOfImagesInMosaic"] == ["48"]


def csa_fields(ds: Dataset) -> dict[str, list[str]]:
    """The rebuilt CSA image header's fields, decoded."""
    tag = ds.private_block(0x0029, "SIEMENS CSA HEADER").get_tag(0x10)
    return {t.name: list(t.values) for t in decode_csa2(ds[tag].value)}
