"""What identifies a person: the values a run's inputs hold, kept in memory only.

An :class:`Identifiers` is the leak check's list of what to look for.  It is
PHI, so it never prints a value: its ``repr`` gives counts per kind, and the
values sit inside a :class:`~pipeline.phi.Phi`.  It is built by
:func:`pipeline.verify.inputs.collect_identifiers` and consumed by
:func:`pipeline.verify.check.check_outputs`, which compiles it once into a
:class:`~pipeline.verify.matcher.Matcher` (:meth:`Matcher.of`).
"""

from __future__ import annotations

import dataclasses
import enum
from collections import Counter
from dataclasses import dataclass

from pipeline.phi import Phi

__all__ = ["Identifier", "IdentifierKind", "Identifiers"]


class IdentifierKind(enum.Enum):
    """What kind of value leaked; a hit names the kind, never the value."""

    PATIENT_NAME = "patient-name"  # the patient's whole name (family and given together)
    NAME_PART = "name-part"  # one part of the patient's name (a surname, a given name)
    PATIENT_ID = "patient-id"
    OTHER_ID = "other-id"  # other patient IDs, study, procedure and measurement IDs
    ACCESSION_NUMBER = "accession-number"
    BIRTH_DATE = "birth-date"
    ORIGINAL_UID = "original-uid"  # a UID (or Siemens LOID) of an input, whole or as a prefix
    ADDRESS = "address"
    INSTITUTION = "institution"
    STATION = "station"  # station name, AE title
    DEVICE_SERIAL = "device-serial"  # device serial number, device and detector IDs
    PERSON_NAME = "person-name"  # someone else's whole name: physicians, operators, relatives
    PERSON_NAME_PART = "person-name-part"
    PHONE = "phone"
    # Not a value: the output could not be read, so nothing in it was checked.
    UNREADABLE_OUTPUT = "unreadable-output"

    @property
    def is_name_part(self) -> bool:
        return self in (IdentifierKind.NAME_PART, IdentifierKind.PERSON_NAME_PART)


#: The whole name that makes a part's hit redundant at the same place.
WHOLE_NAME = {
    IdentifierKind.NAME_PART: IdentifierKind.PATIENT_NAME,
    IdentifierKind.PERSON_NAME_PART: IdentifierKind.PERSON_NAME,
}


@dataclass(frozen=True, slots=True)
class Identifier:
    """One identifying value: its kind, the field it came from, the value (PHI).

    ``field`` is a :func:`~pipeline.verify.normalise.field_key` (``patientid``):
    a value too short to identify anyone is only a hit as the whole value of
    the same field.
    """

    kind: IdentifierKind
    field: str
    value: str

    def __repr__(self) -> str:
        return f"Identifier({self.kind.name}, field={self.field!r})"


@dataclass(frozen=True)
class Identifiers:
    """The identifying values of a run's inputs.

    Attributes
    ----------
    values : Phi of frozenset of Identifier
        What to look for (PHI: :meth:`~pipeline.phi.Phi.reveal` only to match).
    inputs : int
        How many inputs were read.
    unreadable : tuple of str
        SHA-256 of each input that could not be read: it added nothing (the
        runner quarantines such inputs anyway).
    """

    values: Phi[frozenset[Identifier]] = dataclasses.field(default_factory=lambda: Phi(frozenset()))
    inputs: int = 0
    unreadable: tuple[str, ...] = ()

    def __repr__(self) -> str:
        counts = ", ".join(
            f"{kind.name}={n}" for kind, n in sorted(self.counts().items(), key=_name)
        )
        return (
            f"Identifiers({len(self)} values from {self.inputs} input(s), "
            f"{len(self.unreadable)} unreadable{'; ' + counts if counts else ''})"
        )

    __str__ = __repr__

    def __len__(self) -> int:
        return len(self.values.reveal())

    def counts(self) -> dict[IdentifierKind, int]:
        """How many values of each kind (no PHI)."""
        return dict(Counter(v.kind for v in self.values.reveal()))

    def merge(self, *others: Identifiers) -> Identifiers:
        """This run's identifiers and those of ``others``: one list for the whole run."""
        values = set(self.values.reveal())
        unreadable = list(self.unreadable)
        inputs = self.inputs
        for other in others:
            values |= other.values.reveal()
            unreadable += other.unreadable
            inputs += other.inputs
        return Identifiers(Phi(frozenset(values)), inputs, tuple(dict.fromkeys(unreadable)))


def _name(item: tuple[IdentifierKind, int]) -> str:
    return item[0].name
