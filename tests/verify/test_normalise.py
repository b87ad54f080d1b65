"""Normal forms: folding, atoms, name words, dates, placeholders."""

from __future__ import annotations

import pytest

from pipeline.verify.normalise import (
    atomize,
    birth_date_forms,
    field_key,
    fold,
    is_placeholder,
    parse_date,
    spellings,
)


@pytest.mark.parametrize(
    ("text", "folded"),
    [("MÜLLER", "muller"), ("Straße", "strasse"), ("Sørensen", "sorensen"),
     ("O'Brien", "obrien"), ("Ærø", "aero"), ("José", "jose"), ("ﾔﾏﾀﾞ", "ヤマタ"), ("ダ", "タ")],
)  # fmt: skip
def test_fold(text: str, folded: str) -> None:
    assert fold(text) == folded


def test_spellings_transliterate_one_way() -> None:
    assert spellings("Müller") == {"muller", "mueller"}
    assert spellings("Mueller") == {"mueller"}
    assert spellings("Åberg") == {"aberg", "aaberg"}
    assert spellings("O'Brien") == {"obrien", "o brien"}


def test_atoms_strip_leading_zeros_keep_decimals_and_split_dotted_chains() -> None:
    parts = atomize(fold("MRN0012345 0.9765625 14.03.1962 1.2.840.10008"))
    assert parts.atoms == ("mrn", "12345", "0.9765625", "14", "3", "1962", "1", "2", "840", "10008")
    assert parts.chains == ("14.03.1962", "1.2.840.10008")


def test_name_words_and_opaque_tokens() -> None:
    parts = atomize(fold("MULLER_2 t1muller KA3NHZ SUBJ-AXHG9V9W3XFY681X jose"))
    assert [w for w in parts.words if w] == ["muller", "subj", "jose"]
    opaque = parts.atoms.index("axhg")
    assert not any(parts.alone[opaque : opaque + 9]) and parts.alone[0]


def test_dates() -> None:
    assert parse_date("19620314") == parse_date("1962-03-14") == (1962, 3, 14)
    assert parse_date("xxxxxxxx") is None and parse_date("19621314") is None
    forms = birth_date_forms(1962, 3, 14)
    assert {("19620314",), ("1962", "3", "14"), ("14", "3", "1962"), ("3", "14", "1962")} <= forms
    assert {("14", "mar", "1962"), ("march", "14", "1962"), ("14", "marz", "1962")} <= forms
    assert not any(form[-1] == "62" for form in forms)  # no two-digit years


@pytest.mark.parametrize("value", ["", "xxxxxxx", "000000000", "----", "ANONYMOUS", "n/a", " ^ "])
def test_placeholders(value: str) -> None:
    assert is_placeholder(value)


@pytest.mark.parametrize("value", ["7", "MRN1", "Li", "山田"])
def test_not_placeholders(value: str) -> None:
    assert not is_placeholder(value)


def test_field_keys_agree_across_formats() -> None:
    assert field_key("PatientID") == field_key("patientID") == field_key("patient_id")
    assert field_key("PatientBirthDate") == field_key("patientBirthdate")
