"""A value that may hold PHI, typed so that nothing prints it by accident.

Paths, library error messages and the words OCR read can all carry a
patient's name.  Such a value travels wrapped in :class:`Phi`: ``str()``,
``repr()``, f-strings, logging and pickled-then-printed results all show
``<phi>``; only :meth:`Phi.reveal`, called where the value is written to
the private location, gives it back.  A type, not a convention: a new log
line cannot leak what it cannot format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

_SHOWN = "<phi>"


@dataclass(frozen=True, slots=True)
class Phi(Generic[T]):
    """Holds ``value``; refuses to show it except through :meth:`reveal`."""

    _value: T

    def reveal(self) -> T:
        """The value itself: only for the private location."""
        return self._value

    def __repr__(self) -> str:
        return _SHOWN

    def __str__(self) -> str:
        return _SHOWN

    def __format__(self, spec: str) -> str:
        return _SHOWN

    def __bool__(self) -> bool:
        return bool(self._value)


NO_DETAIL: Phi[str] = Phi("")
