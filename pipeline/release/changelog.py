"""What changed from one version to the next, and the ``CHANGELOG.md`` that says so.

Files are compared by their path in the version: a path that is new is
*added*, one whose SHA-256 differs is *changed*, one that is gone is
*removed*.  Subjects withdrawn (consent revoked) are counted, never named:
the changelog gives the number of withdrawn subjects and of their files, no
pseudonym and no path of theirs, and the same holds for every earlier entry
it carries.  Each version's ``CHANGELOG.md`` is the whole history, newest
first.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass

from pipeline.release.areas import DataArea
from pipeline.release.manifest import ManifestRow

CHANGELOG_NAME = "CHANGELOG.md"
TITLE = "# Changelog\n"


@dataclass(frozen=True)
class Changes:
    """A new version's files against the previous version's (all of them new for the first).

    ``added``, ``changed`` and ``removed`` are relative paths in the version;
    ``removed_withdrawn`` counts the removed files of withdrawn subjects,
    ``withdrawn_subjects`` the previous version's subjects withdrawn since.
    """

    previous: str | None
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    removed_withdrawn: int
    withdrawn_subjects: int
    new_subjects: int

    @property
    def empty(self) -> bool:
        """Nothing differs: the new version would equal the previous one."""
        return not (self.added or self.changed or self.removed)


def compare(
    previous: str | None,
    before: Mapping[str, ManifestRow],
    after: Sequence[ManifestRow],
    withdrawn: Set[str],
) -> Changes:
    """The changes from ``before`` (relpath -> row) to the rows ``after``."""
    now = {row.relpath: row for row in after}
    removed = tuple(sorted(before.keys() - now.keys()))
    return Changes(
        previous=previous,
        added=tuple(sorted(now.keys() - before.keys())),
        changed=tuple(
            sorted(p for p in now.keys() & before.keys() if now[p].sha256 != before[p].sha256)
        ),
        removed=removed,
        removed_withdrawn=sum(before[p].subject in withdrawn for p in removed),
        withdrawn_subjects=len({row.subject for row in before.values()} & withdrawn),
        new_subjects=len({row.subject for row in after} - {r.subject for r in before.values()}),
    )


def entry(version: str, day: dt.date, changes: Changes, rows: Sequence[ManifestRow]) -> str:
    """The changelog section of ``version``."""
    subjects = len({row.subject for row in rows})
    lines = [f"## {version} ({day.isoformat()})", ""]
    if changes.previous is None:
        lines.append(f"First release: {len(rows)} file(s) of {subjects} subject(s).")
    else:
        lines.append(
            f"Against {changes.previous}: {len(changes.added)} file(s) added, "
            f"{len(changes.changed)} changed, {len(changes.removed)} removed; "
            f"{len(rows)} file(s) of {subjects} subject(s) in this version."
        )
        lines.append("")
        if changes.new_subjects:
            lines.append(f"- {changes.new_subjects} subject(s) added.")
        if changes.withdrawn_subjects:
            lines.append(
                f"- {changes.withdrawn_subjects} subject(s) withdrawn (consent revoked): "
                f"their {changes.removed_withdrawn} file(s) are left out of this and every "
                "later version."
            )
        other = len(changes.removed) - changes.removed_withdrawn
        if other:
            lines.append(f"- {other} file(s) no longer released.")
        if changes.changed:
            lines.append(
                f"- {len(changes.changed)} file(s) changed (same path, new content: "
                "re-made under changed rules or from a corrected input)."
            )
        lines += ["", "| area | added | changed | removed |", "|---|---:|---:|---:|"]
        for area in DataArea:
            counts = [_in_area(paths, area) for paths in _lists(changes)]
            if any(counts):
                lines.append(f"| {area.value} | " + " | ".join(map(str, counts)) + " |")
    return "\n".join(lines) + "\n"


def changelog(new_entry: str, previous_text: str | None) -> str:
    """``CHANGELOG.md``: the new entry above every earlier one."""
    earlier = ""
    if previous_text:
        earlier = previous_text.removeprefix(TITLE).lstrip("\n")
    return TITLE + "\n" + new_entry + ("\n" + earlier if earlier else "")


def _lists(changes: Changes) -> tuple[tuple[str, ...], ...]:
    return changes.added, changes.changed, changes.removed


def _in_area(paths: tuple[str, ...], area: DataArea) -> int:
    return Counter(path.split("/", 1)[0] for path in paths)[area.value]
