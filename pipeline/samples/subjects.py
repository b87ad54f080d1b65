"""Synthetic patients and the identifying values planted in them.

A leak check is only as good as its list of what to look for, so every
identifier a sample carries comes from one :class:`PlantedPHI`.  Names are
Latin-1 with accents and in the spellings real systems produce (mixed case,
trailing ``^``), surnames stay distinct while they last so that a leaked
surname points at one subject, and everything follows from the seed so a
failing test can be replayed.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

__all__ = ["PlantedPHI", "Subject", "make_subjects", "name_variant"]


@dataclass(frozen=True)
class PlantedPHI:
    """The identifying values planted in one synthetic subject, so tests can assert none survive.

    Person names are DICOM PN strings and some are deliberately untidy
    (accents, lower case, trailing ``^``) to exercise name normalisation.
    All values are encodable in ISO 8859-1 (``ISO_IR 100``).
    """

    patient_name: str
    patient_id: str
    birth_date: str
    accession_number: str
    institution_name: str
    institution_address: str
    referring_physician: str
    operator_name: str
    station_name: str
    device_serial_number: str
    other_patient_ids: str
    # Not in the original brief's field list, so it comes last with a default.
    patient_address: str = ""

    def values(self) -> list[str]:
        """Every planted string, plus the name components of 3+ characters.

        Returns
        -------
        list of str
            Unique values in a stable order; a leak check searches output for
            each of them (case-insensitively, since :func:`name_variant`
            re-cases names in one series).
        """
        found = [
            self.patient_name,
            self.patient_id,
            self.birth_date,
            self.accession_number,
            self.institution_name,
            self.institution_address,
            self.referring_physician,
            self.operator_name,
            self.station_name,
            self.device_serial_number,
            self.other_patient_ids,
            self.patient_address,
        ]
        for person in (self.patient_name, self.referring_physician, self.operator_name):
            found += [part for part in person.split("^") if len(part) >= 3]
        return list(dict.fromkeys(value for value in found if value))


@dataclass(frozen=True)
class Subject:
    """One synthetic patient: planted PHI plus the characteristics a scanner records."""

    phi: PlantedPHI
    sex: str
    age: str
    size_m: float
    weight_kg: float


# (family name, given name, sex): all Latin-1, most with accents.
_FAMILY = (
    "MÜLLER", "SCHRÖDER", "GARCÍA", "NÚÑEZ", "LEFÈVRE", "DUBOIS", "SØRENSEN",
    "ÅBERG", "JANSSEN", "O'BRIEN", "HÄKKINEN", "CÔTÉ", "BRANDÃO", "FERREIRA",
    "KOWALSKI", "BJÖRKMAN", "ROSSI", "NAKAMURA", "MCALLISTER", "DÍAZ",
)  # fmt: skip
_GIVEN = (
    ("JOSÉ", "M"), ("AMÉLIE", "F"), ("JÜRGEN", "M"), ("SØREN", "M"), ("INÊS", "F"),
    ("FRANÇOIS", "M"), ("MARÍA", "F"), ("BJÖRN", "M"), ("CHLOÉ", "F"), ("ZOË", "F"),
    ("HÉLÈNE", "F"), ("RAFAËL", "M"), ("SIOBHÁN", "F"), ("ÅSA", "F"), ("LEÓN", "M"),
    ("MATTHIAS", "M"), ("ANNA", "F"), ("LUCAS", "M"),
)  # fmt: skip
_STAFF_FAMILY = (
    "HOFFMANN", "WAGNER", "LAMBERT", "NOVÁK", "EKSTRÖM", "MORENO", "FISCHER",
    "BECKER", "GIRAUD", "LINDQVIST", "CASTILLO", "KELLER",
)  # fmt: skip
_STAFF_GIVEN = (
    "KLAUS", "HELGA", "SVEN", "ODILE", "PETRA", "TOMÁS", "INGRID", "ANDRÉ", "GRETA", "PABLO",
)  # fmt: skip
_INSTITUTIONS = (
    ("Klinikum Am Rosenhügel", "Rosenhügelstraße 42, 81375 München"),
    ("Hôpital Sainte-Bérénice", "14 rue des Écoles, 69003 Lyon"),
    ("St. Aldhelm's General Hospital", "7 Harbour Road, Bristol BS1 4QA"),
    ("Centro Médico San Ildefonso", "Calle de Alcalá 310, 28027 Madrid"),
    ("Sjukhuset i Västerås Norra", "Östra Ringvägen 3, 721 89 Västerås"),
)
_STREETS = (
    "Lindenallee 7, 80331 München", "12 avenue Foch, 75016 Paris",
    "Gran Vía 48, 28013 Madrid", "Storgatan 19, 111 51 Stockholm",
    "21 Elm Street, Oxford OX1 2JD", "Rua Augusta 101, 1100-048 Lisboa",
)  # fmt: skip


def study_moment(subject: Subject) -> datetime:
    """When the subject's exam starts: fixed per subject so every series of a study agrees."""
    digest = hashlib.sha256(subject.phi.patient_id.encode()).digest()
    day = date(2019, 1, 7) + timedelta(days=int.from_bytes(digest[:4], "big") % 2000)
    minute = 7 * 60 + 30 + int.from_bytes(digest[4:6], "big") % (10 * 60)
    second = digest[6] % 60
    return datetime(day.year, day.month, day.day, minute // 60, minute % 60, second)


def _age(birth: date, on: date) -> str:
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return f"{years:03d}Y"


def _styled(family: str, given: str, initial: str, style: int) -> str:
    """A PN in one of the spellings scanners and RIS systems produce."""
    if style == 0:
        return f"{family}^{given}^{initial}"
    if style == 1:
        return f"{family.capitalize()}^{given.capitalize()}"
    if style == 2:
        return f"{family}^{given}^^"
    return f"{family.lower()}^{given.lower()}"


def make_subjects(n: int, seed: int = 0) -> list[Subject]:
    """Make ``n`` distinct synthetic subjects.

    Parameters
    ----------
    n : int
        Number of subjects.
    seed : int, optional
        The same seed always gives the same subjects.

    Returns
    -------
    list of Subject
        Distinct names, MRNs, accession numbers and scanners; the name
        spelling cycles through upper case with a middle initial, mixed case,
        trailing ``^`` and lower case.
    """
    rng = random.Random(f"mricurate-subjects-{seed}")
    subjects: list[Subject] = []
    families: set[str] = set()
    names: set[tuple[str, str]] = set()
    ids: set[str] = set()
    singles = len(_FAMILY) * len(_GIVEN)
    while len(subjects) < n:
        index = len(subjects)
        family = rng.choice(_FAMILY)
        given, sex = rng.choice(_GIVEN)
        # The last digit's parity picks the exam: even a brain, odd a left knee, alternating.
        mrn = f"MRN{rng.randrange(10**6, 10**7)}{2 * rng.randrange(5) + index % 2}"
        if mrn in ids:
            continue
        if len(families) < len(_FAMILY):
            # Distinct surnames while they last, so a leaked surname names one subject.
            if family in families:
                continue
        elif len(names) >= singles:
            family = f"{family}-{rng.choice(_FAMILY)}"
            if len(names) >= singles * len(_FAMILY) // 2:
                family = f"{family}{index}"
        if (family, given) in names:
            continue
        families.add(family)
        names.add((family, given))
        ids.add(mrn)
        birth = date(1936, 1, 1) + timedelta(days=rng.randrange(0, 365 * 72))
        institution, address = rng.choice(_INSTITUTIONS)
        serial = f"{rng.randrange(10**4, 10**5)}"
        phi = PlantedPHI(
            patient_name=_styled(family, given, chr(ord("A") + rng.randrange(26)), index % 4),
            patient_id=mrn,
            birth_date=birth.strftime("%Y%m%d"),
            accession_number=f"RAD{rng.randrange(10**9, 10**10)}",
            institution_name=institution,
            institution_address=address,
            referring_physician=f"{rng.choice(_STAFF_FAMILY)}^{rng.choice(_STAFF_GIVEN)}^^DR",
            operator_name=f"{rng.choice(_STAFF_FAMILY)}^{rng.choice(_STAFF_GIVEN)}",
            station_name=f"MRC{serial}",
            device_serial_number=serial,
            other_patient_ids=f"KH{rng.randrange(10**6, 10**7)}",
            patient_address=rng.choice(_STREETS),
        )
        placeholder = Subject(phi, sex, "", 0.0, 0.0)
        height = rng.uniform(1.55, 1.95) if sex == "M" else rng.uniform(1.50, 1.82)
        subjects.append(
            Subject(
                phi=phi,
                sex=sex,
                age=_age(birth, study_moment(placeholder).date()),
                size_m=round(height, 2),
                weight_kg=round(rng.uniform(48.0, 112.0), 1),
            )
        )
    return subjects


def name_variant(name: str) -> str:
    """The same person name as another system writes it: re-cased, trailing ``^`` added.

    ``"MÜLLER^JOSÉ^A"`` becomes ``"Müller^José^A^"``; both normalise to the
    same person, so a pseudonymiser must give them one pseudonym.
    """
    parts = name.rstrip("^").split("^")
    recased = [p.capitalize() if p.isupper() or p.islower() else p.upper() for p in parts]
    return "^".join(recased) + "^"
