"""What the header rules did to a file, as run facts: one encoding, written here and read here.

The engine counts each element it changes (removes, empties, replaces,
shifts, cleans) by rule, attribute and action, and what each VR default
decided; the step turns the counts into the PHI-free ``(name, count)``
facts the runner adds up into a run's summary, and the audit report reads
them back with :func:`parse_edit` and :func:`parse_default`.  Nothing else
spells these names: change the encoding here and both sides follow.

An edit's fact name is ``edited<TAB>action<TAB>attribute<TAB>rule``: the
action is a rule action's code, the attribute a keyword (``PatientName``) or
a tag with the private block masked (``(0029,xx10)``), the rule as the dry
run labels it (``basic.yaml:41 Patient's Name``).  None of them holds a
value of the file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydicom.datadict import keyword_for_tag

EDIT_PREFIX = "edited\t"
DEFAULT_PREFIX = "elements decided by default: "
KEPT_UNNAMED = "kept: no rule names it"

#: (rule label, tag, action) -> elements: what the engine counts while it walks a file.
EditCounts = Counter[tuple[str, int, str]]

_NAMES: dict[tuple[str, int, str], str] = {}  # fact names already spelled (a few hundred)


@dataclass(frozen=True)
class Edit:
    """What one rule did to one attribute, by action (a fact read back)."""

    rule: str
    attribute: str
    action: str


def attribute_of(tag: int) -> str:
    """The attribute an element is counted under: its keyword, else its tag.

    A private element's block (``xx``) is masked: the same vendor element sits
    in another block in another file.
    """
    group, element = tag >> 16, tag & 0xFFFF
    if group & 1:
        if element < 0x0100:
            return f"({group:04X},{element:04X})"  # a creator or a stray element
        return f"({group:04X},xx{element & 0xFF:02X})"
    return keyword_for_tag(tag) or f"({group:04X},{element:04X})"


def edit_facts(counts: EditCounts) -> list[tuple[str, int]]:
    """The facts of one file's edits (names spelled once per process, then looked up)."""
    facts: list[tuple[str, int]] = []
    for key, count in counts.items():
        name = _NAMES.get(key)
        if name is None:
            rule, tag, action = key
            name = _NAMES[key] = f"{EDIT_PREFIX}{action}\t{attribute_of(tag)}\t{rule}"
            if len(_NAMES) > 65536:  # a corpus of endless private tags: keep memory bounded
                _NAMES.clear()
        facts.append((name, count))
    return facts


def default_facts(counts: Counter[str]) -> list[tuple[str, int]]:
    """The facts of what the VR defaults decided (``"PN empty"``, :data:`KEPT_UNNAMED`)."""
    return [(f"{DEFAULT_PREFIX}{what}", n) for what, n in counts.items()]


def parse_edit(name: str) -> Edit | None:
    """The edit a fact name stands for, or None for any other fact."""
    if not name.startswith(EDIT_PREFIX):
        return None
    parts = name[len(EDIT_PREFIX) :].split("\t", 2)
    if len(parts) != 3:
        return None
    action, attribute, rule = parts
    return Edit(rule, attribute, action)


def parse_default(name: str) -> str | None:
    """What a VR default decided (``"PN empty"``), or None for any other fact."""
    return name[len(DEFAULT_PREFIX) :] if name.startswith(DEFAULT_PREFIX) else None


def fold_edits(facts: Iterable[tuple[str, int]]) -> Counter[Edit]:
    """Every edit of these facts, added up."""
    folded: Counter[Edit] = Counter()
    for name, count in facts:
        edit = parse_edit(name)
        if edit is not None:
            folded[edit] += count
    return folded


def for_people(facts: Mapping[str, int]) -> list[tuple[str, int]]:
    """A run's facts as a terminal shows them: edits added up per action, the rest as they are.

    Per rule and attribute there are hundreds of edit facts; the audit
    report (``mricurate report``) and the dry run (``deid --dry-run``) show
    them one by one.
    """
    shown: Counter[str] = Counter()
    for name, count in facts.items():
        edit = parse_edit(name)
        shown[f"elements edited: {edit.action}" if edit else name] += count
    return sorted(shown.items())
