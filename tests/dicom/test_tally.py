"""The engine's edit counts as run facts: one encoding, read back the same, shown added up."""

from __future__ import annotations

from collections import Counter

from pipeline.dicom.tally import (
    Edit,
    attribute_of,
    edit_facts,
    fold_edits,
    for_people,
    parse_default,
    parse_edit,
)

NAME = Edit("basic.yaml:41 Patient's Name", "PatientName", "pseudonym")


def test_edit_facts_round_trip_and_a_terminal_sees_them_per_action() -> None:
    counts = Counter({
        ("basic.yaml:41 Patient's Name", 0x00100010, "pseudonym"): 3,
        ("basic.yaml:22 SOP Instance UID", 0x00080018, "uid"): 3,
        ("private.yaml:9 CSA", 0x00291010, "remove"): 2,
        ("private.yaml:9 CSA", 0x00291110, "remove"): 1,  # the same vendor element, other block
    })  # fmt: skip
    others = [("pixels cleaned", 1), ("elements decided by default: PN empty", 4)]
    facts = [*edit_facts(counts), *others]
    summed: Counter[str] = Counter()
    for name, count in facts:  # as the runner adds up a run's facts
        summed[name] += count
    assert parse_edit(facts[0][0]) == NAME
    assert attribute_of(0x00291010) == attribute_of(0x00291110) == "(0029,xx10)"
    assert fold_edits(facts)[Edit("private.yaml:9 CSA", "(0029,xx10)", "remove")] == 3
    assert parse_default("elements decided by default: PN empty") == "PN empty"
    assert parse_edit("pixels cleaned") is None
    assert for_people(summed) == [
        ("elements decided by default: PN empty", 4),
        ("elements edited: pseudonym", 3),
        ("elements edited: remove", 3),
        ("elements edited: uid", 3),
        ("pixels cleaned", 1),
    ]
