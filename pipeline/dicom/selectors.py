"""Which elements a rule applies to: a tag, a group mask, or a private element.

Selectors are parsed once at load; matching at run time is a dictionary
look-up for exact tags and private elements and a short scan for masks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.datadict import tag_for_keyword

_TAG = re.compile(r"^\(?\s*([0-9A-Fa-fXx]{4})\s*,\s*([0-9A-Fa-fXx]{4})\s*\)?$")
_PRIVATE = re.compile(
    r'^\(\s*([0-9A-Fa-f]{4})\s*,\s*"([^"]+)"\s*,\s*([0-9A-Fa-f]{2}|[0-9A-Fa-fXx]{2}[0-9A-Fa-f]{2})\s*\)$'
)


@dataclass(frozen=True)
class TagSelector:
    """One public attribute, by tag or keyword."""

    tag: int

    def describe(self) -> str:
        return f"({self.tag >> 16:04X},{self.tag & 0xFFFF:04X})"


@dataclass(frozen=True)
class MaskSelector:
    """A repeating group such as ``(60xx,3000)``: ``x`` digits match anything."""

    value: int
    mask: int  # bits that must equal ``value``
    text: str

    def matches(self, tag: int) -> bool:
        return (tag & self.mask) == self.value

    def describe(self) -> str:
        return self.text


@dataclass(frozen=True)
class PrivateSelector:
    """A private element named by group, creator and element offset in its block.

    ``(0029,"SIEMENS CSA HEADER",10)`` matches (0029,xx10) in whichever block
    the file reserved for that creator.
    """

    group: int
    creator: str  # stripped, upper-case: creators are compared this way
    offset: int

    def describe(self) -> str:
        return f'({self.group:04X},"{self.creator}",{self.offset:02X})'


@dataclass(frozen=True)
class AllPrivate:
    """Every private element: the "(GGGG,EEEE) where GGGG is odd" row."""

    def describe(self) -> str:
        return "(gggg,eeee) where gggg is odd"


@dataclass(frozen=True)
class SafePrivate:
    """The private elements on the safe-private list."""

    def describe(self) -> str:
        return "safe private attributes"


Selector = TagSelector | MaskSelector | PrivateSelector | AllPrivate | SafePrivate


def normalise_creator(creator: str) -> str:
    return creator.strip().upper()


def parse_tag(text: str) -> TagSelector | MaskSelector:
    """Parse ``(0010,0010)``, ``00100010`` or a mask such as ``(60xx,3000)``."""
    text = text.strip()
    if len(text) == 8 and "," not in text:
        text = f"({text[:4]},{text[4:]})"
    match = _TAG.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a tag; write it as (gggg,eeee), e.g. (0010,0010)")
    digits = match.group(1) + match.group(2)
    if "x" not in digits.lower():
        return TagSelector(int(digits, 16))
    value = mask = 0
    for char in digits:
        value <<= 4
        mask <<= 4
        if char.lower() != "x":
            value |= int(char, 16)
            mask |= 0xF
    return MaskSelector(value, mask, f"({digits[:4]},{digits[4:]})".lower().replace("x", "x"))


def parse_keyword(text: str) -> TagSelector:
    tag = tag_for_keyword(text.strip())
    if tag is None:
        raise ValueError(f"'{text}' is not a DICOM keyword (check the spelling in PS3.6)")
    return TagSelector(tag)


def parse_private(text: str) -> PrivateSelector | AllPrivate | SafePrivate:
    """Parse ``(0029,"SIEMENS CSA HEADER",10)``, ``all`` or ``safe``."""
    stripped = text.strip()
    if stripped.lower() == "all":
        return AllPrivate()
    if stripped.lower() == "safe":
        return SafePrivate()
    match = _PRIVATE.match(stripped)
    if not match:
        raise ValueError(
            f"'{text}' is not a private element; write it as (gggg,\"CREATOR\",ee), "
            'e.g. (0029,"SIEMENS CSA HEADER",10), or as "all" or "safe"'
        )
    group = int(match.group(1), 16)
    if group % 2 == 0:
        raise ValueError(f"group {group:04X} is even: private groups are odd")
    offset = int(match.group(3)[-2:], 16)
    return PrivateSelector(group, normalise_creator(match.group(2)), offset)
