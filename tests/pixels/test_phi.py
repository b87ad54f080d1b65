"""OCR words are matched to the file's own header PHI, imperfect reads included, and to PHI patterns."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from pipeline.pixels.ocr import Word
from pipeline.pixels.phi import PhiKind, header_terms, match_words


@pytest.fixture
def header() -> Dataset:
    ds = Dataset()
    ds.PatientName = "Müller-Lüdenscheidt^José^A"
    ds.PatientID = "MRN48213977"
    ds.OtherPatientIDs = "KH7712345"
    ds.AccessionNumber = "RAD0042424242"
    ds.PatientBirthDate = "19580314"
    ds.ReferringPhysicianName = "Hoffmann^Klaus^^Dr"
    ds.InstitutionName = "Klinikum Am Rosenhügel"
    return ds


def _line(*texts: str, line: int = 0) -> list[Word]:
    words, x = [], 0
    for text in texts:
        words.append(Word(text, x, 10 * line, 8 * len(text), 9, 50.0, line))
        x += 8 * len(text) + 6
    return words


def _kinds(words: list[Word], header: Dataset) -> dict[PhiKind, list[str]]:
    found: dict[PhiKind, list[str]] = {}
    for match in match_words(words, header_terms(header)):
        found.setdefault(match.kind, []).append(match.text)
    return found


def test_terms_are_folded_and_titles_dropped(header: Dataset) -> None:
    values = {(t.kind, t.value) for t in header_terms(header)}
    assert (PhiKind.PATIENT_NAME_PART, "MULLER") in values
    assert (PhiKind.PATIENT_NAME_PART, "LUDENSCHEIDT") in values
    assert (PhiKind.PATIENT_NAME_PART, "JOSE") in values
    assert (PhiKind.PHYSICIAN_NAME_PART, "HOFFMANN") in values
    assert not any(v == "DR" for _, v in values)
    births = {v for k, v in values if k is PhiKind.BIRTH_DATE}
    assert births >= {"19580314", "14031958", "03141958", "14MAR1958", "14MRZ1958"}


def test_name_parts_match_with_case_punctuation_and_one_ocr_error(header: Dataset) -> None:
    found = _kinds(_line("MULLER-LUDENSCHE1DT,", "jose"), header)
    assert found[PhiKind.PATIENT_NAME_PART] == ["MULLER-LUDENSCHE1DT,", "jose"]


def test_split_and_misread_ids_match(header: Dataset) -> None:
    found = _kinds(_line("ID:", "MRN", "4821", "3977"), header)
    assert found[PhiKind.PATIENT_ID] == ["MRN 4821 3977"]
    found = _kinds(_line("MRN482I3977"), header)  # I for 1: a confusable costs half
    assert PhiKind.PATIENT_ID in found
    found = _kinds(_line("Acc", "RAD0O42424242"), header)
    assert found[PhiKind.ACCESSION_NUMBER] == ["RAD0O42424242"]


@pytest.mark.parametrize(
    "printed", ["19580314", "14.03.1958", "03/14/1958", "1958-03-14", "14-MAR-1958", "14/03/1958"]
)
def test_birth_date_in_common_formats(header: Dataset, printed: str) -> None:
    found = _kinds(_line("DOB", printed), header)
    assert found[PhiKind.BIRTH_DATE] == [printed]


def test_generic_dates_digits_and_phone_numbers(header: Dataset) -> None:
    words = [
        *_line("Exam", "07-FEV-2006", line=0),
        *_line("Study", "2021-11-30", line=1),
        *_line("Ref", "99887766", line=2),
        *_line("Tel", "+49", "89", "1234-567", line=3),
    ]
    found = _kinds(words, header)
    assert found[PhiKind.DATE] == ["07-FEV-2006", "2021-11-30"]
    assert found[PhiKind.DIGITS] == ["99887766"]
    assert found[PhiKind.PHONE] == ["+49 89 1234-567"]


def test_unrelated_text_matches_nothing(header: Dataset) -> None:
    words = [*_line("T2", "TSE", "SAG", line=0), *_line("TR", "3000", "TE", "90", line=1)]
    assert match_words(words, header_terms(header)) == []


def test_a_match_reports_its_words_box(header: Dataset) -> None:
    (match,) = match_words(_line("MRN", "48213977"), header_terms(header))[:1]
    assert match.kind is PhiKind.PATIENT_ID
    assert match.box == (0, 0, 24 + 6 + 64, 9)
