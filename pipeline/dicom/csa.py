"""Rebuild the Siemens CSA image header from an allowlist of its technical fields.

Siemens keeps what makes a mosaic a volume (NumberOfImagesInMosaic,
SliceNormalVector), the diffusion encoding and the slice timing in a binary
"CSA" header, ``(0029,"SIEMENS CSA HEADER",10)``.  Without it dcm2niix and
nibabel cannot unpack a mosaic, but the blob is vendor-defined and any of its
hundred fields can carry text.  So it is never copied: before the profile
applies, :func:`rebuild_csa_headers` decodes it and writes a new CSA2 header
holding only the fields of ``rules/dicom/csa_image_header.yaml``, each value
checked against the form the allowlist gives it (a number in its range, one
of its choices, its pattern) and re-encoded from its text.  Whatever is not
on the list, or not of its form, is dropped; a header that is not CSA2, or of
which nothing is left, is removed.  The profile then keeps the rebuilt
element as a safe private attribute.  The CSA *series* header
``(0029,"SIEMENS CSA HEADER",20)`` is never rebuilt nor kept: its Phoenix
protocol is free text.

CSA2 layout (all integers little endian)::

    b"SV10" b"\\x04\\x03\\x02\\x01"  uint32 n_tags  uint32 77
    per tag:  name[64] (NUL padded)  int32 vm  vr[4]  int32 syngodt
              int32 n_items  int32 77 (205 when it has no items)
    per item: int32 ×4 (length, length, 77, length), or (0, 0, 205, 0) when
              empty, then the value's bytes (NUL terminated), padded to 4
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from pipeline.dicom.engine import Change, find_rule, private_creators
from pipeline.dicom.profile import Action, Profile
from pipeline.errors import RuleError
from pipeline.rulefiles import Located, check_keys, load_yaml, rules_root

CSA_CREATOR = "SIEMENS CSA HEADER"
IMAGE_HEADER = 0x10
SERIES_HEADER = 0x20
CSA2_MAGIC = b"SV10\x04\x03\x02\x01"
_USED, _EMPTY = 77, 205
_MAX_TAGS = 1000  # nibabel's limit; real image headers have about 100
_MAX_ITEMS = 1000  # nibabel refuses more
_MAX_DEPTH = 32
# The "syngo data type" Siemens writes beside each VR (as seen in real headers).
_SYNGODT = {"DS": 3, "FD": 4, "IS": 6, "SL": 7, "UL": 9, "US": 10, "CS": 16, "LO": 19, "SH": 22}
_INTEGER = re.compile(r"[+-]?[0-9]{1,10}")
_DECIMAL = re.compile(
    r"[+-]?(?:[0-9]{1,12}(?:\.[0-9]{0,12})?|\.[0-9]{1,12})(?:[eE][+-]?[0-9]{1,3})?"
)
# The creator's name in a sequence's raw bytes, upper-cased as the engine compares
# creators: only sequences that contain it are opened.
_CREATOR_BYTES = CSA_CREATOR.encode("ascii")
_MAYBE_SEQUENCE = frozenset({"SQ", "UN", None})  # VRs _items_naming_the_creator may look into

FACT_REBUILT = "CSA image header rebuilt from rules/dicom/csa_image_header.yaml"
FACT_DROPPED = "CSA image header fields dropped (not on the allowlist, or not of its form)"
FACT_REMOVED = "CSA image header removed (not a CSA2 header, or no allowlisted field in it)"


# ---------------------------------------------------------------------------
# The allowlist (rules/dicom/csa_image_header.yaml)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CsaField:
    """One field the rebuilt header may carry, and the form its values must have."""

    name: str
    vr: str
    accepts: Callable[[str], bool]
    count: int | None  # exact number of values, when given
    max_count: int
    drop_items: bool  # a value that does not fit drops only itself, not the field
    why: str
    origin: str  # "file:line"


@dataclass(frozen=True)
class CsaAllowlist:
    fields: dict[str, CsaField]
    path: Path
    digest: str  # sha256 of the file: part of the deid step's digest


_FIELD_KEYS = {"name", "vr", "why", "values", "range", "choices", "pattern", "count", "max_count"}


def default_allowlist_path() -> Path:
    return rules_root() / "dicom" / "csa_image_header.yaml"


def load_csa_allowlist(path: Path | None = None) -> CsaAllowlist:
    """Load and validate the allowlist; raise :class:`RuleError` with file and line."""
    if path is None:
        # Every file with a kept CSA header asks for it: resolve the path once per rules folder.
        return _load_default(os.environ.get("MRICURATE_RULES"))
    return _load_cached(path.resolve())


@lru_cache(maxsize=4)
def _load_default(rules_override: str | None) -> CsaAllowlist:
    return _load_cached(default_allowlist_path().resolve())


@lru_cache(maxsize=8)
def _load_cached(path: Path) -> CsaAllowlist:
    doc = load_yaml(path)
    check_keys(doc, required={"fields"}, allowed={"name"})
    entries = doc["fields"]
    if not isinstance(entries, list) or not entries:
        raise RuleError(path, doc.line, "'fields' must be a non-empty list of fields")
    fields: dict[str, CsaField] = {}
    for entry in entries:
        if not isinstance(entry, Located):
            raise RuleError(path, doc.line, f"a field must be a mapping, found {entry!r}")
        field = _parse_field(entry, path)
        if field.name in fields:
            raise RuleError(path, entry.line, f"field '{field.name}' is listed twice")
        fields[field.name] = field
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return CsaAllowlist(fields=fields, path=path, digest=digest)


def _parse_field(entry: Located, path: Path) -> CsaField:
    check_keys(entry, required={"name", "vr", "why"}, allowed=_FIELD_KEYS | {"mismatch"})
    line = entry.line
    name = entry["name"]
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,62}", name):
        raise RuleError(path, line, f"'{name}' is not a CSA field name (letters, digits, _)")
    vr = entry["vr"]
    if vr not in _SYNGODT:
        raise RuleError(path, line, f"vr '{vr}' is not one of {', '.join(sorted(_SYNGODT))}")
    why = entry["why"]
    if not isinstance(why, str) or not why.strip():
        raise RuleError(path, line, "'why' must say what needs the field")
    forms = [k for k in ("values", "choices", "pattern") if k in entry]
    if len(forms) != 1:
        raise RuleError(path, line, "give exactly one of: values, choices, pattern")
    accepts = _accepts(entry, forms[0], path)
    count = _whole(entry, "count", path, low=1)
    max_count = _whole(entry, "max_count", path, low=1)
    if count is not None and max_count is not None:
        raise RuleError(path, line, "give count or max_count, not both")
    mismatch = entry.get("mismatch", "field")
    if mismatch not in ("field", "item"):
        raise RuleError(path, line, "'mismatch' must be 'field' or 'item'")
    return CsaField(
        name=name,
        vr=vr,
        accepts=accepts,
        count=count,
        max_count=min(count or max_count or 1, _MAX_ITEMS),
        drop_items=mismatch == "item",
        why=why.strip(),
        origin=f"{path.name}:{line}",
    )


def _accepts(entry: Located, form: str, path: Path) -> Callable[[str], bool]:
    line = entry.line
    if form == "choices":
        choices = entry["choices"]
        if (
            not isinstance(choices, list)
            or not choices
            or not all(isinstance(c, str) and c.isascii() for c in choices)
        ):
            raise RuleError(path, line, "'choices' must be a list of ASCII texts")
        if "range" in entry:
            raise RuleError(path, line, "'range' is for values: integer or decimal")
        allowed = frozenset(choices)
        return allowed.__contains__
    if form == "pattern":
        text = entry["pattern"]
        if "range" in entry:
            raise RuleError(path, line, "'range' is for values: integer or decimal")
        try:
            pattern = re.compile(str(text))
        except re.error as exc:
            raise RuleError(path, line, f"'pattern' is not a regular expression: {exc}") from None
        return lambda v: v.isascii() and pattern.fullmatch(v) is not None
    kind = entry["values"]
    if kind not in ("integer", "decimal"):
        raise RuleError(path, line, "'values' must be 'integer' or 'decimal'")
    span = entry.get("range")
    if (
        not isinstance(span, list)
        or len(span) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in span)
        or span[0] > span[1]
    ):
        raise RuleError(path, line, "numeric values need 'range: [low, high]'")
    low, high = float(span[0]), float(span[1])
    syntax = _INTEGER if kind == "integer" else _DECIMAL

    def accepts(value: str) -> bool:
        if syntax.fullmatch(value) is None:
            return False
        number = float(value)
        return math.isfinite(number) and low <= number <= high

    return accepts


def _whole(entry: Located, key: str, path: Path, *, low: int) -> int | None:
    if key not in entry:
        return None
    value = entry[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise RuleError(path, entry.line, f"'{key}' must be a whole number of at least {low}")
    return value


# ---------------------------------------------------------------------------
# CSA2 decoding and encoding
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CsaTag:
    """One decoded CSA field: its name, VM as written, VR and the values' texts."""

    name: str
    vm: int
    vr: str
    values: tuple[str, ...]


class CsaFormatError(ValueError):
    """The bytes are not a CSA2 header (or not a whole one)."""


def decode_csa2(data: bytes) -> list[CsaTag]:
    """The fields of a CSA2 ("SV10") header; raise :class:`CsaFormatError` otherwise.

    A value is its item's bytes up to the first NUL, trailing spaces removed:
    what dcm2niix and nibabel read (bytes after the NUL are never kept).
    """
    if not data.startswith(b"SV10") or len(data) < 16:
        raise CsaFormatError("not a CSA2 header (no SV10 signature)")
    (n_tags,) = struct.unpack_from("<I", data, 8)
    if not 0 < n_tags <= _MAX_TAGS:
        raise CsaFormatError(f"{n_tags} tags")
    tags: list[CsaTag] = []
    pos = 16
    try:
        for _ in range(n_tags):
            raw_name, vm, raw_vr, _syngodt, n_items, _xx = struct.unpack_from(
                "<64si4s3i", data, pos
            )
            pos += 84
            if not 0 <= n_items <= _MAX_ITEMS:
                raise CsaFormatError(f"{n_items} items")
            values: list[str] = []
            for _item in range(n_items):
                _x0, length, _x2, _x3 = struct.unpack_from("<4i", data, pos)
                pos += 16
                if length < 0 or pos + length > len(data):
                    raise CsaFormatError("an item runs past the end")
                text = data[pos : pos + length].split(b"\0", 1)[0].rstrip(b" ")
                pos += (length + 3) // 4 * 4
                if text:
                    values.append(text.decode("latin-1"))
            tags.append(
                CsaTag(
                    name=raw_name.split(b"\0", 1)[0].decode("latin-1"),
                    vm=vm,
                    vr=raw_vr.split(b"\0", 1)[0].decode("latin-1"),
                    values=tuple(values),
                )
            )
    except struct.error:
        raise CsaFormatError("the header ends inside a tag") from None
    return tags


def encode_csa2(tags: list[CsaTag]) -> bytes:
    """A CSA2 header as Siemens writes one: six item slots at least, spares empty."""
    out = bytearray(CSA2_MAGIC)
    out += struct.pack("<2I", len(tags), _USED)
    for tag in tags:
        n_items = len(tag.values) if tag.vm == 0 else max(len(tag.values), 6)
        out += struct.pack(
            "<64si4s3i",
            tag.name.encode("ascii"),
            tag.vm,
            tag.vr.encode("ascii"),
            _SYNGODT[tag.vr],
            n_items,
            _USED if tag.values else _EMPTY,
        )
        for index in range(n_items):
            if index < len(tag.values):
                data = tag.values[index].encode("ascii") + b"\0"
                out += struct.pack("<4i", len(data), len(data), _USED, len(data))
                out += data + b"\0" * (-len(data) % 4)
            else:
                out += struct.pack("<4i", 0, 0, _EMPTY, 0)
    return bytes(out)


@dataclass(frozen=True)
class Rebuilt:
    """What :func:`rebuild_image_header` made of one header."""

    data: bytes | None  # None: nothing to keep, the element goes
    kept: tuple[str, ...]
    dropped: int  # fields with values that were not kept


def rebuild_image_header(data: bytes, allowlist: CsaAllowlist) -> Rebuilt:
    """A new CSA2 image header with only the allowlisted fields of ``data``.

    Raises
    ------
    CsaFormatError
        ``data`` is not a CSA2 header.
    """
    kept: list[CsaTag] = []
    dropped = 0
    seen: set[str] = set()
    for tag in decode_csa2(data):
        if not tag.values:
            continue  # an empty slot says nothing to either reader
        field = allowlist.fields.get(tag.name)
        if field is None or tag.name in seen:
            dropped += 1
            continue
        seen.add(tag.name)
        values = tag.values
        if field.drop_items:
            values = tuple(v for v in values if field.accepts(v))
        elif not all(field.accepts(v) for v in values):
            values = ()
        if (
            not values
            or len(values) > field.max_count
            or (field.count is not None and len(values) != field.count)
        ):
            dropped += 1
            continue
        kept.append(CsaTag(field.name, 0 if tag.vm == 0 else len(values), field.vr, values))
    if not kept:
        return Rebuilt(None, (), dropped)
    return Rebuilt(encode_csa2(kept), tuple(t.name for t in kept), dropped)


# ---------------------------------------------------------------------------
# The vendor pre-step
# ---------------------------------------------------------------------------


def rebuild_csa_headers(
    ds: Dataset,
    profile: Profile,
    allowlist: CsaAllowlist | None = None,
    changes: list[Change] | None = None,
) -> list[tuple[str, int]]:
    """Replace every CSA image header the profile keeps by its rebuilt form, in place.

    Runs before the profile: where the profile would keep
    ``(0029,"SIEMENS CSA HEADER",10)`` (the Retain Safe Private option, or a
    site rule), the element then holds only allowlisted fields, or is gone.
    Where the profile removes it, nothing is done.  Sequences are searched
    too, but only those whose bytes name the creator.

    Parameters
    ----------
    changes : list of Change, optional
        The dry run's account: one entry per header, before -> after.

    Returns
    -------
    list of (str, int)
        PHI-free facts for the run summary.
    """
    counts: Counter[str] = Counter()
    _rebuild_in(ds, profile, allowlist, counts, changes, "", 0)
    return [(fact, n) for fact, n in counts.items() if n]


def _rebuild_in(
    ds: Dataset,
    profile: Profile,
    allowlist: CsaAllowlist | None,
    counts: Counter[str],
    changes: list[Change] | None,
    path: str,
    depth: int,
) -> None:
    if depth > _MAX_DEPTH:
        return
    elements = ds._dict
    creators = private_creators(ds, [t for t in elements if t >> 16 == 0x0029])
    for block, name in creators.items():
        if name != CSA_CREATOR:
            continue
        tag = (0x0029 << 16) | ((block & 0xFF) << 8) | IMAGE_HEADER
        if tag not in ds:
            continue
        if find_rule(profile, tag, "OB", creators).action is not Action.KEEP:
            continue  # the profile removes it: nothing of it reaches the output
        allowlist = allowlist or load_csa_allowlist()
        value = ds.get_item(tag).value
        rebuilt = _rebuilt(value, allowlist)
        counts[FACT_DROPPED] += rebuilt.dropped
        if changes is not None:
            after = f"<{len(rebuilt.kept)} fields: {', '.join(rebuilt.kept)}>"
            changes.append(
                Change(
                    path=f"{path}({tag >> 16:04X},{tag & 0xFFFF:04X})",
                    keyword="CSA Image Header Info",
                    before=f"<{len(value) if isinstance(value, bytes) else 0} bytes>",
                    after=after if rebuilt.data is not None else None,
                    rule=f"{allowlist.path.name} rebuilt ({rebuilt.dropped} fields dropped)",
                    action="rebuild",
                )
            )
        if rebuilt.data is None:
            del ds[tag]
            counts[FACT_REMOVED] += 1
        else:
            ds[tag] = DataElement(tag, "OB", rebuilt.data)
            counts[FACT_REBUILT] += 1
    # As read: nothing is decoded to look.  A value with its own VR is not a
    # sequence (most elements); the rest are looked into in tag order.
    maybe = [t for t, element in elements.items() if element.VR in _MAYBE_SEQUENCE]
    for base_tag in sorted(maybe, key=int):
        tag = int(base_tag)
        for index, item in enumerate(_items_naming_the_creator(ds, tag)):
            where = f"{path}({tag >> 16:04X},{tag & 0xFFFF:04X})[{index}]."
            _rebuild_in(item, profile, allowlist, counts, changes, where, depth + 1)


# The slices of a series often carry the same CSA image header bytes, and what
# the allowlist keeps of them is the same: kept per process (in its memory
# only, like the files' values), keyed by the bytes and the allowlist object,
# which the entry holds (so its id stays its own).
_REBUILT: dict[tuple[bytes, int], tuple[CsaAllowlist, Rebuilt]] = {}
_REBUILT_MAX = 64


def _rebuilt(value: object, allowlist: CsaAllowlist) -> Rebuilt:
    """:func:`rebuild_image_header` of ``value``, or nothing kept where it is not CSA2."""
    if not isinstance(value, bytes):
        return Rebuilt(None, (), 0)
    key = (value, id(allowlist))
    found = _REBUILT.get(key)
    if found is not None and found[0] is allowlist:
        return found[1]
    try:
        rebuilt = rebuild_image_header(value, allowlist)
    except CsaFormatError:
        rebuilt = Rebuilt(None, (), 0)
    if len(_REBUILT) >= _REBUILT_MAX:
        _REBUILT.clear()
    _REBUILT[key] = (allowlist, rebuilt)
    return rebuilt


def _dictionary_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _items_naming_the_creator(ds: Dataset, tag: int) -> list[Dataset]:
    """The items of a sequence element whose bytes contain the CSA creator's name."""
    raw = ds.get_item(tag)
    if isinstance(raw, RawDataElement):
        if raw.VR in (None, "UN") and not tag >> 16 & 1 and _dictionary_vr(tag) != "SQ":
            return []  # implicit VR (or UN): the dictionary says what a public element is
        if raw.VR not in ("SQ", "UN", None) or not isinstance(raw.value, bytes):
            return []
        if _CREATOR_BYTES not in raw.value.upper():
            return []
    elif raw is None or raw.VR != "SQ":
        return []
    element = ds[tag]
    if element.VR != "SQ":
        return []
    return [item for item in element.value if isinstance(item, Dataset)]
