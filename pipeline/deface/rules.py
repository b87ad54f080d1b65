"""The defacing rules (``rules/deface/head.yaml``): which series are heads, how, and when trusted.

One loader, one typed result: an unknown key, a wrong type or a value out of
range fails with :class:`~pipeline.errors.RuleError` naming the file and the
line, before any run reads a file.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pipeline.errors import RuleError
from pipeline.rulefiles import Located, check_keys, load_yaml, rules_root

E = TypeVar("E", bound=enum.Enum)


class DefaceAction(enum.Enum):
    """What is done to the voxels under the warped face mask."""

    REMOVE = "remove"  # the series' background value
    BLUR = "blur"  # a Gaussian blur of the volume


class HeadKspace(enum.Enum):
    """What happens to raw k-space of a head scan (it cannot be defaced)."""

    HOLD = "hold"  # to the review queue; released only when a reviewer approves
    RELEASE = "release"  # released like any raw data (the IRB decided so)


@dataclass(frozen=True)
class HeadRules:
    """Which series are head volumes: anatomy (body part, name words) and geometry."""

    modalities: frozenset[str]
    body_parts: frozenset[str]
    anatomy_words: frozenset[str]
    min_slices: int
    min_extent_mm: tuple[float, float, float]  # left-right, anterior-posterior, superior-inferior


@dataclass(frozen=True)
class Registration:
    resolution_mm: float
    iterations: int
    sampling: float


@dataclass(frozen=True)
class Quality:
    min_brain_inside_head: float
    max_head_outside_template: float
    max_template_outside_head: float
    max_brain_removed: float
    max_head_removed: float


@dataclass(frozen=True)
class DefaceRules:
    """The effective defacing rules, with where they came from (for ``rules show``)."""

    path: Path
    digest: str
    head: HeadRules
    head_kspace: HeadKspace
    action: DefaceAction
    blur_sigma_mm: float
    registration: Registration
    quality: Quality
    origins: dict[str, str]  # setting -> "file:line"

    def table(self) -> list[tuple[str, str, str]]:
        """(setting, value, file:line) rows, for ``mricurate rules show``."""
        h, r, q = self.head, self.registration, self.quality
        values = {
            "head.modalities": ", ".join(sorted(h.modalities)),
            "head.body_parts": ", ".join(sorted(h.body_parts)),
            "head.anatomy_words": ", ".join(sorted(h.anatomy_words)),
            "head.min_slices": str(h.min_slices),
            "head.min_extent_mm": "L-R {:g}, A-P {:g}, S-I {:g}".format(*h.min_extent_mm),
            "raw.head_kspace": self.head_kspace.value,
            "method.action": self.action.value,
            "method.blur_sigma_mm": f"{self.blur_sigma_mm:g}",
            "registration.resolution_mm": f"{r.resolution_mm:g}",
            "registration.iterations": str(r.iterations),
            "registration.sampling": f"{r.sampling:g}",
            "quality.min_brain_inside_head": f"{q.min_brain_inside_head:g}",
            "quality.max_head_outside_template": f"{q.max_head_outside_template:g}",
            "quality.max_template_outside_head": f"{q.max_template_outside_head:g}",
            "quality.max_brain_removed": f"{q.max_brain_removed:g}",
            "quality.max_head_removed": f"{q.max_head_removed:g}",
        }
        return [(name, value, self.origins[name]) for name, value in values.items()]


def default_rules_path() -> Path:
    return rules_root() / "deface" / "head.yaml"


def load_deface_rules(path: Path | None = None) -> DefaceRules:
    """Load and validate ``rules/deface/head.yaml`` (or ``path``)."""
    path = path or default_rules_path()
    doc = load_yaml(path)
    check_keys(doc, required={"head", "raw", "method", "registration", "quality"}, allowed=set())
    origins: dict[str, str] = {}
    head = _section(doc, "head", {"modalities", "body_parts", "anatomy_words", "min_slices",
                                  "min_extent_mm"})  # fmt: skip
    extent = _section(head, "min_extent_mm",
                      {"left_right", "anterior_posterior", "superior_inferior"})  # fmt: skip
    raw = _section(doc, "raw", {"head_kspace"})
    method = _section(doc, "method", {"action", "blur_sigma_mm"})
    reg = _section(doc, "registration", {"resolution_mm", "iterations", "sampling"})
    quality = _section(doc, "quality", {"min_brain_inside_head", "max_head_outside_template",
                                        "max_template_outside_head", "max_brain_removed",
                                        "max_head_removed"})  # fmt: skip
    for prefix, section in (("head", head), ("raw", raw), ("method", method),
                            ("registration", reg), ("quality", quality)):  # fmt: skip
        for key in section:
            origins[f"{prefix}.{key}"] = f"{section.path.name}:{section.line}"
    rules = DefaceRules(
        path=path,
        digest=hashlib.sha256(path.read_bytes()).hexdigest(),
        head=HeadRules(
            modalities=frozenset(w.upper() for w in _words(head, "modalities")),
            body_parts=frozenset(w.upper() for w in _words(head, "body_parts")),
            anatomy_words=frozenset(w.lower() for w in _words(head, "anatomy_words")),
            min_slices=int(_number(head, "min_slices", 1, 100000, integer=True)),
            min_extent_mm=tuple(  # type: ignore[arg-type]
                _number(extent, k, 0, 1000)
                for k in ("left_right", "anterior_posterior", "superior_inferior")
            ),
        ),
        head_kspace=_choice(raw, "head_kspace", HeadKspace),
        action=_choice(method, "action", DefaceAction),
        blur_sigma_mm=_number(method, "blur_sigma_mm", 0.5, 50),
        registration=Registration(
            resolution_mm=_number(reg, "resolution_mm", 1, 10),
            iterations=int(_number(reg, "iterations", 10, 2000, integer=True)),
            sampling=_number(reg, "sampling", 0.01, 1),
        ),
        quality=Quality(
            min_brain_inside_head=_number(quality, "min_brain_inside_head", 0, 1),
            max_head_outside_template=_number(quality, "max_head_outside_template", 0, 1),
            max_template_outside_head=_number(quality, "max_template_outside_head", 0, 1),
            max_brain_removed=_number(quality, "max_brain_removed", 0, 1),
            max_head_removed=_number(quality, "max_head_removed", 0, 1),
        ),
        origins=origins,
    )
    return rules


def _section(parent: Located, key: str, keys: set[str]) -> Located:
    value = parent.get(key)
    if not isinstance(value, Located):
        raise RuleError(parent.path, parent.line, f"'{key}' must be a mapping")
    check_keys(value, required=keys, allowed=set())
    return value


def _words(section: Located, key: str) -> list[str]:
    value = section[key]
    if not isinstance(value, list) or not value or not all(isinstance(w, str) for w in value):
        raise RuleError(section.path, section.line, f"'{key}' must be a non-empty list of words")
    return [w.strip() for w in value]


def _number(section: Located, key: str, low: float, high: float, *, integer: bool = False) -> float:
    value = section[key]
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "a whole number" if integer else "a number"
        raise RuleError(
            section.path, section.line, f"'{key}' must be {kind} from {low:g} to {high:g}"
        )
    return float(value)


def _choice(section: Located, key: str, kind: type[E]) -> E:
    value = section[key]
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in kind)
        raise RuleError(section.path, section.line, f"'{key}' must be one of: {allowed}") from None
