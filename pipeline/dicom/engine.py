"""Apply a :class:`~pipeline.dicom.profile.Profile` to a dataset, at any depth.

The walk looks up one rule per element (exact tag, then private creator +
element, then group mask, then the profile's default for the VR) and hands the
element to that rule's action.  Elements a rule keeps are never decoded: a
compressed file's pixel bytes, and every attribute nobody asked about, are
written back exactly as read, which is also what makes this fast.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.valuerep import PersonName

from pipeline.dicom.codes import standard_meaning
from pipeline.dicom.profile import Action, DateMode, Profile, Rule
from pipeline.dicom.selectors import TagSelector, normalise_creator
from pipeline.dicom.stream_write import encode_element
from pipeline.dicom.tally import KEPT_UNNAMED, EditCounts
from pipeline.identity.clean import PhiTerms, clean_text
from pipeline.identity.dates import (
    DateFormatError,
    cap_age,
    shift_da,
    shift_dt,
    year_only_da,
    year_only_dt,
    years_between,
)
from pipeline.identity.names import normalise_id, normalise_name
from pipeline.identity.uids import UidMapper
from pipeline.keys import SecretKey
from pipeline.read.peek import elements_in_order, peek
from pipeline.reasons import Reason

PATIENT_BIRTH_DATE = 0x00100030
_UNDEFINED = 0xFFFFFFFF
TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "SH", "ST", "UC", "UT", "UR"})
# String VRs whose ASCII values can be read and written as bytes (see _value).
_RAW_TEXT_VRS = TEXT_VRS | {"AS", "DA", "DT", "TM", "UI", "PN"}
# String VRs in which a backslash is text, not a value delimiter.
_SINGLE_VALUED = frozenset({"LT", "ST", "UT", "UR"})
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
NUMERIC_VRS = frozenset({"FL", "FD", "SL", "SS", "UL", "US", "SV", "UV", "AT"})
DUMMY: dict[str, object] = {
    "AE": "ANONYMOUS",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "TM": "000000",
    "UC": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "UR": "",
}
_TERMS_CACHE: dict[tuple[tuple[int, object], ...], PhiTerms] = {}
_KEEP_UNNAMED = Rule(TagSelector(0), Action.KEEP, "not named by any rule", "(default)")
_REMOVE_INVALID_PRIVATE = Rule(
    TagSelector(0), Action.REMOVE, "private element outside any creator block", "(built in)"
)
_GROUP_REMOVED = "group removed with its Overlay/Curve Data"
_CREATOR_REMOVED = "private creator of an emptied block"
_REMOVE_GROUP_LENGTH = Rule(
    TagSelector(0), Action.REMOVE, "group length (retired, recomputed on write)", "(built in)"
)


@dataclass(frozen=True)
class Change:
    """What happened to one element: the dry run and the audit fold over these."""

    path: str
    keyword: str
    before: str
    after: str | None  # None: removed
    rule: str  # "file:line name"
    action: str
    # False for an element shown as it stays (kept, or a rule that found nothing
    # to change): the audit's counts fold over the edited ones only.
    edited: bool = True


@dataclass
class FileContext:
    """Everything the actions of one file need, computed once per file."""

    key: SecretKey
    profile: Profile
    uids: UidMapper
    subject: str  # the subject's pseudonym
    days: int  # the subject's date shift
    originals: Dataset  # the identifying elements as read (see deidentify._snapshot)
    changes: list[Change] | None = None  # filled only when explaining (dry run)
    applied_options: set[str] = field(default_factory=set)
    edits: int = 0  # elements changed so far; lets unchanged sequences stay raw
    # What the VR defaults decided (elements no rule names): reported per run,
    # so a site sees what it relies on.
    by_default: Counter[str] = field(default_factory=Counter)
    # Every element changed, by (rule, tag, action): the audit report's "what
    # the rules did" (pipeline.dicom.tally turns it into run facts).
    edited: EditCounts = field(default_factory=Counter)
    # Why a person should see the output before it is released (never PHI).
    doubts: set[Reason] = field(default_factory=set)

    @cached_property
    def signature(self) -> tuple[tuple[int, object], ...]:
        """The identifying elements' bytes as read: what the terms and ages are made of."""
        return tuple(
            (int(tag), raw.value if isinstance(raw, RawDataElement) else str(raw.value))
            for tag in self.originals.keys()
            if (raw := self.originals.get_item(tag)) is not None
        )

    @cached_property
    def edit_memo(self) -> dict[tuple[object, ...], _Edit] | None:
        """This file's share of the edit memo (see ``_EDIT_MEMO``); None in the dry run."""
        if self.changes is not None:
            return None
        base = (
            id(self.profile), id(self.uids), self.key.material, self.subject, self.days,
            self.signature,
        )  # fmt: skip
        found = _EDIT_MEMO.get(base)
        if found is None or found[0] is not self.profile or found[1] is not self.uids:
            if len(_EDIT_MEMO) >= _EDIT_MEMO_BASES:
                _EDIT_MEMO.pop(next(iter(_EDIT_MEMO)))
            # The profile and mapper are held by the entry: their ids stay theirs.
            found = _EDIT_MEMO[base] = (self.profile, self.uids, {})
        return found[2]

    @cached_property
    def terms(self) -> PhiTerms:
        """Built on first use, and once per distinct set of identifying values.

        The files of one series carry the same names and IDs, so the terms are
        cached by the identifying elements' bytes as read.
        """
        signature = self.signature
        cached = _TERMS_CACHE.get(signature)
        if cached is None:
            cached = _TERMS_CACHE[signature] = self._build_terms()
            if len(_TERMS_CACHE) > 512:
                _TERMS_CACHE.pop(next(iter(_TERMS_CACHE)))
        return cached

    def _build_terms(self) -> PhiTerms:
        names, identifiers = [], []
        for element in self.originals:
            values = _strings(element.value)
            if element.VR == "PN":
                names += values
            elif element.keyword != "SpecificCharacterSet" and element.VR != "DA":
                identifiers += values
        births = _strings(self.originals.get("PatientBirthDate"))
        return PhiTerms.build(names, identifiers, births)

    @cached_property
    def reference_date(self) -> str:
        """The study's date as read, for ages (the age limit of Safe Harbor)."""
        for keyword in ("StudyDate", "SeriesDate", "ContentDate"):
            if value := self.originals.get(keyword):
                return str(value)
        return ""


def _strings(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str | PersonName | bytes) or not hasattr(value, "__iter__"):
        return [str(value)]
    return [str(v) for v in value]


def vr_of(tag: int, raw: RawDataElement | DataElement) -> str:
    """The element's VR without decoding it: explicit VR, else the dictionary's."""
    vr = raw.VR
    if vr and vr != "UN":
        return str(vr)
    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return "UN"


def find_rule(profile: Profile, tag: int, vr: str, creators: dict[int, str]) -> Rule:
    """The one rule that decides an element, by decreasing specificity."""
    group, element = tag >> 16, tag & 0xFFFF
    if group & 1:
        if element == 0:
            return _REMOVE_GROUP_LENGTH
        if element < 0x0100:
            return _REMOVE_INVALID_PRIVATE  # creators are handled by the caller
        creator = creators.get((group << 8) | (element >> 8))
        if creator is None:
            return profile.private_all or _REMOVE_INVALID_PRIVATE
        slot = (group, creator, element & 0xFF)
        specific = profile.private.get(slot)
        if specific is not None:
            return specific
        if profile.private_safe is not None and slot in profile.safe_private:
            return profile.private_safe
        return profile.private_all or _KEEP_UNNAMED
    cached = profile.public_cache.get((tag, vr))
    if cached is not None:
        return cached
    rule = _find_public_rule(profile, tag, vr)
    profile.public_cache[(tag, vr)] = rule
    return rule


def _find_public_rule(profile: Profile, tag: int, vr: str) -> Rule:
    if tag & 0xFFFF == 0 and tag >> 16 > 0x0002:
        return _REMOVE_GROUP_LENGTH
    rule = profile.exact.get(tag)
    if rule is not None:
        return rule
    for mask_rule in profile.masks:
        if mask_rule.selector.matches(tag):  # type: ignore[union-attr]
            return mask_rule
    return profile.defaults.get(vr, _KEEP_UNNAMED)


def private_creators(ds: Dataset, tags: list[int]) -> dict[int, str]:
    """``(group << 8 | block) -> normalised creator`` for the private blocks of ``ds``.

    Reads the raw bytes where the element is still raw, so finding creators
    does not decode anything else.
    """
    creators: dict[int, str] = {}
    for tag in tags:
        if tag >> 16 & 1 and 0x0010 <= (tag & 0xFFFF) <= 0x00FF:
            value = ds.get_item(tag).value
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            creators[((tag >> 16) << 8) | (tag & 0xFF)] = normalise_creator(str(value or ""))
    return creators


def apply_profile(ds: Dataset, ctx: FileContext, path: str = "") -> None:
    """De-identify ``ds`` in place according to ``ctx.profile``."""
    profile = ctx.profile
    ordered = elements_in_order(ds)  # raw elements stay raw: nothing is decoded here
    tags = [int(tag) for tag, _ in ordered]
    creators = private_creators(ds, tags)
    creator_tags = {((c >> 8) << 16) | (c & 0xFF) for c in creators}

    drop_groups: set[int] | frozenset[int]
    if ctx.changes is None:
        drop_groups = _walk_planned(ds, ctx, path, ordered, tags, creators, creator_tags)
    else:  # the dry run records every element, kept ones too
        drop_groups = set()
        for base_tag, element in ordered:
            tag = int(base_tag)
            if tag in creator_tags:
                continue
            vr = vr_of(tag, element)
            rule = find_rule(profile, tag, vr, creators)
            if rule.default:
                ctx.by_default[_default_label(vr, rule.action)] += 1
            elif rule is _KEEP_UNNAMED:
                ctx.by_default[KEPT_UNNAMED] += 1
            if rule.whole_group:
                drop_groups.add(tag >> 16)
            if (
                tag >> 16 & 1
                and rule.action is not Action.REMOVE
                and _unknown_creator(profile, tag, creators)
            ):
                ctx.doubts.add(Reason.UNKNOWN_PRIVATE_CREATOR_KEPT)
            _apply(ds, base_tag, vr, rule, ctx, path)

    if drop_groups:
        for tag in [int(t) for t in ds.keys() if t >> 16 in drop_groups]:
            _record(ctx, ds, BaseTag(tag), None, path, _GROUP_REMOVED)
            del ds[tag]
            _edited(ctx, tag, _GROUP_REMOVED)

    if creator_tags:
        # A creator stays only while its block still holds something.
        remaining = {((t >> 16) << 8) | ((t & 0xFFFF) >> 8) for t in ds.keys() if t >> 16 & 1}
        for creator_tag in sorted(creator_tags):
            if ((creator_tag >> 16) << 8) | (creator_tag & 0xFF) not in remaining:
                _record(ctx, ds, BaseTag(creator_tag), None, path, _CREATOR_REMOVED)
                del ds[creator_tag]
                _edited(ctx, creator_tag, _CREATOR_REMOVED)


def _unknown_creator(profile: Profile, tag: int, creators: dict[int, str]) -> bool:
    creator = creators.get(((tag >> 16) << 8) | ((tag & 0xFFFF) >> 8))
    return creator is not None and creator not in profile.known_creators


# Which rule decides which element depends only on the profile, the elements'
# tags and VRs and the private creators, and a series repeats them slice
# after slice: the walk is planned once per distinct set (per process), and
# then only the elements a rule changes (or looks into) are visited.  A plan
# is what the element-by-element walk does, in its order: the VR defaults'
# counts (as chunks between the sequences, which count their own items'),
# the rule of every element that is not simply kept, the doubt of a kept
# unknown private creator and the groups removed whole.
_Step = tuple[int, str, Rule]  # (index in tag order, VR, rule)
_Plan = tuple[Profile, tuple["Counter[str] | _Step", ...], frozenset[Reason], frozenset[int]]
_PLANS: dict[tuple[object, ...], _Plan] = {}
_PLANS_MAX = 256


def _walk_planned(
    ds: Dataset,
    ctx: FileContext,
    path: str,
    ordered: list[tuple[BaseTag, RawDataElement | DataElement]],
    tags: list[int],
    creators: dict[int, str],
    creator_tags: set[int],
) -> frozenset[int]:
    """The walk of :func:`apply_profile` outside the dry run, by its plan; the groups to drop."""
    profile = ctx.profile
    key = (id(profile), tuple(tags), tuple([e.VR for _, e in ordered]), tuple(creators.items()))
    plan = _PLANS.get(key)
    if plan is None or plan[0] is not profile:
        plan = _plan(profile, ordered, tags, creators, creator_tags)
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        _PLANS[key] = plan  # holds the profile: its id stays its own
    _, events, doubts, drop_groups = plan
    by_default = ctx.by_default
    for event in events:
        if isinstance(event, Counter):
            by_default.update(event)
        else:
            index, vr, rule = event
            _apply(ds, ordered[index][0], vr, rule, ctx, path)
    if doubts:
        ctx.doubts |= doubts
    return drop_groups


def _plan(
    profile: Profile,
    ordered: list[tuple[BaseTag, RawDataElement | DataElement]],
    tags: list[int],
    creators: dict[int, str],
    creator_tags: set[int],
) -> _Plan:
    events: list[Counter[str] | _Step] = []
    counts: Counter[str] = Counter()
    doubts: set[Reason] = set()
    drop_groups: set[int] = set()
    dates = ("DA", "DT", "TM")
    for index, (tag, (_, element)) in enumerate(zip(tags, ordered, strict=True)):
        if tag in creator_tags:
            continue
        vr = vr_of(tag, element)
        rule = find_rule(profile, tag, vr, creators)
        if rule.default:
            counts[_default_label(vr, rule.action)] += 1
        elif rule is _KEEP_UNNAMED:
            counts[KEPT_UNNAMED] += 1
        if rule.whole_group:
            drop_groups.add(tag >> 16)
        private = tag >> 16 & 1
        if (
            private
            and rule.action is not Action.REMOVE
            and _unknown_creator(profile, tag, creators)
        ):
            doubts.add(Reason.UNKNOWN_PRIVATE_CREATOR_KEPT)
        if (
            rule.action is Action.KEEP
            and vr != "SQ"
            and not (private and vr in dates and vr in profile.defaults)
            and not (vr == "AS" and profile.age_limit is not None)
        ):
            continue  # kept as it is: _apply would do nothing outside the dry run
        if vr == "SQ" and counts:  # its items count their own defaults: keep the order
            events.append(counts)
            counts = Counter()
        events.append((index, vr, rule))
    if counts:
        events.append(counts)
    return profile, tuple(events), frozenset(doubts), frozenset(drop_groups)


@lru_cache(maxsize=256)
def _default_label(vr: str, action: Action) -> str:
    """How a VR default's use is counted (one string per VR and action, not per element)."""
    return f"{vr} {action.value}"


def _apply(ds: Dataset, tag: BaseTag, vr: str, rule: Rule, ctx: FileContext, path: str) -> None:
    action = rule.action
    if action is Action.REMOVE:
        _record(ctx, ds, tag, None, path, rule)
        del ds[tag]
        _edited(ctx, tag, rule)
        return
    if vr == "SQ":
        _apply_sequence(ds, tag, rule, ctx, path)
        return
    if action is Action.KEEP:
        if tag >> 16 & 1 and vr in ("DA", "DT", "TM") and vr in ctx.profile.defaults:
            # A kept private date moves with the subject like every other date.
            _apply(ds, tag, vr, ctx.profile.defaults[vr], ctx, path)
            return
        if vr == "AS" and ctx.profile.age_limit is not None:
            _replace(
                ds,
                tag,
                vr,
                _map_values(_value(ds, tag, vr), lambda v: cap_age(v, ctx.profile.age_limit or 0)),
                ctx,
                path,
                rule,
            )
            return
        if ctx.changes is not None:
            _record(ctx, ds, tag, _show(ds[tag].value), path, rule, edited=False)
        return
    handler = _HANDLERS[action]
    memo = ctx.edit_memo
    raw = ds._dict.get(tag) if memo is not None and action is not Action.MEANING else None
    if raw is None or raw.__class__ is not RawDataElement:
        handler(ds, tag, vr, rule, ctx, path)
        return
    value = raw.value
    if value.__class__ is not bytes or len(value) > _EDIT_MEMO_VALUE:
        handler(ds, tag, vr, rule, ctx, path)  # (a long text: not worth keeping)
        return
    charset: object = None  # ASCII means the same in every character set
    if not value.isascii() or b"\x1b" in value:
        charset = ds.original_character_set  # what the value's text depends on
        if not charset:
            handler(ds, tag, vr, rule, ctx, path)
            return
        if not isinstance(charset, str):
            charset = tuple(charset)
    assert memo is not None
    key = (tag, vr, id(rule), value, raw.is_implicit_VR, raw.is_little_endian, charset)
    edit = memo.get(key)
    if edit is None:
        edit = _learn_edit(ds, tag, vr, rule, ctx, path, handler, raw)
        if edit is None:
            return  # done, but not the kind of outcome kept (see _learn_edit)
        if len(memo) >= _EDIT_MEMO_MAX:
            memo.clear()
        memo[key] = edit
        return
    element, counted, doubts = edit
    if element is None:
        del ds[tag]
    elif element is not _UNCHANGED:
        ds._dict[tag] = element  # the same raw element ds[tag] = element stores
    for counts in counted:
        ctx.edits += 1
        ctx.edited[counts] += 1
    if doubts:
        ctx.doubts |= doubts


# What the rules made of one element's value is the same for every slice of a
# series that repeats it (dates, descriptions, names, study and series UIDs),
# for one key, subject, profile and set of identifying values.  Kept per
# process (in its memory only, like the files' values themselves), per
# FileContext.edit_memo: the raw element written (or its removal), what was
# counted and the doubts raised, replayed for the next slice.  Only plain
# outcomes are kept: an ASCII value read as raw bytes, and a raw element, a
# removal or no change as the result; the dry run never uses it.
_EDIT_MEMO: dict[
    tuple[object, ...], tuple[Profile, UidMapper, dict[tuple[object, ...], _Edit]]
] = {}
_EDIT_MEMO_BASES = 32
_EDIT_MEMO_MAX = 2048
_EDIT_MEMO_VALUE = 1024  # bytes: with the bounds above, at most 64 MiB of values per process
_UNCHANGED = RawDataElement(BaseTag(0), None, 0, None, 0, True, True)  # a marker, never written
_Edit = tuple[RawDataElement | None, tuple[tuple[str, int, str], ...], frozenset[Reason]]


def _learn_edit(
    ds: Dataset,
    tag: BaseTag,
    vr: str,
    rule: Rule,
    ctx: FileContext,
    path: str,
    handler: Callable[[Dataset, BaseTag, str, Rule, FileContext, str], None],
    raw: RawDataElement,
) -> _Edit | None:
    """Apply the rule, and return what it did when it can be replayed, else None."""
    edited, doubts, edits = ctx.edited, ctx.doubts, ctx.edits
    ctx.edited, ctx.doubts = Counter(), set()  # what this one element adds, whatever was there
    try:
        handler(ds, tag, vr, rule, ctx, path)
        added, raised, count = ctx.edited, ctx.doubts, ctx.edits - edits
    finally:
        edited.update(ctx.edited)
        doubts |= ctx.doubts
        ctx.edited, ctx.doubts = edited, doubts
    after = ds._dict.get(tag)
    if after is raw:
        element: RawDataElement | None = _UNCHANGED
    elif after is None or after.__class__ is RawDataElement:
        element = after
    else:
        return None  # a decoded element (mutable, not shared between data sets)
    counted = tuple(k for k, n in added.items() for _ in range(n))
    if len(counted) != count:
        return None
    return element, counted, frozenset(raised)


def _apply_sequence(ds: Dataset, tag: BaseTag, rule: Rule, ctx: FileContext, path: str) -> None:
    raw = ds.get_item(tag)
    if rule.action is Action.EMPTY:
        element = ds[tag]
        _record(ctx, ds, tag, "(empty sequence)", path, rule)
        element.value = []
        _edited(ctx, tag, rule)
        return
    memo_key = _memo_key(ds, tag, raw, ctx, path)
    if memo_key is not None:
        memo = _SEQUENCE_MEMO.get(memo_key)
        if memo is not None and memo.profile is ctx.profile:
            memo.replay(ctx)
            ds[tag] = memo.element or raw
            return
        before = (ctx.edits, Counter(ctx.edited), Counter(ctx.by_default), set(ctx.doubts))
    # keep, dummy, uid, shift, pseudonym, clean: keep the items, let the rules
    # decide every element inside them.
    edits = ctx.edits
    for index, item in enumerate(ds[tag].value):
        apply_profile(item, ctx, f"{path}{_tag_text(tag)}[{index}].")
    unchanged = ctx.edits == edits and isinstance(raw, RawDataElement)
    if unchanged:
        ds[tag] = raw  # nothing inside changed: write the sequence back byte for byte
    if memo_key is not None:
        assert isinstance(raw, RawDataElement)
        encoded = None if unchanged else _encoded_sequence(ds, tag, raw)
        if encoded is not None:
            ds[tag] = encoded
        if unchanged or encoded is not None:
            if len(_SEQUENCE_MEMO) >= _SEQUENCE_MEMO_MAX:
                _SEQUENCE_MEMO.clear()
            _SEQUENCE_MEMO[memo_key] = _SequenceMemo.since(ctx, before, encoded)


# The top-level sequences of one series' slices (the referenced study, images
# and request) are mostly the same bytes in every slice, and so is what the
# rules make of them for one subject.  What they became is kept per process
# (in its memory only, like the files' values themselves): the element as
# written and what the rules counted, replayed for the next slice.  It is
# keyed by the bytes read, the key, the subject's pseudonym and shift and the
# identifying values that cleaning and ages read, so another subject, key or
# profile never shares an entry.
_SEQUENCE_MEMO: dict[tuple[object, ...], _SequenceMemo] = {}
_SEQUENCE_MEMO_MAX = 256


@dataclass(frozen=True)
class _SequenceMemo:
    profile: Profile
    element: RawDataElement | None  # None: unchanged, the file's own element stays
    edits: int
    edited: EditCounts
    by_default: Counter[str]
    doubts: frozenset[Reason]

    @classmethod
    def since(
        cls,
        ctx: FileContext,
        before: tuple[int, EditCounts, Counter[str], set[Reason]],
        element: RawDataElement | None,
    ) -> _SequenceMemo:
        edits, edited, by_default, doubts = before
        return cls(
            ctx.profile, element, ctx.edits - edits, ctx.edited - edited,
            ctx.by_default - by_default, frozenset(ctx.doubts - doubts),
        )  # fmt: skip

    def replay(self, ctx: FileContext) -> None:
        ctx.edits += self.edits
        ctx.edited.update(self.edited)
        ctx.by_default.update(self.by_default)
        ctx.doubts |= self.doubts


def _memo_key(
    ds: Dataset, tag: BaseTag, raw: RawDataElement | DataElement | None, ctx: FileContext, path: str
) -> tuple[object, ...] | None:
    """What decides a top-level sequence's outcome, or None where it is not memoised.

    Not in the dry run (it records every element), not inside items, and only
    for a sequence still as read, in the data set's own little-endian encoding.
    """
    if ctx.changes is not None or path or not isinstance(raw, RawDataElement):
        return None
    if tag >> 16 & 1:
        return None  # pydicom decodes a private element as it is set: not worth it
    if not isinstance(raw.value, bytes) or not raw.is_little_endian:
        return None
    if ds.original_encoding != (raw.is_implicit_VR, True):
        return None
    charset = ds.original_character_set
    return (
        int(tag), raw.VR, raw.length, raw.is_implicit_VR, raw.value,
        charset if isinstance(charset, str) else tuple(charset),
        ctx.key.material, ctx.subject, ctx.days, ctx.signature, id(ctx.profile),
    )  # fmt: skip


def _encoded_sequence(ds: Dataset, tag: BaseTag, raw: RawDataElement) -> RawDataElement | None:
    """The de-identified sequence as the raw element pydicom's writer would write it.

    Encoded once, as ``write_data_element`` encodes it (the items' raw
    elements copied: :func:`pipeline.dicom.stream_write.encode_element`), so
    the memo's copy and a freshly de-identified sequence are the same bytes.
    """
    element = ds[tag]
    if element.VR != "SQ":
        return None
    data = encode_element(element, raw.is_implicit_VR, ds.get("SpecificCharacterSet", "iso8859"))
    header = 8 if raw.is_implicit_VR else 12
    length = int.from_bytes(data[header - 4 : header], "little")
    value = data[header : len(data) - 8] if length == _UNDEFINED else data[header:]
    if length != _UNDEFINED and length != len(value):
        return None
    return RawDataElement(
        tag, None if raw.is_implicit_VR else "SQ", length, value, 0, raw.is_implicit_VR, True
    )


def _empty(ds: Dataset, tag: BaseTag, vr: str, rule: Rule, ctx: FileContext, path: str) -> None:
    _replace(ds, tag, vr, None, ctx, path, rule)


def _dummy(ds: Dataset, tag: BaseTag, vr: str, rule: Rule, ctx: FileContext, path: str) -> None:
    if vr == "UI":
        _uid(ds, tag, vr, rule, ctx, path)
        return
    if rule.value is not None:
        value: object = rule.value
    elif vr in NUMERIC_VRS:
        value = 0
    elif vr in BINARY_VRS:
        value = b""
    else:
        value = DUMMY.get(vr, "")
    _replace(ds, tag, vr, value, ctx, path, rule)


def _uid(ds: Dataset, tag: BaseTag, vr: str, rule: Rule, ctx: FileContext, path: str) -> None:
    if vr != "UI":
        _dummy(ds, tag, vr, rule, ctx, path) if vr in DUMMY else _empty(
            ds, tag, vr, rule, ctx, path
        )
        return
    _replace(ds, tag, vr, _map_values(_value(ds, tag, vr), ctx.uids.remap), ctx, path, rule)


def _shift(ds: Dataset, tag: BaseTag, vr: str, rule: Rule, ctx: FileContext, path: str) -> None:
    profile = ctx.profile
    year_mode = profile.date_mode is DateMode.YEAR
    transform: Callable[[str], str]
    if vr == "DA":
        if (
            year_mode
            and tag == PATIENT_BIRTH_DATE
            and profile.age_limit is not None
            and (age := years_between(str(ds[tag].value), ctx.reference_date)) is not None
            and age > profile.age_limit
        ):
            _replace(ds, tag, vr, None, ctx, path, rule)  # 90 or older: not even the year
            return
        transform = year_only_da if year_mode else (lambda v: shift_da(v, ctx.days))
    elif vr == "DT":
        transform = year_only_dt if year_mode else (lambda v: shift_dt(v, ctx.days))
    elif vr == "TM":
        if year_mode:
            _replace(ds, tag, vr, None, ctx, path, rule)
        elif ctx.changes is not None:
            _record(ctx, ds, tag, _show(ds[tag].value), path, rule, edited=False)
        return  # whole-day shifts leave times of day as they were
    else:
        _clean(ds, tag, vr, rule, ctx, path)
        return
    try:
        value = _map_values(_value(ds, tag, vr), transform)
    except DateFormatError:
        value = None  # not a date we can move: empty rather than leak it
    _replace(ds, tag, vr, value, ctx, path, rule)


def _pseudonym(ds: Dataset, tag: BaseTag, vr: str, rule: Rule, ctx: FileContext, path: str) -> None:
    kind = rule.kind or ("person" if vr == "PN" else "id")
    key = ctx.key

    def one(value: str) -> str:
        if not value.strip():
            return value
        if kind == "subject":
            return ctx.subject
        if kind == "person":
            return key.pseudonym("person", normalise_name(value), prefix="P-")
        return key.pseudonym("id", normalise_id(value), prefix="ID-")

    _replace(ds, tag, vr, _map_values(_value(ds, tag, vr), one), ctx, path, rule)


def _clean(ds: Dataset, tag: BaseTag, vr: str, rule: Rule, ctx: FileContext, path: str) -> None:
    if vr in BINARY_VRS:
        # Bitmaps and opaque bytes cannot be cleaned by text rules: remove them,
        # and do not claim the option that would have cleaned them.
        _record(ctx, ds, tag, None, path, rule)
        del ds[tag]
        _edited(ctx, tag, rule)
        return
    if vr == "PN":
        _replace(ds, tag, vr, None, ctx, path, rule)
        return
    if vr not in TEXT_VRS:
        if ctx.changes is not None:
            _record(ctx, ds, tag, _show(ds[tag].value), path, rule, edited=False)
        return
    original = _value(ds, tag, vr)
    cleaned = _map_values(original, lambda v: clean_text(v, ctx.terms, ctx.profile.vocabulary))
    if (
        ctx.profile.vocabulary is None
        and cleaned != original
        and any(ctx.terms.mentioned_in(v) for v in _strings(original))
    ):
        # Without a vocabulary, cleaning removes only what it recognises; text
        # that named the patient may say more about them than it recognised.
        # (With one, every word it does not know is removed as well.)
        ctx.doubts.add(Reason.FREE_TEXT_NAMED_SUBJECT)
    if rule.value is not None and not any(_strings(cleaned)):
        cleaned = rule.value  # a Type 1 element: what is left when cleaning leaves nothing
    _replace(ds, tag, vr, cleaned, ctx, path, rule)


def _meaning(ds: Dataset, tag: BaseTag, vr: str, rule: Rule, ctx: FileContext, path: str) -> None:
    """A code meaning: kept when cleaning finds nothing to remove, else the standard's own."""
    original = str(ds[tag].value or "")
    cleaned = clean_text(original, ctx.terms, ctx.profile.vocabulary)
    if cleaned == original.strip():
        if ctx.changes is not None:
            _record(ctx, ds, tag, _show(original), path, rule, edited=False)
        return
    scheme = str(ds.get("CodingSchemeDesignator", "") or "")
    value = str(ds.get("CodeValue", "") or ds.get("LongCodeValue", "") or "")
    meaning = standard_meaning(scheme, value) or cleaned or str(rule.value or DUMMY["LO"])
    _replace(ds, tag, vr, meaning[:64], ctx, path, rule)


_HANDLERS: dict[Action, Callable[[Dataset, BaseTag, str, Rule, FileContext, str], None]] = {
    Action.EMPTY: _empty,
    Action.DUMMY: _dummy,
    Action.UID: _uid,
    Action.SHIFT: _shift,
    Action.PSEUDONYM: _pseudonym,
    Action.CLEAN: _clean,
    Action.MEANING: _meaning,
}


def _map_values(value: object, func: Callable[[str], str]) -> object:
    """Apply ``func`` to each value of a possibly multi-valued element."""
    if value is None:
        return None
    if isinstance(value, str | PersonName):
        return func(str(value))
    if isinstance(value, bytes):
        return func(value.decode("latin-1"))
    try:
        return [func(str(v)) for v in value]  # type: ignore[attr-defined]
    except TypeError:
        return func(str(value))


def _value(ds: Dataset, tag: BaseTag, vr: str) -> object:
    """The element's value, split from the raw bytes where that needs no decoding.

    Bytes that are pure ASCII (and hold no ISO 2022 escape) mean the same in
    every DICOM character set, so pydicom's slower conversion is only used for
    the rest.
    """
    raw = ds.get_item(tag)
    if vr in _RAW_TEXT_VRS and isinstance(raw, RawDataElement):
        data = raw.value
        if isinstance(data, bytes) and data.isascii() and b"\x1b" not in data:
            text = data.decode("ascii").rstrip("\0 ")
            if not text:
                return None
            if vr in _SINGLE_VALUED:
                return text
            return [v.strip("\0 ") for v in text.split("\\")]
    # Peeked, not decoded in place: an element the rules then replace by ASCII
    # text is written as a raw element (see _replace), as every other one is.
    element = peek(ds, tag)
    return None if element is None else element.value


def _replace(
    ds: Dataset, tag: BaseTag, vr: str, value: object, ctx: FileContext, path: str, rule: Rule
) -> None:
    if ctx.changes is not None:
        _record(ctx, ds, tag, _show(value), path, rule)
    _edited(ctx, tag, rule)
    original = ds.get_item(tag)
    if vr in _RAW_TEXT_VRS and isinstance(original, RawDataElement) and _is_ascii_text(value):
        # ASCII is the same bytes in every character set: encode it directly, and
        # the writer copies raw bytes as they are.
        ds[tag] = _raw_text(tag, vr, value, original)
        return
    ds[tag] = DataElement(tag, vr, value)


def _is_ascii_text(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.isascii()
    return isinstance(value, list) and all(isinstance(v, str) and v.isascii() for v in value)


def _raw_text(
    tag: BaseTag, vr: str, value: str | list[str] | None, like: RawDataElement
) -> RawDataElement:
    text = value if isinstance(value, str) else "\\".join(value or [])
    data = text.encode("ascii")
    if len(data) % 2:
        data += b"\0" if vr == "UI" else b" "
    return RawDataElement(
        tag, vr, len(data), data, 0, like.is_implicit_VR, like.is_little_endian, True, False
    )


def _label(rule: Rule | str) -> tuple[str, str]:
    """(label, action) of what decided an element, as the dry run and the audit name it."""
    if isinstance(rule, Rule):
        return f"{rule.origin} {rule.name}".strip(), rule.action.value
    return rule, Action.REMOVE.value


def _edited(ctx: FileContext, tag: int, rule: Rule | str) -> None:
    """Count one changed element (a Counter increment: no value is read)."""
    ctx.edits += 1
    label, action = _label(rule)
    ctx.edited[(label, int(tag), action)] += 1


def _record(
    ctx: FileContext,
    ds: Dataset,
    tag: BaseTag,
    after: str | None,
    path: str,
    rule: Rule | str,
    *,
    edited: bool = True,
) -> None:
    if ctx.changes is None:
        return
    element = ds[tag]
    label, action = _label(rule)
    ctx.changes.append(
        Change(
            path=f"{path}{_tag_text(tag)}",
            keyword=element.keyword or element.name,
            before=_show(element.value),
            after=after,
            rule=label,
            action=action,
            edited=edited,
        )
    )


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _show(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, list) and value and isinstance(value[0], Dataset):
        return f"<sequence of {len(value)} item(s)>"
    text = str(value)
    if hasattr(value, "__iter__") and not isinstance(value, str | PersonName):
        text = "\\".join(str(v) for v in value)
    return text if len(text) <= 80 else text[:77] + "..."
