"""Refuse, before anything is written, a layout that could release PHI or eat its own output.

Paths are compared resolved, so a location reached through a symbolic link
into another counts as inside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipeline.errors import LocationError


def _nested(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def check_locations(
    source: Path,
    outputs: Mapping[str, Path],
    private: Path,
    key_file: Path | None = None,
    *,
    staged: bool = False,
) -> None:
    """Raise :class:`LocationError` for an unsafe layout.

    Parameters
    ----------
    source : Path
        SOURCE (read only).
    outputs : Mapping[str, Path]
        The folders written, by the name the user knows them by
        (``OUTPUT``, ``--fastmri``).
    private : Path
        The private location.
    key_file : Path, optional
        The secret key.
    staged : bool
        The outputs are a staging area inside the private location (the
        ingest flow): they are published later by its leak check, never
        shared in place, so they may, and should, sit with what holds PHI.
    """
    if not source.exists():
        raise LocationError(f"SOURCE {source} does not exist")
    src, priv = source.resolve(), private.resolve()
    if _nested(src, priv):
        raise LocationError(
            f"the private location {private} and SOURCE {source} must not contain each other: "
            "the run would read its own link table and quarantine as inputs; keep them apart"
        )
    resolved = {name: path.resolve() for name, path in outputs.items()}
    for name, out in resolved.items():
        if _nested(out, src):
            raise LocationError(
                f"{name} {outputs[name]} and SOURCE {source} must not contain each other"
            )
        if priv == out or priv.is_relative_to(out):
            raise LocationError(
                f"the private location {private} is inside {name} {outputs[name]}: it holds the "
                "link table (PHI); choose --private-dir outside the release"
            )
        if out.is_relative_to(priv) and not (staged and out != priv):
            raise LocationError(
                f"{name} {outputs[name]} is inside the private location {private}: a release "
                "must be apart from what holds PHI; choose another folder"
            )
    names = sorted(resolved)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            if _nested(resolved[first], resolved[second]):
                raise LocationError(
                    f"{first} {outputs[first]} and {second} {outputs[second]} must not contain "
                    "each other"
                )
    if key_file is not None:
        key = key_file.resolve()
        for name, folder in (("SOURCE", src), *resolved.items()):
            if key.is_relative_to(folder):
                shown = source if name == "SOURCE" else outputs[name]
                raise LocationError(
                    f"the key file {key_file} is inside {name} {shown}: it would be "
                    f"{'read as an input' if name == 'SOURCE' else 'released'}; keep the key "
                    "beside the private location, never in data folders"
                )


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` resolves inside ``root`` (``root`` already resolved)."""
    return path.resolve().is_relative_to(root)
