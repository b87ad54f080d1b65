"""Anonymize an ISMRMRD header by an allowlist: what no rule names is dropped.

The rules (``rules/ismrmrd/header.yaml``) name ISMRMRD elements by their
path below the root (``studyInformation/studyDate``) and say how each
survives: keep, remove, pseudonym, shift, dummy, uid or clean.  Everything
else goes — elements of other converters the schema does not know, every
``userParameter`` whose name no rule lists, attributes, comments — so a new
field in some converter's output can never leak by default.

The derivations are the DICOM side's: the subject pseudonym and day shift of
:mod:`pipeline.identity.subjects`, UIDs through :class:`~pipeline.identity.uids.UidMapper`
and the free-text cleaner of :mod:`pipeline.identity.clean`, so one key links a
subject's raw and DICOM data in a release.
"""

from __future__ import annotations

import enum
import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.errors import RuleError
from pipeline.identity.clean import PhiTerms, clean_text
from pipeline.identity.dates import DateFormatError, shift_da
from pipeline.identity.uids import UidMapper
from pipeline.identity.vocabulary import Vocabulary, load_vocabulary
from pipeline.keys import SecretKey
from pipeline.raw.protocol import NAMESPACE, parse_header_xml
from pipeline.rulefiles import Located, check_keys, load_yaml, rules_root

_NS = f"{{{NAMESPACE}}}"
# Repeated name/value entries: selected by their <name>, never kept wholesale.
USER_PARAMETER_TAGS = frozenset(
    {"userParameterLong", "userParameterDouble", "userParameterString", "userParameterBase64"}
)
_XS_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(Z|[+-]\d{2}:\d{2})?$")


class HeaderAction(enum.Enum):
    """What happens to one element (see ``rules/ismrmrd/header.yaml``)."""

    KEEP = "keep"  # unchanged; on a complex element, every schema element below it too
    REMOVE = "remove"  # dropped (the default; named to document a decision)
    PSEUDONYM = "pseudonym"  # keyed pseudonym: the subject's, or of the value in a named kind
    SHIFT = "shift"  # xs:date moved by the subject's day offset
    DUMMY = "dummy"  # a fixed value from the rule (for required elements)
    UID = "uid"  # keyed UID, the same map as the DICOM side
    CLEAN = "clean"  # free text without the header's own PHI and generic identifiers


_LEAF_ONLY = frozenset(HeaderAction) - {HeaderAction.KEEP, HeaderAction.REMOVE}


@dataclass(frozen=True)
class HeaderRule:
    """One line of the rule file."""

    path: str
    action: HeaderAction
    names: frozenset[str] = frozenset()  # userParameter names this rule selects ("*": any)
    value: str | None = None  # dummy's value
    kind: str | None = None  # pseudonym's domain: "subject" or a label such as "measurement"
    source: str = ""  # "file:line", for audits and errors

    def describe(self) -> str:
        selected = f"[{','.join(sorted(self.names))}]" if self.names else ""
        return f"{self.path}{selected}: {self.action.value} ({self.source})"


@dataclass(frozen=True)
class HeaderRules:
    """A validated rule set, indexed for application."""

    name: str
    path: Path
    digest: str  # SHA-256 of the rule file: records which rules made a release
    rules: tuple[HeaderRule, ...]
    by_path: Mapping[str, HeaderRule] = field(repr=False)
    by_parameter: Mapping[tuple[str, str], HeaderRule] = field(repr=False)
    ancestors: frozenset[str] = field(repr=False)  # paths with a rule somewhere below
    vocabulary: Vocabulary | None = None  # the words `clean` keeps


@dataclass(frozen=True)
class HeaderContext:
    """The subject's keyed derivations, as the DICOM side computes them."""

    key: SecretKey
    subject_pseudonym: str
    day_offset: int
    uids: UidMapper


# --- the schema's element tree ---------------------------------------------------


@dataclass(frozen=True)
class _SchemaElement:
    complex: bool
    required_children: tuple[str, ...]  # local names with minOccurs >= 1


@lru_cache(maxsize=1)
def schema_paths() -> Mapping[str, _SchemaElement]:
    """Every element path the ISMRMRD schema allows, below ``ismrmrdHeader``."""
    from pipeline.raw.xsd import ismrmrd_schema

    paths: dict[str, _SchemaElement] = {}

    def walk(element: Any, prefix: str) -> None:
        for child in element.iterchildren():
            path = f"{prefix}/{child.local_name}" if prefix else child.local_name
            children = list(child.iterchildren()) if child.type.is_complex() else []
            required = tuple(c.local_name for c in children if c.min_occurs >= 1)
            paths[path] = _SchemaElement(child.type.is_complex() and bool(children), required)
            walk(child, path)

    root = ismrmrd_schema().elements["ismrmrdHeader"]
    walk(root, "")
    required = tuple(c.local_name for c in root.iterchildren() if c.min_occurs >= 1)
    paths[""] = _SchemaElement(True, required)
    return paths


# --- loading ---------------------------------------------------------------------


def default_rules_path() -> Path:
    return rules_root() / "ismrmrd" / "header.yaml"


def _rule(entry: Any, path: Path, index: int, top: Located) -> HeaderRule:
    if not isinstance(entry, Located):
        # A scalar has no line of its own: one rule a line, it follows the rule before it.
        before = top["rules"][index - 1] if index else None
        line = before.line + 1 if isinstance(before, Located) else top.line
        raise RuleError(path, line, f"rule {index + 1} must be a mapping with 'path' and 'action'")
    check_keys(entry, required={"path", "action"}, allowed={"name", "value", "kind"})
    element = entry["path"]
    if not isinstance(element, str) or not element.strip("/"):
        raise RuleError(
            path, entry.line, "'path' must be an element path such as studyInformation/studyDate"
        )
    element = element.strip("/")
    schema = schema_paths()
    if element not in schema:
        raise RuleError(
            path, entry.line, f"unknown element path '{element}' (not in the ISMRMRD schema)"
        )
    try:
        action = HeaderAction(entry["action"])
    except ValueError:
        allowed = ", ".join(a.value for a in HeaderAction)
        raise RuleError(
            path, entry.line, f"unknown action '{entry['action']}' (allowed: {allowed})"
        ) from None
    leaf = element.rsplit("/", 1)[-1]
    names: frozenset[str] = frozenset()
    if leaf in USER_PARAMETER_TAGS:
        raw = entry.get("name")
        listed: list[Any] = raw if isinstance(raw, list) else [raw]
        if raw is None or not all(isinstance(n, str) and n for n in listed):
            raise RuleError(
                path,
                entry.line,
                f"a {leaf} rule needs 'name': a parameter name, a list of them, or '*'",
            )
        names = frozenset(str(n) for n in listed)
        if action not in (HeaderAction.KEEP, HeaderAction.REMOVE):
            raise RuleError(path, entry.line, f"a {leaf} rule can only keep or remove")
    elif "name" in entry:
        raise RuleError(path, entry.line, "'name' selects userParameter entries only")
    elif schema[element].complex and action in _LEAF_ONLY:
        raise RuleError(
            path, entry.line, f"'{action.value}' needs a value element; '{element}' has children"
        )
    value = entry.get("value")
    if action is HeaderAction.DUMMY:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool) or str(value) == "":
            raise RuleError(path, entry.line, "'dummy' needs a 'value'")
    elif value is not None and action is not HeaderAction.CLEAN:
        raise RuleError(
            path,
            entry.line,
            "'value' is only for dummy, and for clean (what is left when nothing is)",
        )
    kind = entry.get("kind")
    if action is HeaderAction.PSEUDONYM:
        if not isinstance(kind, str) or not re.fullmatch(r"[a-z][a-z0-9_-]*", kind):
            raise RuleError(
                path, entry.line, "'pseudonym' needs 'kind': subject, or a lower-case label"
            )
    elif kind is not None:
        raise RuleError(path, entry.line, "'kind' is only for the pseudonym action")
    return HeaderRule(
        element, action, names, None if value is None else str(value), kind, f"{path}:{entry.line}"
    )


def load_header_rules(path: Path | None = None) -> HeaderRules:
    """Load and check a header rule file (default ``rules/ismrmrd/header.yaml``).

    Raises
    ------
    RuleError
        With file and line, for a typo, an unknown action or element path, a
        rule given twice, or a rule set whose output could not be valid (an
        element kept while a child the schema requires is dropped).
    """
    path = path or default_rules_path()
    top = load_yaml(path)
    check_keys(top, required={"name", "rules"}, allowed={"title", "vocabulary"})
    if not isinstance(top["rules"], list) or not top["rules"]:
        raise RuleError(path, top.line, "'rules' must be a non-empty list")
    rules = tuple(_rule(entry, path, i, top) for i, entry in enumerate(top["rules"]))
    by_path: dict[str, HeaderRule] = {}
    by_parameter: dict[tuple[str, str], HeaderRule] = {}
    for rule in rules:
        line = int(rule.source.rsplit(":", 1)[1])
        if rule.names:
            for name in rule.names:
                if (rule.path, name) in by_parameter:
                    raise RuleError(
                        path,
                        line,
                        f"{rule.path} '{name}' has a rule already ({by_parameter[(rule.path, name)].source})",
                    )
                by_parameter[(rule.path, name)] = rule
        else:
            if rule.path in by_path:
                raise RuleError(
                    path, line, f"'{rule.path}' has a rule already ({by_path[rule.path].source})"
                )
            by_path[rule.path] = rule
    ancestors = frozenset(
        "/".join(r.path.split("/")[:i])
        for r in rules
        if r.action is not HeaderAction.REMOVE
        for i in range(len(r.path.split("/")))
    )
    vocabulary = _vocabulary(top, path)
    digest = hashlib.sha256(path.read_bytes())
    if vocabulary is not None:
        digest.update(b"vocabulary\0" + vocabulary.digest.encode())
    result = HeaderRules(
        str(top["name"]), path, digest.hexdigest(), rules, by_path, by_parameter, ancestors,
        vocabulary,
    )  # fmt: skip
    _check_required(result)
    return result


def _vocabulary(top: Located, path: Path) -> Vocabulary | None:
    """``vocabulary``: files or folders of words ``clean`` keeps (as the DICOM profiles)."""
    entries = top.get("vocabulary")
    if entries is None:
        return None
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise RuleError(path, top.line, "'vocabulary' must be a list of files or folders")
    files: list[Path] = []
    for entry in entries:
        target = (path.parent / entry).resolve()
        if not target.exists():  # a copied rule file still finds the shipped words
            target = (rules_root() / "ismrmrd" / entry).resolve()
        if target.is_dir():
            files += sorted(target.glob("*.txt"))
        elif target.is_file():
            files.append(target)
        else:
            raise RuleError(path, top.line, f"vocabulary '{entry}' not found next to {path.name}")
    return load_vocabulary(files)


def _survives(rules: HeaderRules, element: str) -> bool:
    """Whether an element present in the input can reach the output under these rules."""
    parts = element.split("/")
    for i in range(len(parts), 0, -1):
        rule = rules.by_path.get("/".join(parts[:i]))
        if rule is not None:
            if rule.action is HeaderAction.REMOVE:
                return False
            if i == len(parts) or rule.action is HeaderAction.KEEP:
                return parts[-1] not in USER_PARAMETER_TAGS or i == len(parts)
    return element in rules.ancestors


def _check_required(rules: HeaderRules) -> None:
    """Every surviving element keeps the children the schema requires of it."""
    schema = schema_paths()
    for element in sorted(rules.ancestors | set(rules.by_path)):
        if element and not _survives(rules, element):
            continue
        for child in schema[element].required_children:
            child_path = f"{element}/{child}" if element else child
            if not _survives(rules, child_path):
                rule = rules.by_path.get(element) or next(
                    (r for r in rules.rules if r.path.startswith(f"{element}/") or not element),
                    rules.rules[0],
                )
                raise RuleError(
                    rules.path, int(rule.source.rsplit(":", 1)[1]),
                    f"'{child_path}' is required by the ISMRMRD schema wherever "
                    f"'{element or 'ismrmrdHeader'}' is kept: keep it or give it a dummy",
                )  # fmt: skip


# --- applying --------------------------------------------------------------------


def _local(tag: Any) -> str:
    return str(tag).rsplit("}", 1)[-1]


def _xs_date_shift(value: str, days: int) -> str | None:
    match = _XS_DATE.match(value.strip())
    if not match:
        return None
    year, month, day, zone = match.groups()
    try:
        shifted = shift_da(f"{year}{month}{day}", days)
    except DateFormatError:
        return None
    return f"{shifted[:4]}-{shifted[4:6]}-{shifted[6:]}{zone or ''}"


def _phi_terms(root: ET.Element) -> PhiTerms:
    """The header's own identifying values, to find them inside free text."""
    values: dict[str, list[str]] = {}
    for element in root.iter():
        text = (element.text or "").strip()
        if text:
            values.setdefault(_local(element.tag), []).append(text)

    def get(*names: str) -> list[str]:
        return [v for n in names for v in values.get(n, [])]

    dates = []
    for value in get("patientBirthdate", "studyDate", "seriesDate"):
        match = _XS_DATE.match(value)
        if match:
            dates.append("".join(match.groups()[:3]))
    return PhiTerms.build(
        get("patientName", "referringPhysicianName"),
        get("patientID", "accessionNumber", "studyID", "institutionName", "stationName",
            "deviceID", "deviceSerialNumber", "measurementID", "studyInstanceUID"),
        dates,
    )  # fmt: skip


class _Anonymizer:
    def __init__(self, rules: HeaderRules, context: HeaderContext, terms: PhiTerms) -> None:
        self.rules = rules
        self.context = context
        self.terms = terms
        self.schema = schema_paths()

    def value(self, rule: HeaderRule, text: str) -> str | None:
        """The new text of a leaf, or None to drop it."""
        action, ctx = rule.action, self.context
        if action is HeaderAction.KEEP:
            return text
        if action is HeaderAction.DUMMY:
            return rule.value
        stripped = text.strip()
        if not stripped:
            return None
        if action is HeaderAction.PSEUDONYM:
            if rule.kind == "subject":
                return ctx.subject_pseudonym
            kind = rule.kind or "value"
            return ctx.key.pseudonym(f"ismrmrd-{kind}", stripped, prefix=f"{kind[:4].upper()}-")
        if action is HeaderAction.SHIFT:
            return _xs_date_shift(stripped, ctx.day_offset)
        if action is HeaderAction.UID:
            return ctx.uids.remap(stripped)
        if action is HeaderAction.CLEAN:
            # A required element cleaned to nothing takes the rule's value, if it has one.
            return clean_text(stripped, self.terms, self.rules.vocabulary) or rule.value
        return None

    def copy(self, source: ET.Element, path: str, keep_all: bool) -> ET.Element | None:
        """The surviving copy of ``source`` at ``path`` (None when nothing of it survives)."""
        if path not in self.schema:
            return None  # not an ISMRMRD element: another converter's extension
        tag = _local(source.tag)
        if tag in USER_PARAMETER_TAGS:
            name = next((c.text or "" for c in source if _local(c.tag) == "name"), "").strip()
            rule = self.rules.by_parameter.get((path, name)) or self.rules.by_parameter.get(
                (path, "*")
            )
            if rule is None or rule.action is not HeaderAction.KEEP:
                return None
            return self.clone(source, path, keep_all=True, parameters=True)
        rule = self.rules.by_path.get(path)
        if rule is not None:
            if rule.action is HeaderAction.REMOVE:
                return None
            keep_all = rule.action is HeaderAction.KEEP
            if not self.schema[path].complex:
                new = self.value(rule, source.text or "")
                if new is None:
                    return None
                element = ET.Element(_NS + tag)
                element.text = new
                return element
        if keep_all and not self.schema[path].complex:
            element = ET.Element(_NS + tag)
            element.text = source.text
            return element
        if not keep_all and path not in self.rules.ancestors:
            return None
        return self.clone(source, path, keep_all)

    def clone(
        self, source: ET.Element, path: str, keep_all: bool, parameters: bool = False
    ) -> ET.Element | None:
        element = ET.Element(_NS + _local(source.tag))
        for child in source:
            if not isinstance(child.tag, str):
                continue  # comments and processing instructions
            child_path = f"{path}/{_local(child.tag)}"
            if parameters:  # inside a kept userParameter entry: its name and value
                if child_path in self.schema:
                    copy = ET.Element(_NS + _local(child.tag))
                    copy.text = child.text
                    element.append(copy)
                continue
            kept = self.copy(child, child_path, keep_all)
            if kept is not None:
                element.append(kept)
        if len(element) == 0 and self.schema[path].complex and not keep_all:
            return None  # a container only rules below it kept, and none of them matched
        return element


def anonymize_header(xml: str, rules: HeaderRules, context: HeaderContext) -> str:
    """The header with only what ``rules`` allow, in the ISMRMRD namespace.

    Attributes, comments, processing instructions, elements the ISMRMRD
    schema does not define and user parameters no rule names are dropped.
    The result is meant to be checked with
    :func:`pipeline.raw.xsd.validate_header` before it is written.

    Raises
    ------
    UnreadableInput
        If ``xml`` is not well-formed (the message does not quote it).
    """
    source = parse_header_xml(xml)
    anonymizer = _Anonymizer(rules, context, _phi_terms(source))
    root = ET.Element(_NS + "ismrmrdHeader")
    for child in source:
        if isinstance(child.tag, str):
            kept = anonymizer.copy(child, _local(child.tag), keep_all=False)
            if kept is not None:
                root.append(kept)
    _ensure_subject(root, rules, context)
    ET.register_namespace("", NAMESPACE)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _ensure_subject(root: ET.Element, rules: HeaderRules, context: HeaderContext) -> None:
    """Write the subject pseudonym even where the input had no patient ID.

    Files of other converters often carry none (the subject was found from
    DICOM UIDs or a mapping file); the release should still say whose data
    it is, as every DICOM file of the subject does.
    """
    rule = rules.by_path.get("subjectInformation/patientID")
    if rule is None or rule.action is not HeaderAction.PSEUDONYM or rule.kind != "subject":
        return
    subject = root.find(f"{_NS}subjectInformation")
    if subject is None:
        subject = ET.Element(f"{_NS}subjectInformation")
        first = root.find(f"{_NS}version")
        root.insert(0 if first is None else list(root).index(first) + 1, subject)
    if subject.find(f"{_NS}patientID") is None:
        ET.SubElement(subject, f"{_NS}patientID").text = context.subject_pseudonym
