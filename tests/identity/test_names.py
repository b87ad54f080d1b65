from __future__ import annotations

import pytest

from pipeline.identity.names import name_parts, normalise_name


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Müller^José^", "MÜLLER^JOSÉ"),
        ("MULLER^JOSE^^^", "müller^josé"),
        ("Doe^John  ", "DOE^JOHN"),
        ("O'Brien^Seán^^Dr", "O'BRIEN^SEAN^^DR"),
        ("Yamada^Tarou=山田^太郎=やまだ^たろう", "YAMADA^TAROU"),
    ],
)
def test_one_person_written_two_ways_normalises_equal(a: str, b: str) -> None:
    assert normalise_name(a) == normalise_name(b)


def test_different_people_stay_different() -> None:
    assert normalise_name("Doe^John") != normalise_name("Doe^Jane")
    assert normalise_name("Doe^John") != normalise_name("John^Doe")


def test_name_parts() -> None:
    assert name_parts("Müller-Lüdenscheidt^José^A") == ["MULLER", "LUDENSCHEIDT", "JOSE"]
