"""Load and compose DICOM rule files into one effective :class:`Profile`.

A profile file names the files it builds on (``include``) and adds its own
rules; later files override earlier ones, a file's own rules override what it
includes, so a site file can change a single attribute and inherit the rest.
Everything is validated here, once, so a typo fails at load with file, line
and reason rather than in the middle of a run.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pipeline.dicom.selectors import (
    AllPrivate,
    MaskSelector,
    PrivateSelector,
    SafePrivate,
    Selector,
    TagSelector,
    parse_keyword,
    parse_private,
    parse_tag,
)
from pipeline.errors import RuleError
from pipeline.identity.vocabulary import Vocabulary, load_vocabulary
from pipeline.rulefiles import Located, check_keys, load_yaml, rules_root


class Action(enum.Enum):
    """What a rule does to the element it selects."""

    KEEP = "keep"
    REMOVE = "remove"
    EMPTY = "empty"
    DUMMY = "dummy"
    UID = "uid"
    SHIFT = "shift"
    PSEUDONYM = "pseudonym"
    CLEAN = "clean"
    # A coded entry's meaning: the standard's wording for a standard code, else
    # cleaned; never empty (the Basic Code Sequence Macro makes it Type 1).
    MEANING = "meaning"


class DateMode(enum.Enum):
    """How the ``shift`` action treats dates."""

    SHIFT = "shift"  # one keyed whole-day offset per subject; intervals exact
    YEAR = "year"  # HIPAA Safe Harbor: nothing finer than the year survives


@dataclass(frozen=True)
class Rule:
    selector: Selector
    action: Action
    name: str
    origin: str  # "file:line", shown by `rules show` and the dry run
    whole_group: bool = False
    value: str | None = None  # explicit dummy value
    kind: str | None = None  # pseudonym kind: subject, person, id
    default: bool = False  # a VR default: decides what no rule names (counted per run)


@dataclass(frozen=True)
class MethodCode:
    """One CID 7050 code to record in DeidentificationMethodCodeSequence."""

    value: str
    meaning: str
    only_when_applied: bool = False


@dataclass(frozen=True)
class SopPolicy:
    """Which SOP classes may be released, and which header signals hold a file back."""

    allowed: dict[str, str]  # uid -> name
    allowed_with_option: dict[str, dict[str, str]]  # option name -> {uid: name}
    burned_in_sop_classes: dict[str, str]
    burned_in_modalities: frozenset[str]
    burned_in_image_types: tuple[frozenset[str], ...]
    origin: str


@dataclass(frozen=True)
class Profile:
    """The effective rule table of one profile after composition."""

    name: str
    title: str
    meets: str
    files: tuple[Path, ...]
    digest: str  # sha256 over every file's bytes, recorded with each run
    codes: tuple[MethodCode, ...]
    options: frozenset[str]  # names of the option files included
    exact: dict[int, Rule]
    masks: tuple[Rule, ...]
    private: dict[tuple[int, str, int], Rule]
    private_all: Rule | None
    private_safe: Rule | None
    safe_private: frozenset[tuple[int, str, int]]
    defaults: dict[str, Rule]  # by VR, for attributes no rule names
    date_mode: DateMode
    date_shift_days: tuple[int, int]
    age_limit: int | None
    sop: SopPolicy
    # The words `clean` keeps (rules/vocabulary); None: it removes only what the
    # header names and the generic patterns.
    vocabulary: Vocabulary | None = None
    # Public (tag, VR) -> rule, filled as files are walked: masks and defaults
    # are then looked up once per attribute, not once per element.
    public_cache: dict[tuple[int, str], Rule] = field(
        default_factory=dict, compare=False, repr=False
    )

    @cached_property
    def known_creators(self) -> frozenset[str]:
        """The private creators some rule names (normalised): their blocks are understood."""
        return frozenset(creator for _, creator, _ in (*self.private, *self.safe_private))

    def all_rules(self) -> list[Rule]:
        """Every effective rule, for `rules show`."""
        rules: list[Rule] = [*self.exact.values(), *self.masks, *self.private.values()]
        rules += [r for r in (self.private_safe, self.private_all) if r is not None]
        rules += list(self.defaults.values())
        return rules


_PROFILE_KEYS = {
    "name",
    "title",
    "meets",
    "code",
    "record_code",
    "include",
    "rules",
    "defaults",
    "dates",
    "date_shift_days",
    "age_limit",
    "sop_classes",
    "safe_private",
    "vocabulary",
}
_RULE_KEYS = {"tag", "keyword", "private", "action", "name", "scope", "value", "kind"}
_VRS = {
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF",
    "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN",
    "UR", "US", "UT", "UV",
}  # fmt: skip


class _Builder:
    """Accumulates rules and settings while walking the include graph."""

    def __init__(self) -> None:
        self.files: list[Path] = []
        self.codes: dict[str, MethodCode] = {}
        self.options: set[str] = set()
        self.exact: dict[int, Rule] = {}
        self.masks: dict[str, Rule] = {}
        self.private: dict[tuple[int, str, int], Rule] = {}
        self.private_all: Rule | None = None
        self.private_safe: Rule | None = None
        self.safe_private: set[tuple[int, str, int]] = set()
        self.defaults: dict[str, Rule] = {}
        self.settings: dict[str, Any] = {}
        self.sop: SopPolicy | None = None
        self.vocabulary: list[Path] = []

    def add(self, rule: Rule) -> None:
        sel = rule.selector
        if isinstance(sel, TagSelector):
            self.exact[sel.tag] = rule
        elif isinstance(sel, MaskSelector):
            self.masks[sel.text] = rule
        elif isinstance(sel, PrivateSelector):
            self.private[(sel.group, sel.creator, sel.offset)] = rule
        elif isinstance(sel, AllPrivate):
            self.private_all = rule
        elif isinstance(sel, SafePrivate):
            self.private_safe = rule


def resolve_profile_path(name_or_path: str | Path) -> Path:
    """A profile name (``research``) is looked up in ``rules/dicom``; a path is used as is."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    return rules_root() / "dicom" / f"{name_or_path}.yaml"


def load_profile(name_or_path: str | Path = "research") -> Profile:
    """Load a profile and everything it includes; raise :class:`RuleError` on any fault."""
    path = resolve_profile_path(name_or_path)
    if not path.exists():
        available = sorted(p.stem for p in (rules_root() / "dicom").glob("*.yaml"))
        raise RuleError(path, None, f"no such profile; available: {', '.join(available)}")
    builder = _Builder()
    top = _load_file(path.resolve(), builder, stack=())
    sop = builder.sop
    if sop is None:
        raise RuleError(
            path, top.line, "no 'sop_classes' file named by this profile or its includes"
        )
    vocabulary = load_vocabulary(builder.vocabulary) if builder.vocabulary else None
    digest = hashlib.sha256()
    for file in builder.files:
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    if vocabulary is not None:
        digest.update(b"vocabulary\0" + vocabulary.digest.encode())
    settings = builder.settings
    return Profile(
        name=str(top.get("name", path.stem)),
        title=str(top.get("title", "")),
        meets=str(top.get("meets", "")).strip(),
        files=tuple(builder.files),
        digest=digest.hexdigest(),
        codes=tuple(builder.codes.values()),
        options=frozenset(builder.options),
        exact=builder.exact,
        masks=tuple(builder.masks.values()),
        private=builder.private,
        private_all=builder.private_all,
        private_safe=builder.private_safe,
        safe_private=frozenset(builder.safe_private),
        defaults=builder.defaults,
        date_mode=settings.get("dates", DateMode.SHIFT),
        date_shift_days=settings.get("date_shift_days", (-3652, -366)),
        age_limit=settings.get("age_limit"),
        sop=sop,
        vocabulary=vocabulary,
    )


def _load_file(path: Path, builder: _Builder, stack: tuple[Path, ...]) -> Located:
    if path in stack:
        chain = " -> ".join(p.name for p in (*stack, path))
        raise RuleError(path, None, f"include cycle: {chain}")
    doc = load_yaml(path)
    check_keys(doc, allowed=_PROFILE_KEYS)
    if path not in builder.files:
        builder.files.append(path)

    includes = doc.get("include", [])
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise RuleError(path, doc.line, "'include' must be a list of file names")
    for name in includes:
        # Next to the including file first, then among the shipped rules, so a
        # site file kept anywhere can say `include: [research.yaml]`.
        shipped = rules_root() / "dicom"
        candidates = [path.parent / name, shipped / name, shipped / f"{name}.yaml"]
        child = next((c.resolve() for c in candidates if c.is_file()), None)
        if child is None:
            raise RuleError(
                path,
                doc.line,
                f"included file '{name}' not found next to {path.name} or in {shipped}",
            )
        _load_file(child, builder, (*stack, path))

    if "code" in doc:
        code = doc["code"]
        if not isinstance(code, Located) or {"value", "meaning"} - code.keys():
            raise RuleError(path, doc.line, "'code' must be {value: ..., meaning: ...}")
        when = doc.get("record_code", "always")
        if when not in ("always", "when_applied"):
            raise RuleError(path, doc.line, "'record_code' must be 'always' or 'when_applied'")
        builder.codes[str(code["value"])] = MethodCode(
            str(code["value"]), str(code["meaning"]), when == "when_applied"
        )
        if path.parent.name == "options":
            builder.options.add(str(doc.get("name", path.stem)))

    _load_settings(doc, path, builder)

    rules = doc.get("rules", [])
    if not isinstance(rules, list):
        raise RuleError(path, doc.line, "'rules' must be a list")
    for item in rules:
        builder.add(parse_rule(item, path))

    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        raise RuleError(path, doc.line, "'defaults' must map a VR to an action")
    for vr, action in defaults.items():
        if vr not in _VRS:
            raise RuleError(path, doc.line, f"'{vr}' in defaults is not a DICOM VR")
        builder.defaults[vr] = Rule(
            TagSelector(0),
            _action(action, path, doc.line),
            f"any {vr} no rule names",
            f"{path.name}:{doc.line}",
            default=True,
        )
    return doc


def _load_settings(doc: Located, path: Path, builder: _Builder) -> None:
    if "dates" in doc:
        try:
            builder.settings["dates"] = DateMode(doc["dates"])
        except ValueError:
            raise RuleError(path, doc.line, "'dates' must be 'shift' or 'year'") from None
    if "date_shift_days" in doc:
        span = doc["date_shift_days"]
        if (
            not isinstance(span, list)
            or len(span) != 2
            or not all(isinstance(v, int) for v in span)
            or span[0] > span[1]
        ):
            raise RuleError(path, doc.line, "'date_shift_days' must be [low, high] whole days")
        builder.settings["date_shift_days"] = (span[0], span[1])
    if "age_limit" in doc:
        limit = doc["age_limit"]
        if limit is not None and not isinstance(limit, int):
            raise RuleError(path, doc.line, "'age_limit' must be a whole number of years")
        builder.settings["age_limit"] = limit
    if "safe_private" in doc:
        builder.safe_private |= _load_safe_private((path.parent / doc["safe_private"]).resolve())
        builder.files.append((path.parent / doc["safe_private"]).resolve())
    if "vocabulary" in doc:
        builder.vocabulary = _vocabulary_files(doc["vocabulary"], path, doc.line)
    if "sop_classes" in doc:
        sop_path = (path.parent / doc["sop_classes"]).resolve()
        builder.sop = load_sop_policy(sop_path)
        builder.files.append(sop_path)


def _vocabulary_files(value: object, path: Path, line: int) -> list[Path]:
    """``vocabulary``: files or folders (every ``*.txt`` in it), next to the profile file
    or among the shipped rules."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuleError(path, line, "'vocabulary' must be a list of files or folders")
    files: list[Path] = []
    for entry in value:
        # Next to the file first, then among the shipped rules (as includes are found).
        target = (path.parent / entry).resolve()
        if not target.exists():
            target = (rules_root() / "dicom" / entry).resolve()
        if target.is_dir():
            files += sorted(target.glob("*.txt"))
        elif target.is_file():
            files.append(target)
        else:
            raise RuleError(path, line, f"vocabulary '{entry}' not found next to {path.name}")
    return files


def _action(value: object, path: Path, line: int) -> Action:
    try:
        return Action(value)
    except ValueError:
        choices = ", ".join(a.value for a in Action)
        raise RuleError(
            path, line, f"unknown action '{value}' (choose one of: {choices})"
        ) from None


def parse_rule(item: object, path: Path) -> Rule:
    """Validate one entry of a ``rules`` list."""
    if not isinstance(item, Located):
        raise RuleError(path, None, f"a rule must be a mapping, found {item!r}")
    check_keys(item, required={"action"}, allowed=_RULE_KEYS)
    chosen = [k for k in ("tag", "keyword", "private") if k in item]
    if len(chosen) != 1:
        raise RuleError(
            path, item.line, "a rule selects with exactly one of: tag, keyword, private"
        )
    kind = chosen[0]
    try:
        selector: Selector
        if kind == "tag":
            selector = parse_tag(str(item["tag"]))
        elif kind == "keyword":
            selector = parse_keyword(str(item["keyword"]))
        else:
            selector = parse_private(str(item["private"]))
    except ValueError as exc:
        raise RuleError(path, item.line, str(exc)) from None
    action = _action(item["action"], path, item.line)
    scope = item.get("scope", "element")
    if scope not in ("element", "group"):
        raise RuleError(path, item.line, "'scope' must be 'element' or 'group'")
    if scope == "group" and action not in (Action.REMOVE, Action.CLEAN):
        raise RuleError(
            path, item.line, "'scope: group' is only meaningful with action remove or clean"
        )
    pseudonym_kind = item.get("kind")
    if pseudonym_kind is not None and pseudonym_kind not in ("subject", "person", "id"):
        raise RuleError(path, item.line, "'kind' must be subject, person or id")
    return Rule(
        selector=selector,
        action=action,
        name=str(item.get("name", item.get("keyword", ""))),
        origin=f"{path.name}:{item.line}",
        whole_group=scope == "group",
        value=None if item.get("value") is None else str(item["value"]),
        kind=pseudonym_kind,
    )


def _load_safe_private(path: Path) -> set[tuple[int, str, int]]:
    doc = load_yaml(path)
    check_keys(doc, required={"safe_private"}, allowed=set())
    entries = doc["safe_private"]
    if not isinstance(entries, list):
        raise RuleError(path, doc.line, "'safe_private' must be a list")
    out: set[tuple[int, str, int]] = set()
    for entry in entries:
        if not isinstance(entry, Located):
            raise RuleError(path, doc.line, "each safe private entry must be a mapping")
        check_keys(entry, required={"private"}, allowed={"name", "why"})
        try:
            sel = parse_private(str(entry["private"]))
        except ValueError as exc:
            raise RuleError(path, entry.line, str(exc)) from None
        if not isinstance(sel, PrivateSelector):
            raise RuleError(path, entry.line, 'name one element: (gggg,"CREATOR",ee)')
        out.add((sel.group, sel.creator, sel.offset))
    return out


def load_sop_policy(path: Path) -> SopPolicy:
    doc = load_yaml(path)
    check_keys(doc, required={"allow", "burned_in"}, allowed={"allow_with_option", "name"})

    def uid_map(entries: object, where: Located) -> dict[str, str]:
        if not isinstance(entries, list):
            raise RuleError(path, where.line, "expected a list of {uid, name}")
        out: dict[str, str] = {}
        for entry in entries:
            if not isinstance(entry, Located) or "uid" not in entry:
                raise RuleError(path, where.line, "each entry needs a 'uid'")
            check_keys(entry, required={"uid"}, allowed={"name"})
            out[str(entry["uid"])] = str(entry.get("name", ""))
        return out

    with_option: dict[str, dict[str, str]] = {}
    extra = doc.get("allow_with_option", {})
    if not isinstance(extra, Located):
        raise RuleError(path, doc.line, "'allow_with_option' maps an option name to a list")
    for option, entries in extra.items():
        with_option[option] = uid_map(entries, extra)
    burned = doc["burned_in"]
    if not isinstance(burned, Located):
        raise RuleError(path, doc.line, "'burned_in' must be a mapping")
    check_keys(burned, allowed={"sop_classes", "modalities", "image_types"})
    image_types = burned.get("image_types", [])
    if not isinstance(image_types, list) or not all(isinstance(t, list) for t in image_types):
        raise RuleError(path, burned.line, "'image_types' must be a list of value lists")
    return SopPolicy(
        allowed=uid_map(doc["allow"], doc),
        allowed_with_option=with_option,
        burned_in_sop_classes=uid_map(burned.get("sop_classes", []), burned),
        burned_in_modalities=frozenset(str(m).upper() for m in burned.get("modalities", [])),
        burned_in_image_types=tuple(frozenset(str(v).upper() for v in t) for t in image_types),
        origin=path.name,
    )
