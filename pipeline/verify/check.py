"""The check itself: every output of a run against every identifier of its inputs.

:func:`check_outputs` reads each output with :mod:`pipeline.verify.readers`
and each value it holds with the run's one compiled
:class:`~pipeline.verify.matcher.Matcher`, and the path the output will be
published under too.  It returns a :class:`LeakHit` per kind of identifier
and place: the output's opaque key, the kind, and a location, never the
value, so a hit may go into a log, a run record or a Prefect state.  An
output that cannot be read is a hit as well
(:attr:`~pipeline.verify.identifiers.IdentifierKind.UNREADABLE_OUTPUT`):
what was not read was not checked, and must not be published.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.verify.identifiers import IdentifierKind, Identifiers
from pipeline.verify.matcher import Matcher, ValueClass
from pipeline.verify.readers import UnreadableOutput, read_values

__all__ = ["LeakHit", "check_output", "check_outputs"]

_MAX_LABEL = 64


@dataclass(frozen=True, slots=True)
class LeakHit:
    """An identifying value of the run's inputs, found in one output.

    Attributes
    ----------
    output : str
        The opaque key the caller gave for the output.
    kind : IdentifierKind
        What kind of value was found.
    where : str
        Where in the output: ``path``, ``(0008,103E)``,
        ``(0029,1010)>item 2>(0010,0010)``, ``hdf5:/dataset/xml>...``,
        ``hdf5 attribute patient_id``, ``parquet column subject row 4``,
        ``csv column #3 row 4``, ``json $.resources[0].path``, ``line 12``.
        A location only: never the value, nor a name that would be a hit.
    """

    output: str
    kind: IdentifierKind
    where: str

    def __str__(self) -> str:
        return f"{self.output}: {self.kind.value} at {self.where}"


def check_outputs(
    outputs: Iterable[tuple[str, Path, str]], identifiers: Identifiers
) -> list[LeakHit]:
    """Every place in ``outputs`` where a value of ``identifiers`` appears.

    Parameters
    ----------
    outputs : iterable of (str, Path, str)
        (opaque key, the file to read, the release-relative path it will be
        published under) for each output of the run.
    identifiers : Identifiers
        What the run's inputs hold (:func:`~pipeline.verify.inputs.collect_identifiers`).

    Returns
    -------
    list of LeakHit
        Empty when nothing leaked.  In the order of ``outputs``, then of the
        places in each; one hit per kind and place.
    """
    matcher = Matcher.of(identifiers)
    hits: list[LeakHit] = []
    for key, path, release_path in outputs:
        hits += check_output(key, path, release_path, matcher)
    return hits


def check_output(key: str, path: Path, release_path: str, matcher: Matcher) -> list[LeakHit]:
    """The hits of one output (see :func:`check_outputs`)."""
    found: dict[tuple[IdentifierKind, str], None] = {}
    for kind in sorted(matcher.scan(release_path, ValueClass.TEXT, "path"), key=_by_value):
        found[(kind, "path")] = None

    def label(name: str, fallback: str) -> str:
        shown = name.isprintable() and 0 < len(name) <= _MAX_LABEL
        return name if shown and not matcher.hits(name) else fallback

    try:
        for where, field, text, cls in read_values(path, label, matcher.number_keywords):
            kinds = matcher.scan(text, cls, field)
            if kinds:
                for kind in sorted(kinds, key=_by_value):
                    found[(kind, where)] = None
    except Exception as exc:  # the boundary: whatever stopped the reading, the output fails
        found[(IdentifierKind.UNREADABLE_OUTPUT, _unreadable(exc))] = None
    return [LeakHit(key, kind, where) for kind, where in found]


def _unreadable(exc: Exception) -> str:
    """Where an unreadable output failed, without the message (it may quote a value or path)."""
    if isinstance(exc, UnreadableOutput):
        return f"file (not readable as {exc.what})"
    if isinstance(exc, OSError) and exc.errno:
        return f"file ({errno.errorcode.get(exc.errno, str(exc.errno))})"
    return f"file ({type(exc).__name__})"


def _by_value(kind: IdentifierKind) -> str:
    return kind.value
