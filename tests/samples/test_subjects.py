"""Subjects are what every leak check searches for, so their names and values must be distinct and encodable."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.samples import PlantedPHI, Subject, make_subjects, mr_series, name_variant

from .checks import fold


def test_subjects_are_deterministic_and_distinct() -> None:
    first = make_subjects(12, seed=7)
    assert first == make_subjects(12, seed=7)
    assert first != make_subjects(12, seed=8)
    for field in ("patient_name", "patient_id", "accession_number"):
        assert len({getattr(s.phi, field) for s in first}) == 12
    assert len({s.phi.patient_name.split("^")[0] for s in first}) == 12


def test_names_exercise_normalisation(subjects: list[Subject]) -> None:
    names = [s.phi.patient_name for s in subjects]
    assert any(n.endswith("^") for n in names)
    assert any(n != n.upper() for n in names)
    assert any(not n.isascii() for n in names)
    for name in names:
        name.encode("latin-1")


def test_values_cover_fields_and_name_parts() -> None:
    phi = PlantedPHI(
        patient_name="MÜLLER^JOSÉ^A",
        patient_id="MRN48213977",
        birth_date="19580314",
        accession_number="RAD1",
        institution_name="Klinikum",
        institution_address="Straße 1",
        referring_physician="WAGNER^HELGA^^DR",
        operator_name="BAUER^SVEN",
        station_name="MRC1",
        device_serial_number="1",
        other_patient_ids="KH1",
    )
    values = phi.values()
    assert {"MÜLLER^JOSÉ^A", "MÜLLER", "JOSÉ", "WAGNER", "HELGA", "SVEN", "19580314"} <= set(values)
    assert "A" not in values and "DR" not in values
    assert len(values) == len(set(values))


def test_age_matches_birth_and_study_date(subjects: list[Subject]) -> None:
    for subject in subjects:
        ds = mr_series(subject, n_slices=1, rows=8, cols=8)[0]
        born, seen = ds.PatientBirthDate, ds.StudyDate
        years = int(seen[:4]) - int(born[:4]) - (seen[4:] < born[4:])
        assert ds.PatientAge == subject.age == f"{years:03d}Y"


def test_name_variant_normalises_equal() -> None:
    assert name_variant("MÜLLER^JOSÉ") == "Müller^José^"
    assert name_variant("dubois^amélie") == "Dubois^Amélie^"
    for name in ("MÜLLER^JOSÉ^A", "Dubois^Anna", "JANSSEN^ZOË^^", "côté^siobhán"):
        variant = name_variant(name)
        assert variant != name
        assert fold(variant) == fold(name)


# -- properties -----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 30))
def test_any_seed_gives_encodable_distinct_subjects(seed: int, n: int) -> None:
    subjects = make_subjects(n, seed)
    assert len({s.phi.patient_id for s in subjects}) == n
    for subject in subjects:
        for value in subject.phi.values():
            value.encode("latin-1")
        assert len(subject.phi.accession_number) <= 16
