"""Whose raw data: header ID, DICOM UIDs already seen, the mapping file, or held back."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.errors import RuleError, SubjectUnknown
from pipeline.identity.links import LinkRecord
from pipeline.identity.subjects import subject_key
from pipeline.private_store import PrivateStore
from pipeline.raw.subject_lookup import (
    RawIdentity,
    SubjectLookup,
    SubjectSource,
    is_masked,
    load_subject_mapping,
)
from pipeline.reasons import Reason

SHA = "ab" * 32


def _link(patient: str, study: str, frame: str) -> LinkRecord:
    return LinkRecord(
        patient, "", "DOE^JANE", "SUBJ-PSEUDONYM", -400, study, "2.25.1", "1.2.3", "2.25.2",
        "1.2.4", "2.25.3", frame,
    )  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> PrivateStore:
    store = PrivateStore(tmp_path / "private")
    store.start_run("r1", "now", "deid")
    store.record_links("r1", [("a" * 64, "x.dcm", _link("PID-7", "1.2.840.1", "1.2.840.9"))])
    return store


@pytest.mark.parametrize("value", ["", "xxxxxxxx", "XXXX", "****", "0000000", " x-x "])
def test_masked_fields_are_recognised(value: str) -> None:
    assert is_masked(value)


def test_unmasked_id_is_not_masked() -> None:
    assert not is_masked("MRN0042")


def test_the_header_patient_id_wins(store: PrivateStore) -> None:
    match = SubjectLookup(store).find(RawIdentity(patient_id="MRN0042", study_uid="1.2.840.1"), SHA)
    assert match.source is SubjectSource.HEADER
    assert match.subject == subject_key("MRN0042")


def test_a_masked_id_falls_back_to_the_dicom_study(store: PrivateStore) -> None:
    match = SubjectLookup(store).find(RawIdentity("xxxxxxxx", study_uid="1.2.840.1"), SHA)
    assert (match.source, match.subject) == (SubjectSource.DICOM_STUDY, subject_key("PID-7"))


def test_the_frame_of_reference_decides_when_the_study_is_unknown(store: PrivateStore) -> None:
    identity = RawIdentity("", study_uid="9.9", frame_of_reference_uid="1.2.840.9")
    match = SubjectLookup(store).find(identity, SHA)
    assert (match.source, match.subject) == (SubjectSource.DICOM_FRAME, subject_key("PID-7"))


def test_an_ambiguous_study_is_never_guessed(store: PrivateStore) -> None:
    store.record_links("r1", [("b" * 64, "y.dcm", _link("OTHER", "1.2.840.1", ""))])
    with pytest.raises(SubjectUnknown, match="2 subjects"):
        SubjectLookup(store).find(RawIdentity("", study_uid="1.2.840.1"), SHA)


def test_the_mapping_file_names_a_file_by_hash_or_measurement(
    store: PrivateStore, tmp_path: Path
) -> None:
    csv = tmp_path / "subjects.csv"
    csv.write_text(f"raw,patient_id,issuer\n{SHA.upper()},MRN9,HOSP\n45074_1234,MRN8,\n")
    lookup = SubjectLookup(store, load_subject_mapping(csv))
    by_hash = lookup.find(RawIdentity(), SHA)
    assert (by_hash.source, by_hash.subject) == (SubjectSource.MAPPING, subject_key("MRN9", "HOSP"))
    by_meas = lookup.find(RawIdentity(measurement_id="45074_1234"), "cd" * 32)
    assert by_meas.subject == subject_key("MRN8")


def test_no_evidence_holds_the_file_back(store: PrivateStore) -> None:
    with pytest.raises(SubjectUnknown) as caught:
        SubjectLookup(store).find(RawIdentity("xxxx", study_uid="7.7"), SHA)
    assert caught.value.reason is Reason.SUBJECT_UNKNOWN
    assert "--subjects" in caught.value.detail


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("file,patient\nx,y\n", 1, "'raw' and 'patient_id'"),
        ("raw,patient_id\nabc,\n", 2, "real 'patient_id'"),
        ("raw,patient_id\nabc,xxxx\n", 2, "real 'patient_id'"),
        ("raw,patient_id\nabc,P1\nabc,P2\n", 3, "two different patients"),
    ],
)
def test_mapping_errors_name_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    csv = tmp_path / "subjects.csv"
    csv.write_text(text)
    with pytest.raises(RuleError, match=message) as caught:
        load_subject_mapping(csv)
    assert f"subjects.csv:{line}" in str(caught.value)


def test_an_older_link_table_gains_the_frame_column(tmp_path: Path) -> None:
    import sqlite3

    root = tmp_path / "private"
    root.mkdir(mode=0o700)
    db = sqlite3.connect(root / "links.sqlite")
    db.execute(
        "CREATE TABLE links (sha256 TEXT, run_id TEXT, patient_id TEXT, issuer TEXT, "
        "patient_name TEXT, subject TEXT, day_offset INTEGER, study_uid TEXT, new_study_uid TEXT, "
        "series_uid TEXT, new_series_uid TEXT, sop_uid TEXT, new_sop_uid TEXT, output_path TEXT, "
        "PRIMARY KEY (sha256, run_id))"
    )
    db.commit()
    db.close()
    store = PrivateStore(root)
    store.record_links("r", [("c" * 64, "z.dcm", _link("Z", "5.5", "6.6"))])
    assert store.identities_for(frame_of_reference_uid="6.6") == {("Z", "", "DOE^JANE", "5.5")}


def test_the_header_id_takes_the_issuer_dicom_gave_it(store: PrivateStore) -> None:
    link = replace(_link("MRN-5", "3.3", ""), issuer="HOSP-A")
    store.record_links("r1", [("d" * 64, "w.dcm", link)])
    match = SubjectLookup(store).find(RawIdentity(patient_id="MRN-5"), SHA)
    assert match.subject == subject_key("MRN-5", "HOSP-A")


def test_an_id_under_two_issuers_is_never_guessed(store: PrivateStore) -> None:
    for n, issuer in enumerate(("HOSP-A", "HOSP-B")):
        link = replace(_link("MRN-6", f"4.{n}", ""), issuer=issuer)
        store.record_links("r1", [(str(n) * 64, f"{n}.dcm", link)])
    with pytest.raises(SubjectUnknown, match="2 issuers"):
        SubjectLookup(store).find(RawIdentity(patient_id="MRN-6"), SHA)
