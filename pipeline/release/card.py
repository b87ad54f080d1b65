"""The dataset card: ``README.md`` of a version, made from its manifest alone.

What a researcher reads first: what the version holds (files, subjects and
series per acquisition type, field strength and split), which rule set made
it, how the splits were drawn, and how to check that the copy they have is
the one published.  Everything in it is counted from the manifest rows, so
it says nothing the manifest does not.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pipeline.release.areas import DataArea
from pipeline.release.changelog import CHANGELOG_NAME
from pipeline.release.checksums import SUMS_NAME
from pipeline.release.datapackage import DATAPACKAGE_NAME
from pipeline.release.manifest import CSV_NAME, MANIFEST_FOLDER, PARQUET_NAME, ManifestRow
from pipeline.release.splits import Split, SplitRatios

CARD_NAME = "README.md"

_AREA_TEXT = {
    DataArea.DICOM: "de-identified DICOM objects, `<subject>/<study>/<series>/<instance>.dcm`",
    DataArea.RAW: "raw k-space as anonymized ISMRMRD files, `<subject>/<study>/<measurement>.h5`",
    DataArea.FASTMRI: "training files in the fastMRI layout (kspace, reconstruction_rss), "
    "one per raw image measurement",
}


@dataclass
class _Tally:
    subjects: set[str] = field(default_factory=set)
    series: set[tuple[str, str, str]] = field(default_factory=set)
    files: int = 0

    def add(self, row: ManifestRow) -> None:
        self.subjects.add(row.subject)
        self.series.add((row.subject, row.study, row.series))
        self.files += 1

    def cells(self) -> str:
        return f"{len(self.subjects)} | {len(self.series)} | {self.files}"


def nominal_field_strength(tesla: float | None) -> str:
    """How the card groups field strengths: the nominal value a site would name.

    Scanners record their exact field (a Siemens 3 T magnet says 2.89362, a
    1.5 T one 1.494); from 1 T up the card rounds to the nearest 0.5 T,
    below it to 0.05 T (0.55 T systems).  The manifest keeps the exact value.
    """
    if tesla is None:
        return "not recorded"
    nominal = round(tesla * 2) / 2 if tesla >= 1 else round(tesla * 20) / 20
    return f"{nominal:g} T"


def render_card(
    *,
    dataset_name: str,
    version: str,
    day: dt.date,
    rows: Sequence[ManifestRow],
    ratios: SplitRatios,
) -> str:
    """The ``README.md`` of a version holding ``rows``."""
    total = _Tally()
    for row in rows:
        total.add(row)
    rulesets = Counter(row.ruleset_version for row in rows)
    lines = [
        f"# {_cell(dataset_name)}, {version}",
        "",
        f"Published {day.isoformat()}: {total.files} file(s) of {len(total.subjects)} "
        f"subject(s) in {len(total.series)} series. Made with mricurate: DICOM "
        "de-identified by rule files, raw k-space converted to ISMRMRD through an "
        "allowlist; subjects, studies and series are named by keyed pseudonyms only.",
        "",
        "Rule set: "
        + ", ".join(
            f"`{_cell(name)}` ({count} file(s))" for name, count in sorted(rulesets.items())
        )
        + ".",
        "",
        "## Contents",
        "",
        "| folder | what | files |",
        "|---|---|---:|",
    ]
    by_area = Counter(row.area for row in rows)
    for area in DataArea:
        lines.append(f"| `{area.value}/` | {_AREA_TEXT[area]} | {by_area[area]} |")
    lines += [
        f"| `{MANIFEST_FOLDER}/` | `{PARQUET_NAME}` and `{CSV_NAME}`: one row per file "
        "(subject, study, series, acquisition, field strength, TR/TE/TI/flip angle, matrix, "
        "coils, path, size, SHA-256, split, rule set) | 2 |",
        f"| `{DATAPACKAGE_NAME}` | a Frictionless data package describing both manifests, "
        "with their schema | 1 |",
        f"| `{SUMS_NAME}` | the SHA-256 of every other file | 1 |",
        f"| `{CHANGELOG_NAME}` | what each version added, changed or withdrew | 1 |",
        "",
        "## Splits",
        "",
        "Per subject: every file of a subject is in one split, drawn from a keyed hash of "
        "its pseudonym, and a subject keeps its split in every later version. New subjects "
        "are drawn with the shares train "
        f"{ratios.train:g}, validation {ratios.validation:g}, test {ratios.test:g}.",
        "",
    ]
    lines += _table("split", rows, lambda r: r.split.value, order=[s.value for s in Split])
    lines += ["", "## Acquisition types", ""]
    lines += _table(
        "acquisition | area",
        rows,
        lambda r: f"{_cell(r.acquisition or 'not recorded')} | {r.area.value}",
    )
    lines += ["", "## Field strength", ""]
    lines += _table("field strength", rows, lambda r: nominal_field_strength(r.field_strength_t))
    lines += [
        "",
        "The manifest holds each file's exact field strength; the card groups them by the "
        "nominal value (nearest 0.5 T).",
        "",
        "## Verify your copy",
        "",
        "From this folder:",
        "",
        f"    sha256sum -c {SUMS_NAME}",
        f"    frictionless validate {DATAPACKAGE_NAME}",
        "",
        "The first checks every file's bytes; the second checks both manifests against "
        "their schema (and their own SHA-256 and size).",
    ]
    return "\n".join(lines) + "\n"


def _table(
    heading: str,
    rows: Sequence[ManifestRow],
    group: Callable[[ManifestRow], str],
    *,
    order: Sequence[str] | None = None,
) -> list[str]:
    tallies: dict[str, _Tally] = {}
    for row in rows:
        tallies.setdefault(group(row), _Tally()).add(row)
    names = list(order) if order is not None else sorted(tallies)
    columns = heading.count("|") + 1
    lines = [
        f"| {heading} | subjects | series | files |",
        "|" + "---|" * columns + "---:|---:|---:|",
    ]
    lines += [f"| {name} | {tallies.get(name, _Tally()).cells()} |" for name in names]
    return lines


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell and a code span."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'").replace("\n", " ")
