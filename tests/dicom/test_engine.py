"""Each action and option, on a small dataset with PHI at every depth."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable

from pydicom.dataset import Dataset
from pydicom.uid import MRImageStorage

from pipeline.dicom.deidentify import deidentify_dataset
from pipeline.dicom.profile import Profile
from pipeline.identity.uids import UidMapper
from pipeline.keys import SecretKey
from pipeline.reasons import Reason
from tests import keyed

from .conftest import KEY, OTHER_SOP, SOP, STUDY, tiny_mr


def run(ds: Dataset, key: SecretKey, profile: Profile) -> Dataset:
    deidentify_dataset(ds, key, profile, UidMapper(key))
    return ds


def test_research_profile_end_to_end(mr: Dataset, key: SecretKey, research: Profile) -> None:
    out = run(mr, key, research)
    # subject pseudonym replaces name and ID
    assert str(out.PatientName) == out.PatientID
    assert out.PatientID.startswith("SUBJ-")
    # removed / emptied / dummied per Table E.1-1
    assert not out.get("PatientBirthDate")
    assert not out.AccessionNumber
    assert out.InstitutionName == "ANONYMIZED"  # X/Z/D resolved to D
    assert out.StationName == "ANONYMIZED"
    assert out.DeviceSerialNumber == "ANONYMIZED"
    assert not out.ReferringPhysicianName
    # patient characteristics kept
    assert (out.PatientSex, out.PatientAge, out.PatientWeight) == ("M", "066Y", 81.5)
    # descriptors cleaned, clinical words kept
    assert out.StudyDescription == "MRI KNEE LEFT"
    assert out.ProtocolName == "knee"
    assert out.SeriesDescription == "t2_tse_sag"
    # clinical and geometry untouched
    assert out.RepetitionTime == 3000.0 and out.EchoTime == 90.0
    assert list(out.ImagePositionPatient) == [-100.0, -100.0, 12.5]
    assert out.PixelData == b"\x01\x00\x02\x00\x03\x00\x04\x00"
    # private elements removed, creators with them, except the safe private ones
    # (Retain Safe Private): the Siemens diffusion values stay, and were also
    # carried to the standard attributes first
    private = {int(t) for t in out.keys() if t.group & 1}
    assert private == {0x00190010, 0x0019100C, 0x0019100E}
    assert out[0x00190010].value == "SIEMENS MR HEADER"
    assert out.DiffusionBValue == 1000.0
    assert list(out.DiffusionGradientOrientation) == [0.0, 0.0, 1.0]
    # overlays removed a whole group at a time
    assert not any(t.group == 0x6000 for t in out.keys())
    # what was done is recorded, and nothing that was not
    assert out.PatientIdentityRemoved == "YES"
    codes = {item.CodeValue for item in out.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113107", "113108", "113105", "113111"}
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"


def test_dates_shift_by_one_whole_day_offset_times_stay(
    mr: Dataset, key: SecretKey, research: Profile
) -> None:
    out = run(mr, key, research)
    import datetime as dt

    shift = dt.datetime.strptime(out.StudyDate, "%Y%m%d") - dt.datetime(2024, 3, 11)
    assert shift.days < 0 and shift.seconds == 0
    assert out.StudyTime == "143012.123"
    assert out.AcquisitionDateTime == (
        (dt.datetime(2024, 3, 11) + shift).strftime("%Y%m%d") + "143512.500000+0100"
    )
    nested = out.ReferencedImageSequence[0].ReferencedImageSequence[0]
    assert nested.ContentDate == (dt.datetime(2024, 3, 10) + shift).strftime("%Y%m%d")


def test_uids_remapped_consistently_everywhere_well_known_kept(
    mr: Dataset, key: SecretKey, research: Profile
) -> None:
    out = run(mr, key, research)
    new_sop = key.uid(SOP)
    assert out.SOPInstanceUID == new_sop
    assert out.file_meta.MediaStorageSOPInstanceUID == new_sop
    assert out.StudyInstanceUID == key.uid(STUDY)
    ref = out.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == key.uid(OTHER_SOP)
    assert ref.ReferencedImageSequence[0].ReferencedSOPInstanceUID == new_sop  # resolves
    assert out.SOPClassUID == MRImageStorage
    assert ref.ReferencedSOPClassUID == MRImageStorage
    assert out.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert "SourceApplicationEntityTitle" not in out.file_meta
    assert out.file_meta.ImplementationClassUID.startswith("2.25.")


def test_names_inside_sequences_at_any_depth(
    mr: Dataset, key: SecretKey, research: Profile
) -> None:
    out = run(mr, key, research)
    nested = out.ReferencedImageSequence[0].ReferencedImageSequence[0]
    assert str(nested.PatientName) == str(out.PatientName)  # same subject pseudonym
    assert not out.RequestAttributesSequence[0].AccessionNumber
    assert "RequestedProcedureID" not in out.RequestAttributesSequence[0]


def test_one_person_written_two_ways_gets_one_pseudonym(key: SecretKey, research: Profile) -> None:
    a, b = tiny_mr(), tiny_mr()
    b.PatientName = "MÜLLER^JOSÉ"
    del a.PatientID, b.PatientID  # the name is then what identifies the subject
    assert run(a, key, research).PatientName == run(b, key, research).PatientName


# tiny_mr's subject as keyed (pipeline.identity.subjects.subject_key: ID, no issuer),
# and research.yaml's date_shift_days.
SUBJECT = "id::MRN48213977"
SPAN = (-3652, -366)


def expected_date(material: bytes, date: str) -> str:
    """``date`` shifted by tiny_mr's subject's offset, from hmac alone (tests/keyed.py)."""
    return keyed.shifted(date, keyed.day_offset(material, SUBJECT, *SPAN))


def test_different_keys_give_unrelated_outputs(research: Profile) -> None:
    assert research.date_shift_days == SPAN
    a = run(tiny_mr(), SecretKey(b"\1" * 32), research)
    b = run(tiny_mr(), SecretKey(b"\2" * 32), research)
    assert a.PatientID != b.PatientID and a.SOPInstanceUID != b.SOPInstanceUID
    assert a.PatientID == keyed.pseudonym(b"\1" * 32, "subject", SUBJECT, prefix="SUBJ-")
    assert b.PatientID == keyed.pseudonym(b"\2" * 32, "subject", SUBJECT, prefix="SUBJ-")
    # Each key shifts by its own offset (and these two keys' offsets differ).
    assert a.StudyDate == expected_date(b"\1" * 32, "20240311")
    assert b.StudyDate == expected_date(b"\2" * 32, "20240311")
    assert a.StudyDate != b.StudyDate


def test_each_action_by_site_rule(key: SecretKey, site_profile: Callable[[str], Profile]) -> None:
    profile = site_profile(
        "  - {keyword: StationName, action: keep}\n"
        "  - {keyword: SeriesDescription, action: remove}\n"
        "  - {keyword: Manufacturer, action: empty}\n"
        "  - {keyword: ProtocolName, action: dummy}\n"
        "  - {keyword: FrameOfReferenceUID, action: uid}\n"
        "  - {keyword: ReferringPhysicianName, action: pseudonym}\n"
        "  - {keyword: AccessionNumber, action: pseudonym}\n"
        "  - {keyword: StudyDescription, action: clean}\n"
        "  - {keyword: StudyDate, action: shift}\n"
    )
    out = run(tiny_mr(), key, profile)
    assert out.StationName == "MRC25245"
    assert "SeriesDescription" not in out
    assert not out.Manufacturer
    assert out.ProtocolName == "ANONYMIZED"
    assert out.FrameOfReferenceUID == key.uid(STUDY + ".9")
    assert str(out.ReferringPhysicianName).startswith("P-")
    assert out.AccessionNumber.startswith("ID-") and len(out.AccessionNumber) <= 16
    assert out.StudyDescription == "MRI KNEE LEFT"
    assert out.StudyDate == expected_date(KEY.material, "20240311")


def test_private_selector_keeps_one_element_and_its_creator(
    key: SecretKey, site_profile: Callable[[str], Profile]
) -> None:
    profile = site_profile("  - {private: '(0009,\"ACME 1.1\",01)', action: keep}\n")
    out = run(tiny_mr(), key, profile)
    block = out.private_block(0x0009, "ACME 1.1")
    # A kept private date is shifted like the rest: by the subject's own offset.
    assert block[0x01].value == expected_date(KEY.material, "20240311") == out.StudyDate
    assert 0x00091002 not in out


def test_safe_harbor_year_only_ages_and_times(key: SecretKey) -> None:
    from pipeline.dicom.profile import load_profile

    profile = load_profile("safe-harbor")
    ds = tiny_mr()
    ds.PatientBirthDate = "19300101"
    ds.PatientAge = "094Y"
    # Geographic units smaller than a state, at the top level and in a sequence.
    ds.InstitutionAddress = "Kestrel Lane 4, 53127 Bonn"
    ds.PatientAddress = "Heronweg 17, 53111 Bonn"
    ds.RegionOfResidence = "Venusberg"
    ds.RequestAttributesSequence[0].InstitutionAddress = "Kestrel Lane 4, 53127 Bonn"
    out = run(ds, key, profile)
    assert out.StudyDate == "20240101"
    assert not out.StudyTime
    assert out.AcquisitionDateTime == "2024"
    assert out.PatientAge == "090Y"
    assert not out.get("PatientBirthDate")
    for keyword in ("InstitutionAddress", "PatientAddress", "RegionOfResidence"):
        assert keyword not in out
        assert keyword not in out.RequestAttributesSequence[0]
    buffer = io.BytesIO()
    out.save_as(buffer, enforce_file_format=True)
    for value in (b"Kestrel", b"Heronweg", b"53127", b"53111", b"Bonn", b"Venusberg"):
        assert value not in buffer.getvalue()


def test_clean_graphics_code_never_claimed_without_cleaning(
    key: SecretKey, site_profile: Callable[[str], Profile], tmp_path: object
) -> None:
    from pipeline.rulefiles import rules_root

    profile = site_profile("  - {keyword: StationName, action: keep}\n")
    assert "113103" not in {c.value for c in profile.codes}
    path = rules_root() / "dicom" / "options" / "clean_graphics.yaml"
    from pipeline.dicom.profile import load_profile

    graphics = load_profile(_with_option(path))
    out = run(tiny_mr(), key, graphics)
    assert "113103" not in {i.CodeValue for i in out.DeidentificationMethodCodeSequence}
    assert not any(t.group == 0x6000 for t in out.keys())


def _with_option(option: object) -> str:
    import tempfile
    from pathlib import Path

    from pipeline.rulefiles import rules_root

    folder = Path(tempfile.mkdtemp())
    path = folder / "with-graphics.yaml"
    path.write_text(f"include:\n  - {rules_root() / 'dicom' / 'research.yaml'}\n  - {option}\n")
    return str(path)


def test_retain_safe_private_keeps_the_safe_list(key: SecretKey, tmp_path: object) -> None:
    from pipeline.dicom.profile import load_profile
    from pipeline.rulefiles import rules_root

    path = rules_root() / "dicom" / "options" / "retain_safe_private.yaml"
    profile = load_profile(_with_option(path))
    out = run(tiny_mr(), key, profile)
    assert out.private_block(0x0019, "SIEMENS MR HEADER")[0x0C].value == "1000"
    assert not any(t.group == 0x0009 for t in out.keys())  # not on the list: gone, creator too
    assert "113111" in {i.CodeValue for i in out.DeidentificationMethodCodeSequence}


def test_one_name_in_two_character_sets_gets_one_pseudonym(
    key: SecretKey, research: Profile
) -> None:
    """Latin-1 and UTF-8 files naming the same person link to one subject."""
    import io

    from pipeline.read.dicom import read_dicom

    outputs = []
    for charset, name in (("ISO_IR 100", "Müller^José^"), ("ISO_IR 192", "MÜLLER^JOSÉ")):
        ds = tiny_mr()
        del ds.PatientID
        ds.SpecificCharacterSet = charset
        ds.PatientName = name
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        encoded = buffer.getvalue()
        assert ("Müller".encode("latin-1") in encoded) == (charset == "ISO_IR 100")
        outputs.append(run(read_dicom(encoded, "test"), key, research).PatientName)
    assert outputs[0] == outputs[1]


def _doubts(ds: Dataset, key: SecretKey, profile: Profile) -> set[Reason]:
    ctx, _, _, _ = deidentify_dataset(ds, key, profile, UidMapper(key))
    return ctx.doubts


def test_kept_private_data_of_an_unknown_creator_is_a_doubt(
    key: SecretKey, research: Profile, site_profile: Callable[[str], Profile]
) -> None:
    """A profile that keeps private data it has no rule for sends the file to a person."""
    assert _doubts(tiny_mr(), key, research) == set()  # research removes the ACME block
    keeps_all = site_profile('  - {private: "all", action: keep, name: "site keeps private"}\n')
    assert "ACME 1.1" not in keeps_all.known_creators
    assert _doubts(tiny_mr(), key, keeps_all) == {Reason.UNKNOWN_PRIVATE_CREATOR_KEPT}
    known_only = tiny_mr()
    del known_only[0x00090010], known_only[0x00091001], known_only[0x00091002]
    assert "SIEMENS MR HEADER" in keeps_all.known_creators
    assert _doubts(known_only, key, keeps_all) == set()  # kept, but some rule knows its creator


def test_free_text_naming_the_patient_is_a_doubt_only_without_a_vocabulary(
    key: SecretKey, research: Profile
) -> None:
    """Cleaning by what it recognises alone leaves the rest of a text that named the patient."""
    no_vocabulary = dataclasses.replace(research, vocabulary=None, public_cache={})
    assert _doubts(tiny_mr(), key, no_vocabulary) == {Reason.FREE_TEXT_NAMED_SUBJECT}
    assert _doubts(tiny_mr(), key, research) == set()  # every unknown word goes too
    unnamed = tiny_mr()
    unnamed.StudyDescription, unnamed.ProtocolName = "MRI KNEE LEFT", "knee"
    del unnamed[0x60004000]
    assert _doubts(unnamed, key, no_vocabulary) == set()
