"""What matches where: the decisions of :mod:`pipeline.verify.matcher`, one by one."""

from __future__ import annotations

import pytest

from pipeline.phi import Phi
from pipeline.verify.identifiers import Identifier, IdentifierKind, Identifiers
from pipeline.verify.matcher import Matcher, ValueClass
from pipeline.verify.normalise import field_key

K = IdentifierKind
V = ValueClass


def matcher(*values: tuple[IdentifierKind, str, str]) -> Matcher:
    return Matcher.build(
        Identifier(kind, field_key(keyword), value) for kind, keyword, value in values
    )


PATIENT = matcher(
    (K.PATIENT_NAME, "PatientName", "MÜLLER^JOSÉ^A"),
    (K.PATIENT_ID, "PatientID", "MRN0012345678"),
    (K.BIRTH_DATE, "PatientBirthDate", "19620314"),
    (K.PERSON_NAME, "ReferringPhysicianName", "O'BRIEN^SIOBHÁN^^DR"),
)


@pytest.mark.parametrize(
    "text",
    ["MÜLLER^JOSÉ", "Jose Muller", "MULLER, JOSE", "Müller José A", "  mueller   jose ",
     "JOSÉ A. MÜLLER", "muller^jose^a^^"],
)  # fmt: skip
def test_the_whole_name_in_any_spelling(text: str) -> None:
    assert PATIENT.scan(text) == {K.PATIENT_NAME}


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Knie Müller", {K.NAME_PART}),
        ("knee MUELLER left", {K.NAME_PART}),  # Müller is also spelled Mueller
        ("t2_tse_muller_2", {K.NAME_PART}),  # a whole word between separators and digits
        ("for Dr Obrien", {K.PERSON_NAME_PART}),  # O'Brien without its apostrophe
        ("for Dr O Brien", {K.PERSON_NAME_PART}),
        ("Siobhan O'Brien", {K.PERSON_NAME}),
        ("Mullerstrasse 3", set()),  # inside a longer word
        ("T1MULLER", set()),  # letters on both sides of the digit: not a word of its own
        ("a", set()),  # the middle initial alone
    ],
)
def test_a_name_part_is_a_whole_word_of_three_letters_or_more(
    text: str, found: set[IdentifierKind]
) -> None:
    assert PATIENT.scan(text) == found


def test_a_name_written_with_ue_is_not_read_as_an_umlaut() -> None:
    """The decision: ``Mueller`` matches ``Mueller`` only (Samuel is not Samül)."""
    mueller = matcher((K.PATIENT_NAME, "PatientName", "MUELLER^HANS"))
    assert mueller.scan("Mueller") == {K.NAME_PART}
    assert mueller.scan("Müller") == set()


def test_a_short_name_part_is_only_the_whole_value_of_a_person_name() -> None:
    short = matcher((K.PATIENT_NAME, "PatientName", "LI^WU"))
    assert short.scan("LI", V.NAME, "patientname") == {K.NAME_PART}
    assert short.scan("LI", V.NAME, "operatorsname") == {K.NAME_PART}
    assert short.scan("LI", V.TEXT, "seriesdescription") == set()
    assert short.scan("T2 LI 3") == set()
    assert short.scan("Wu Li") == {K.PATIENT_NAME}  # the whole name still matches anywhere


@pytest.mark.parametrize("surname", ["HEAD", "KNEE", "BRAIN"])
def test_a_surname_that_is_an_ordinary_word_only_matches_with_the_rest_of_the_name(
    surname: str,
) -> None:
    ordinary = matcher((K.PATIENT_NAME, "PatientName", f"{surname}^JOHN"))
    assert ordinary.scan(surname, V.TEXT, "bodypartexamined") == set()
    assert ordinary.scan(f"MR {surname.lower()} w/o contrast", V.TEXT, "studydescription") == set()
    assert ordinary.scan(f"{surname.title()} John") == {K.PATIENT_NAME}
    assert ordinary.scan(f"{surname}^JOHN", V.NAME, "patientname") == {K.PATIENT_NAME}
    assert ordinary.scan(surname, V.NAME, "patientname") == {K.NAME_PART}
    assert ordinary.scan("John") == {K.NAME_PART}  # the given name is not ordinary


def test_a_title_is_no_name() -> None:
    assert matcher((K.PERSON_NAME, "OperatorsName", "MR^X")).scan("MR knee") == set()


@pytest.mark.parametrize(
    "text",
    ["MRN0012345678", "mrn 12345678", "MRN-012345678", "12345678", "id:12345678;", "x12345678y"],
)
def test_an_id_as_a_whole_token_with_or_without_leading_zeros(text: str) -> None:
    assert PATIENT.scan(text) == {K.PATIENT_ID}


@pytest.mark.parametrize("text", ["123456789", "1234567", "20161014123456780", "0.12345678"])
def test_an_id_is_never_found_inside_a_longer_number_or_a_decimal(text: str) -> None:
    assert PATIENT.scan(text) == set()


def test_a_short_id_is_only_the_whole_value_of_its_own_field() -> None:
    short = matcher((K.OTHER_ID, "StudyID", "7"), (K.PATIENT_ID, "PatientID", "4A"))
    assert short.scan("7", V.TEXT, "studyid") == {K.OTHER_ID}
    assert short.scan("007", V.TEXT, "studyid") == {K.OTHER_ID}
    assert short.scan("7", V.NUMBER, "instancenumber") == set()
    assert short.scan("series 7 of 7") == set()
    assert short.scan("4A", V.TEXT, "patientid") == {K.PATIENT_ID}
    assert short.scan("T4A") == set()


def test_a_number_that_equals_an_id_is_a_measurement_unless_in_the_id_s_field() -> None:
    numeric = matcher((K.PATIENT_ID, "PatientID", "527654"))
    assert numeric.scan("527654", V.NUMBER, "size") == set()
    assert numeric.scan("527654", V.TEXT, "subject") == {K.PATIENT_ID}
    assert numeric.scan("527654", V.NUMBER, "patientid") == {K.PATIENT_ID}


@pytest.mark.parametrize(
    "text",
    ["19620314", "1962-03-14", "14.03.1962", "03/14/1962", "14/03/1962", "14 Mar 1962",
     "14-MAR-1962", "March 14, 1962", "14. März 1962", "born 1962/3/14", "14031962"],
)  # fmt: skip
def test_a_birth_date_in_common_formats(text: str) -> None:
    assert PATIENT.scan(text) == {K.BIRTH_DATE}


@pytest.mark.parametrize("text", ["19620714", "1962-07-02", "14.03.1963", "1962", "03/1962"])
def test_a_shifted_date_with_the_birth_year_is_no_birth_date(text: str) -> None:
    assert PATIENT.scan(text) == set()
    assert PATIENT.scan(text, V.DATE, "studydate") == set()


def test_a_date_element_is_only_compared_with_birth_dates() -> None:
    assert PATIENT.scan("19620314", V.DATE, "acquisitiondate") == {K.BIRTH_DATE}
    assert PATIENT.scan("19620314093000", V.DATE, "acquisitiondatetime") == {K.BIRTH_DATE}
    assert PATIENT.scan("12345678", V.DATE, "studydate") == set()


UIDS = matcher(
    (K.ORIGINAL_UID, "SOPInstanceUID", "1.2.840.113619.2.55.3.1234"),
    (K.DEVICE_SERIAL, "DeviceSerialNumber", "45385"),
)


@pytest.mark.parametrize(
    ("text", "cls", "found"),
    [
        ("1.2.840.113619.2.55.3.1234", V.UID, {K.ORIGINAL_UID}),
        ("1.2.840.113619.2.55.3.1234.7", V.UID, {K.ORIGINAL_UID}),  # derived by appending
        ("1.2.840.113619.2.55.3", V.UID, set()),  # a shorter root is not the UID
        ("1.2.840.113619.2.55.3.12345", V.UID, set()),
        ("ref 1.2.840.113619.2.55.3.1234 here", V.TEXT, {K.ORIGINAL_UID}),
        ("1.3.12.2.1107.5.2.19.45385.1.2", V.UID, {K.DEVICE_SERIAL}),  # Siemens roots hold it
        ("2.25.453851234", V.UID, set()),
        ("serial 45385", V.TEXT, {K.DEVICE_SERIAL}),
        ("20161014453850", V.TEXT, set()),
    ],
)
def test_uids_whole_or_as_a_prefix_and_the_serial_among_their_parts(
    text: str, cls: ValueClass, found: set[IdentifierKind]
) -> None:
    assert UIDS.scan(text, cls) == found


def test_an_opaque_token_spells_no_name_and_holds_no_id() -> None:
    m = matcher((K.PATIENT_NAME, "PatientName", "ASA^ANNA"), (K.PATIENT_ID, "PatientID", "681234"))
    assert m.scan("SUBJ-AXHG9V9ASA3XF681234X") == set()
    assert m.scan("3f5a681234be9c0d1e2f3a4b5c6d7e8f") == set()  # a digest
    assert m.scan("ASA_681234") == {K.NAME_PART, K.PATIENT_ID}


def test_institution_and_address() -> None:
    m = matcher(
        (K.INSTITUTION, "InstitutionName", "Klinikum Am Rosenhügel"),
        (K.INSTITUTION, "InstitutionName", "TOSHIBA"),
        (K.ADDRESS, "InstitutionAddress", "Rosenhügelstraße 42, 81375 München"),
    )
    assert m.scan("KLINIKUM AM ROSENHUEGEL") == {K.INSTITUTION}
    assert m.scan("Klinikum") == set()
    assert m.scan("TOSHIBA_MEC", V.TEXT, "manufacturer") == set()  # a vendor, and ordinary
    assert m.scan("TOSHIBA", V.TEXT, "institutionname") == {K.INSTITUTION}
    assert m.scan("Rosenhuegelstrasse 42") == {K.ADDRESS}
    assert m.scan("81375 Munchen") == {K.ADDRESS}
    assert m.scan("München") == set()


def test_station_phone_and_placeholders() -> None:
    m = matcher(
        (K.STATION, "StationName", "MRC45385"),
        (K.PHONE, "PatientTelephoneNumbers", "+49 89 1234-5678"),
        (K.PATIENT_NAME, "PatientName", "xxxxxxx"),
        (K.PATIENT_ID, "PatientID", "0000000"),
        (K.PATIENT_NAME, "PatientName", "ANONYMOUS"),
    )
    assert m.scan("station mrc-45385") == {K.STATION}
    assert m.scan("call (49) 89 1234 5678") == {K.PHONE}
    assert m.scan("tel:498912345678") == {K.PHONE}
    for placeholder in ("xxxxxxx", "0000000", "anonymous", "ANONYMOUS^"):
        assert m.scan(placeholder, V.NAME, "patientname") == set()


def test_sex_and_age_are_no_identifiers() -> None:
    assert matcher().scan("M", V.TEXT, "patientsex") == set()


def test_identifiers_never_print_a_value() -> None:
    identifiers = Identifiers(Phi(frozenset({Identifier(K.PATIENT_ID, "patientid", "MRN77")})), 1)
    assert "MRN77" not in repr(identifiers) + str(identifiers)
    assert "PATIENT_ID=1" in repr(identifiers)
    assert "MRN77" not in repr(next(iter(identifiers.values.reveal())))
    assert "MRN77" not in repr(Matcher.of(identifiers))
    merged = identifiers.merge(Identifiers(inputs=2, unreadable=("ab",)))
    assert (len(merged), merged.inputs, merged.unreadable) == (1, 3, ("ab",))
