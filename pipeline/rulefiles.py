"""Reading rule files: YAML that remembers where each mapping came from.

All rule kinds (DICOM, ISMRMRD header, pixel regions) load through here so a
typo fails the same way everywhere: :class:`~pipeline.errors.RuleError` with
the file, the line and what is wrong.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import RuleError


class Located(dict[str, Any]):
    """A mapping from a rule file that knows its file and 1-based line."""

    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path}:{self.line}"


# libyaml's parser when PyYAML was built with it: same nodes and marks, faster.
_BASE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _loader_for(path: Path) -> type[yaml.SafeLoader]:
    class _Loader(_BASE_LOADER):  # type: ignore[valid-type,misc]
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Located:
        loader.flatten_mapping(node)
        mapping = Located()
        mapping.path = path
        mapping.line = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise RuleError(path, key_node.start_mark.line + 1, f"key {key!r} must be text")
            if key in mapping:
                raise RuleError(path, key_node.start_mark.line + 1, f"duplicate key '{key}'")
            mapping[key] = loader.construct_object(value_node, deep=True)
        return mapping

    _Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return _Loader


def load_yaml(path: Path) -> Located:
    """Parse one rule file whose top level is a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuleError(path, None, "rule file not found") from None
    except UnicodeDecodeError as exc:
        raise RuleError(path, None, f"not UTF-8 text ({exc.reason})") from None
    try:
        data = yaml.load(text, Loader=_loader_for(path))
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise RuleError(path, line, f"YAML syntax: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise RuleError(path, None, f"YAML syntax: {exc}") from None
    if not isinstance(data, Located):
        raise RuleError(path, 1, "the top level must be a mapping of keys to values")
    return data


def check_keys(
    mapping: Located, *, required: frozenset[str] | set[str] = frozenset(), allowed: set[str]
) -> None:
    """Fail with file and line on a missing or unknown key."""
    missing = sorted(required - mapping.keys())
    if missing:
        raise RuleError(mapping.path, mapping.line, f"missing key(s): {', '.join(missing)}")
    unknown = sorted(mapping.keys() - allowed - required)
    if unknown:
        raise RuleError(
            mapping.path,
            mapping.line,
            f"unknown key(s): {', '.join(unknown)} (allowed: {', '.join(sorted(allowed | required))})",
        )


def rules_root() -> Path:
    """Where the shipped rule files are: ``$MRICURATE_RULES``, the wheel, or the repo."""
    override = os.environ.get("MRICURATE_RULES")
    if override:
        return Path(override)
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / "rules", here.parent / "rules"):
        if candidate.is_dir():
            return candidate
    raise RuleError(here, None, "rule folder not found; set MRICURATE_RULES to the rules/ folder")


def data_contracts_root() -> Path:
    """Where the shipped schemas are: ``$MRICURATE_DATA_CONTRACTS``, the wheel, or the repo."""
    override = os.environ.get("MRICURATE_DATA_CONTRACTS")
    if override:
        return Path(override)
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / "data_contracts", here.parent / "data_contracts"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "data_contracts folder not found; set MRICURATE_DATA_CONTRACTS to the data_contracts/ folder"
    )
