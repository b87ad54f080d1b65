"""One compiled matcher for a whole run: every identifier, looked up per atom.

A run has thousands of inputs and outputs, so the check cannot compare every
value with every identifier.  :meth:`Matcher.build` turns the identifiers
into a few dictionaries keyed by the first atom (or word) of each normal
form (:mod:`pipeline.verify.normalise`); :meth:`Matcher.scan` then reads an
output value's atoms once and looks each up: a set lookup per atom, a tuple
comparison only where a phrase starts.  The cost grows with the size of the
outputs, not with the number of identifiers.

What matches where (the decisions, each tested):

- **Names**: the whole name (family and given, in either order, with or
  without the middle name) anywhere, as consecutive words; a part of three
  letters or more anywhere as a whole word, unless it is an ordinary word
  (:mod:`pipeline.verify.vocabulary`: a surname *Head* is found in ``Head
  John``, never in ``HEAD``).  Shorter and ordinary parts match only as the
  whole value of a person-name field (a DICOM PN, ``patientName``...).
- **IDs, accession numbers, serials, stations**: the whole value as
  consecutive atoms anywhere (``MRN0012345`` = ``mrn 12345``: leading zeros
  are not significant), and the digit runs of six digits or more alone
  (five for a device serial number), but never inside a longer number:
  ``41710`` is not in ``20161014171002``.  Values shorter than that (``7``,
  ``4A``) match only as the whole value of the field they came from.
- **Birth dates** in the forms of :func:`~pipeline.verify.normalise.birth_date_forms`.
- **UIDs** whole, or as the prefix of a longer UID (``<original>.1``); a
  device serial number also among a UID's components (Siemens roots embed it).
- **Institutions, addresses**: the whole value, and each comma-separated
  part of an address that has a word which is not ordinary.

Measurements (``NUMBER``: IS, DS, numeric cells) are compared only as whole
values of the same field, dates (``DATE``: DA, DT) only with birth dates:
a file size that happens to equal an MRN is not a leak, and a 2,000-row
manifest would otherwise turn up such coincidences.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections import defaultdict
from collections.abc import Container, Iterable
from dataclasses import dataclass
from functools import cache

from pipeline.verify.identifiers import WHOLE_NAME, Identifier, IdentifierKind, Identifiers
from pipeline.verify.normalise import (
    Atoms,
    atomize,
    birth_date_forms,
    combinations,
    field_key,
    fold,
    is_placeholder,
    name_words,
    parse_date,
    spellings,
    uid_chain,
)
from pipeline.verify.vocabulary import is_ordinary

__all__ = ["Matcher", "ValueClass"]

K = IdentifierKind

NAME_PART_LETTERS = 3  # a shorter name part only matches as a whole value
ID_MIN_CHARACTERS = 4  # an ID with fewer significant characters only matches as a whole value
ID_MIN_DIGITS = 6  # a digit run of an ID matches alone from this length
SERIAL_MIN_DIGITS = 5  # device serial numbers are shorter than MRNs
PHONE_MIN_DIGITS = 7
CACHE_SIZE = 1 << 18  # distinct values remembered; cleared when full
CACHED_LENGTH = 1024  # longer values are not remembered

_ADDRESS_PARTS = re.compile(r"[,;\n\r^]+")
_HHMMSS = re.compile(r"([01]\d|2[0-3])[0-5]\d[0-5]\d")

Phrase = tuple[str, ...]
_NOTHING: frozenset[IdentifierKind] = frozenset()
# The tokens of a folded text, a superset of its atoms' (leading zeros are separate tokens).
_TOKEN = re.compile(r"[^\W\d_]+|(?:(?!0)\d)\d*|0")


class ValueClass(enum.Enum):
    """What kind of value an output holds, which decides what is looked for in it."""

    TEXT = "text"  # free text, codes, paths, names: everything
    NAME = "name"  # a person-name field: everything, and its whole value against name parts
    NUMBER = "number"  # a measurement (IS, DS, numeric cells): whole values of the same field only
    DATE = "date"  # DA, DT: birth dates only
    UID = "uid"  # UI: original UIDs, whole or as a prefix; serials among its components


_PREFILTERED = frozenset({ValueClass.TEXT})


@dataclass(frozen=True)
class Matcher:
    """Every identifier of a run in its normal forms, keyed for lookup per atom.

    Build with :meth:`build`; nothing here prints a value (the dictionaries
    are PHI, and the ``repr`` shows sizes only).
    """

    single: dict[str, frozenset[IdentifierKind]]
    phrases: dict[str, tuple[tuple[Phrase, IdentifierKind], ...]]
    words: dict[str, frozenset[IdentifierKind]]
    word_phrases: dict[str, tuple[tuple[Phrase, IdentifierKind], ...]]
    birth_single: dict[str, frozenset[IdentifierKind]]
    birth_phrases: dict[str, tuple[tuple[Phrase, IdentifierKind], ...]]
    uids: dict[str, frozenset[IdentifierKind]]
    uid_components: dict[str, frozenset[IdentifierKind]]
    whole: dict[tuple[str, Phrase], frozenset[IdentifierKind]]
    whole_fields: frozenset[str]
    whole_names: dict[Phrase, frozenset[IdentifierKind]]
    # The longest atom of every form: a value none of whose tokens is one cannot
    # match anywhere, which a set test at C speed tells before any atom is read.
    anchors: frozenset[str]
    # Outputs repeat most of their values (every slice of a series says the
    # same), so each distinct (value, class, field) is scanned once.
    cache: dict[tuple[str, str, str], frozenset[IdentifierKind]] = dataclasses.field(
        default_factory=dict, compare=False
    )

    def __repr__(self) -> str:
        return (
            f"Matcher({len(self.single)} atoms, {len(self.phrases)} phrase starts, "
            f"{len(self.words)} words, {len(self.word_phrases)} name starts, {len(self.uids)} UIDs, "
            f"{len(self.anchors)} anchors)"
        )

    @classmethod
    def of(cls, identifiers: Identifiers) -> Matcher:
        """The compiled matcher for a run's :class:`Identifiers` (build it once per check)."""
        return cls.build(identifiers.values.reveal())

    @classmethod
    def build(cls, identifiers: Iterable[Identifier]) -> Matcher:
        builder = _Builder()
        for identifier in identifiers:
            if not is_placeholder(identifier.value):
                builder.add(identifier)
        return builder.freeze()

    # -- scanning --------------------------------------------------------------

    def scan(
        self, text: str, cls: ValueClass = ValueClass.TEXT, field: str = ""
    ) -> frozenset[IdentifierKind]:
        """The kinds of identifier found in one output value (empty: none).

        ``field`` is the value's :func:`~pipeline.verify.normalise.field_key`
        (``patientid``, ``seriesdescription``; ``""`` for free text).
        """
        if not text or (cls is ValueClass.NUMBER and field not in self.whole_fields):
            return _NOTHING
        if len(text) > CACHED_LENGTH:  # a document or a block of bytes: seen once
            return frozenset(self._scan(text, cls, field))
        key = (text, field, cls._value_)  # _value_: Enum.value is a slow descriptor
        cached = self.cache.get(key)
        if cached is None:
            if len(self.cache) >= CACHE_SIZE:
                self.cache.clear()
            cached = self.cache[key] = frozenset(self._scan(text, cls, field))
        return cached

    def _scan(self, text: str, cls: ValueClass, field: str) -> set[IdentifierKind]:
        if cls is ValueClass.UID:
            return self._scan_uid(text, field)
        if cls is ValueClass.NUMBER and field not in self.whole_fields:
            return set()
        folded = fold(text)
        if (
            cls in _PREFILTERED
            and field not in self.whole_fields
            and self.anchors.isdisjoint(_TOKEN.findall(folded))
        ):
            return set()  # no token of it is the longest atom of any form: nothing can match
        parts = atomize(folded)
        if not parts.atoms:
            return set()
        found: set[IdentifierKind] = set()
        if field in self.whole_fields:
            found |= self.whole.get((field, parts.atoms), frozenset())
        if cls is ValueClass.NUMBER:
            return found
        if cls is ValueClass.DATE:
            _atoms(parts, self.birth_single, self.birth_phrases, found)
            if text[:8].isdigit():  # a DT that starts with the birth date
                found |= self.birth_single.get(text[:8].lstrip("0"), frozenset())
            return found
        _atoms(parts, self.single, self.phrases, found)
        _words(parts, self.words, self.word_phrases, found)
        for chain in parts.chains:
            found |= self._uid_hits(chain)
        if cls is ValueClass.NAME:
            words = tuple(w for w in parts.words if w is not None)
            found |= self.whole_names.get(words, frozenset())
        return _without_redundant_parts(found)

    @property
    def number_keywords(self) -> Container[str]:
        """DICOM keywords whose measurements can match (an identifier came from that field)."""
        return _FieldsOf(self.whole_fields)

    def hits(self, text: str) -> bool:
        """``text`` (a file, column or attribute name) holds anything identifying."""
        return bool(self.scan(text))

    def _scan_uid(self, text: str, field: str) -> set[IdentifierKind]:
        found: set[IdentifierKind] = set()
        for value in text.split("\\"):
            chain = uid_chain(value)
            if chain is None:
                found |= self._scan(value, ValueClass.TEXT, field)
                continue
            found |= self._uid_hits(chain)
            components = chain.split(".")
            for component in components:
                found |= self.uid_components.get(component.lstrip("0") or "0", frozenset())
            if field in self.whole_fields:
                stripped = tuple(c.lstrip("0") or "0" for c in components)
                found |= self.whole.get((field, stripped), frozenset())
        return found

    def _uid_hits(self, chain: str) -> frozenset[IdentifierKind]:
        """``chain`` is an original UID, or starts with one (whole components)."""
        uids = self.uids
        if not uids:
            return frozenset()
        hit = uids.get(chain)
        if hit:
            return hit
        end = chain.find(".", chain.find(".") + 1)
        while end != -1:
            hit = uids.get(chain[:end])
            if hit:
                return hit
            end = chain.find(".", end + 1)
        return frozenset()


class _FieldsOf(Container[str]):
    """Keywords whose field key is one of ``fields`` (``InstanceNumber`` → ``instancenumber``)."""

    def __init__(self, fields: frozenset[str]) -> None:
        self.fields = fields

    def __contains__(self, keyword: object) -> bool:
        return isinstance(keyword, str) and _key_of(keyword) in self.fields


@cache
def _key_of(keyword: str) -> str:
    return field_key(keyword)


def _atoms(
    parts: Atoms,
    single: dict[str, frozenset[IdentifierKind]],
    phrases: dict[str, tuple[tuple[Phrase, IdentifierKind], ...]],
    found: set[IdentifierKind],
) -> None:
    atoms, alone = parts.atoms, parts.alone
    for index, atom in enumerate(atoms):
        kinds = single.get(atom)
        if kinds and alone[index]:
            found |= kinds
        starting = phrases.get(atom)
        if starting:
            for phrase, kind in starting:
                if atoms[index : index + len(phrase)] == phrase:
                    found.add(kind)


def _words(
    parts: Atoms,
    single: dict[str, frozenset[IdentifierKind]],
    phrases: dict[str, tuple[tuple[Phrase, IdentifierKind], ...]],
    found: set[IdentifierKind],
) -> None:
    words = parts.words
    for index, word in enumerate(words):
        if word is None:
            continue
        kinds = single.get(word)
        if kinds:
            found |= kinds
        starting = phrases.get(word)
        if starting:
            for phrase, kind in starting:
                if words[index : index + len(phrase)] == phrase:
                    found.add(kind)


def _without_redundant_parts(found: set[IdentifierKind]) -> set[IdentifierKind]:
    """A part's hit adds nothing where the whole name was found."""
    for part, whole in WHOLE_NAME.items():
        if part in found and whole in found:
            found.discard(part)
    return found


# -- building ------------------------------------------------------------------


class _Builder:
    """Collects the normal forms of each identifier into the matcher's tables."""

    def __init__(self) -> None:
        self.single: defaultdict[str, set[IdentifierKind]] = defaultdict(set)
        self.phrases: defaultdict[str, set[tuple[Phrase, IdentifierKind]]] = defaultdict(set)
        self.words: defaultdict[str, set[IdentifierKind]] = defaultdict(set)
        self.word_phrases: defaultdict[str, set[tuple[Phrase, IdentifierKind]]] = defaultdict(set)
        self.birth_single: defaultdict[str, set[IdentifierKind]] = defaultdict(set)
        self.birth_phrases: defaultdict[str, set[tuple[Phrase, IdentifierKind]]] = defaultdict(set)
        self.uids: defaultdict[str, set[IdentifierKind]] = defaultdict(set)
        self.uid_components: defaultdict[str, set[IdentifierKind]] = defaultdict(set)
        self.whole: defaultdict[tuple[str, Phrase], set[IdentifierKind]] = defaultdict(set)
        self.whole_names: defaultdict[Phrase, set[IdentifierKind]] = defaultdict(set)

    def freeze(self) -> Matcher:
        def sets(table: dict[str, set[IdentifierKind]]) -> dict[str, frozenset[IdentifierKind]]:
            return {key: frozenset(kinds) for key, kinds in table.items()}

        def starts(
            table: dict[str, set[tuple[Phrase, IdentifierKind]]],
        ) -> dict[str, tuple[tuple[Phrase, IdentifierKind], ...]]:
            return {key: tuple(sorted(entries, key=_entry_order)) for key, entries in table.items()}

        # A form matches only where all its atoms are: its longest one is its anchor.
        anchors = set(self.single) | set(self.words) | set(self.birth_single)
        anchors |= set(self.uid_components)
        for table in (self.phrases, self.word_phrases, self.birth_phrases):
            anchors |= {max(phrase, key=len) for entries in table.values() for phrase, _ in entries}
        anchors |= {max(uid.split("."), key=len) for uid in self.uids}
        return Matcher(
            single=sets(self.single),
            phrases=starts(self.phrases),
            words=sets(self.words),
            word_phrases=starts(self.word_phrases),
            birth_single=sets(self.birth_single),
            birth_phrases=starts(self.birth_phrases),
            uids=sets(self.uids),
            uid_components=sets(self.uid_components),
            whole={key: frozenset(kinds) for key, kinds in self.whole.items()},
            whole_fields=frozenset(field for field, _ in self.whole),
            whole_names={key: frozenset(kinds) for key, kinds in self.whole_names.items()},
            anchors=frozenset(anchors),
        )

    def add(self, identifier: Identifier) -> None:
        kind, field, value = identifier.kind, identifier.field, identifier.value
        for spelling in spellings(value):
            atoms = atomize(spelling).atoms
            if atoms:
                self.whole[(field, atoms)].add(kind)
        if kind is K.PATIENT_NAME:
            self.add_name(value, K.PATIENT_NAME, K.NAME_PART)
        elif kind is K.PERSON_NAME:
            self.add_name(value, K.PERSON_NAME, K.PERSON_NAME_PART)
        elif kind is K.BIRTH_DATE:
            self.add_birth_date(value)
        elif kind is K.ORIGINAL_UID and uid_chain(value) is not None:
            self.uids[str(uid_chain(value))].add(kind)
        elif kind in (K.INSTITUTION, K.ADDRESS):
            self.add_text(kind, value)
        elif kind is K.PHONE:
            self.add_phone(value)
        elif kind is K.DEVICE_SERIAL:
            self.add_id(kind, value, min_digits=SERIAL_MIN_DIGITS)
            for spelling in spellings(value):
                for atom in atomize(spelling).atoms:
                    if atom.isdigit() and len(atom) >= SERIAL_MIN_DIGITS:
                        self.uid_components[atom].add(kind)
        elif kind in (K.NAME_PART, K.PERSON_NAME_PART):
            for words in name_words(value):
                for word in words:
                    self.add_name_part(word, kind, kind)
        else:  # IDs, accession numbers, stations, UIDs that are not dotted (Siemens LOID numbers)
            self.add_id(kind, value, min_digits=ID_MIN_DIGITS)

    # -- per kind ------------------------------------------------------------------

    def add_phrase(self, atoms: Phrase, kind: IdentifierKind) -> None:
        if len(atoms) == 1:
            self.single[atoms[0]].add(kind)
        elif atoms:
            self.phrases[atoms[0]].add((atoms, kind))

    def add_name(self, value: str, whole: IdentifierKind, part: IdentifierKind) -> None:
        """A person name: DICOM PN (``family^given^middle^prefix^suffix``), ``Family, Given`` or free."""
        for group in value.split("="):  # alphabetic, ideographic and phonetic representations
            if not group.strip("^ "):
                continue
            if "^" in group:
                components = [*group.split("^"), "", ""]
                family, given, middle = components[0], components[1], components[2]
            elif "," in group:
                family, _, given = group.partition(",")
                middle = ""
            else:
                family, given, middle = "", "", ""
            components_words: list[list[str]]
            if family or given:
                f, g, m = name_words(family), name_words(given), name_words(middle)
                sequences = [*combinations(f, g), *combinations(g, f)]
                if m:
                    sequences += [*combinations(f, g, m), *combinations(g, m, f)]
                if not g:
                    sequences += list(combinations(f))
                if not f:
                    sequences += list(combinations(g))
                components_words = [*f, *g, *m]
            else:
                components_words = name_words(group)
                sequences = [tuple(words) for words in components_words]
                sequences += [tuple(reversed(words)) for words in components_words]
            distinct = {word for sequence in sequences for word in sequence}
            for sequence in set(sequences):
                if not sequence:
                    continue
                self.whole_names[sequence].add(whole)
                if len(sequence) == 1:
                    # A name of one word: that word is the whole name.
                    self.add_name_part(sequence[0], whole, whole)
                elif sum(map(len, sequence)) >= 4 and not all(map(is_ordinary, sequence)):
                    self.word_phrases[sequence[0]].add((sequence, whole))
            for words in components_words:
                for word in words:
                    self.add_name_part(word, part, whole if len(distinct) == 1 else part)
                if len(words) > 1:  # Müller-Rossi is also written MüllerRossi
                    self.add_name_part("".join(words), part, part)

    def add_name_part(self, word: str, kind: IdentifierKind, whole_kind: IdentifierKind) -> None:
        self.whole_names[(word,)].add(whole_kind)
        if len(word) >= NAME_PART_LETTERS and not is_ordinary(word):
            self.words[word].add(kind)

    def add_birth_date(self, value: str) -> None:
        date = parse_date(value)
        if date is None:
            return
        for form in birth_date_forms(*date):
            self.add_phrase(form, K.BIRTH_DATE)
            if len(form) == 1:
                self.birth_single[form[0]].add(K.BIRTH_DATE)
            else:
                self.birth_phrases[form[0]].add((form, K.BIRTH_DATE))

    def add_id(self, kind: IdentifierKind, value: str, *, min_digits: int) -> None:
        for spelling in spellings(value):
            atoms = atomize(spelling).atoms
            if not atoms:
                continue
            size = sum(map(len, atoms))
            numeric = all(a.isdigit() for a in atoms)
            letters = [a for a in atoms if a.isalpha()]
            if numeric:
                if len(atoms) == 1:
                    if size >= min_digits:
                        self.add_phrase(atoms, kind)
                    continue
                if size >= min_digits:
                    self.add_phrase(atoms, kind)
            elif len(letters) == len(atoms):
                if size >= ID_MIN_CHARACTERS and not all(map(_ordinary, atoms)):
                    self.add_phrase(atoms, kind)
                continue
            elif size >= ID_MIN_CHARACTERS:
                self.add_phrase(atoms, kind)
            # The digit runs alone: MRN00123456 is also written 123456, but a
            # date or a time inside a composite ID is not the ID.
            for atom in atoms:
                if atom.isdigit() and len(atom) >= min_digits and not _date_or_time(atom):
                    self.single[atom].add(kind)

    def add_text(self, kind: IdentifierKind, value: str) -> None:
        pieces = [value]
        if kind is K.ADDRESS:
            pieces += [p for p in _ADDRESS_PARTS.split(value) if p.strip()]
        for piece in pieces:
            for spelling in spellings(piece):
                atoms = atomize(spelling).atoms
                distinctive = any(a.isalpha() and len(a) >= 3 and not is_ordinary(a) for a in atoms)
                if piece is not value:
                    distinctive = distinctive and len(atoms) >= 2
                elif not distinctive:
                    distinctive = sum(map(len, atoms)) >= ID_MIN_CHARACTERS and any(
                        a.isdigit() for a in atoms
                    )
                if distinctive:
                    self.add_phrase(atoms, kind)

    def add_phone(self, value: str) -> None:
        digits = "".join(ch for ch in value if ch.isdigit()).lstrip("0")
        if len(digits) < PHONE_MIN_DIGITS:
            return
        self.single[digits].add(K.PHONE)
        for spelling in spellings(value):
            self.add_phrase(atomize(spelling).atoms, K.PHONE)


def _ordinary(word: str) -> bool:
    return len(word) < NAME_PART_LETTERS or is_ordinary(word)


def _date_or_time(digits: str) -> bool:
    if len(digits) == 8:
        return parse_date(digits) is not None
    return len(digits) == 6 and _HHMMSS.fullmatch(digits) is not None


def _entry_order(entry: tuple[Phrase, IdentifierKind]) -> tuple[Phrase, str]:
    return entry[0], entry[1].value
