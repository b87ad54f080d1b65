"""The public reference data in ``../shared/reference``, or a skip that says it is missing.

The folder sits beside the repository (CI has it; a fresh clone does not), so
every test that reads it goes through this module: with the folder absent
such a test is *skipped* with the reason below, never failed, and never
quietly shrunk to the cases that happen to be present.

- :func:`reference_path` inside a test or fixture: the path, or a skip;
- :func:`needs_reference` as a decorator (``@needs_reference("twix", "gre.dat")``):
  the ``reference`` marker and a skip when the file is absent;
- :func:`reference_marks` for ``pytestmark`` or ``pytest.param(..., marks=...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

# tests/reference.py -> tests -> the repository -> its parent, which holds shared/.
ROOT = Path(__file__).resolve().parents[2] / "shared" / "reference"
ABSENT = "../shared/reference is not present"

T = TypeVar("T")


def _reason(parts: tuple[str, ...]) -> str:
    return f"{ABSENT} (needs {'/'.join(parts)})" if parts else ABSENT


def _present(parts: tuple[str, ...]) -> bool:
    return ROOT.joinpath(*parts).exists()


def reference_path(*parts: str) -> Path:
    """``ROOT/parts``; skips the calling test when it does not exist."""
    path = ROOT.joinpath(*parts)
    if not path.exists():
        pytest.skip(_reason(parts))
    return path


def reference_marks(*parts: str) -> list[pytest.MarkDecorator]:
    """The ``reference`` marker and a skip when ``ROOT/parts`` does not exist."""
    return [
        pytest.mark.reference,
        pytest.mark.skipif(not _present(parts), reason=_reason(parts)),
    ]


def needs_reference(*parts: str) -> Callable[[T], T]:
    """Decorator: :func:`reference_marks` applied to a test function or class."""

    def apply(test: T) -> T:
        for mark in reference_marks(*parts):
            test = mark(test)  # type: ignore[assignment]  # a mark returns what it decorates
        return test

    return apply
