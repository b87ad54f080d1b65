"""The report checks itself with the leak check that guards the release.

Before a report or an artifact leaves the process it is written, with a
plain-text reading of it (entities decoded, tags dropped: what a person
reads), into ``private/tmp/`` and read by :func:`pipeline.verify.check_outputs`
against the identifiers of the workspace's inputs: the originals the link
table keeps for every input ever processed, and whatever the inputs still
in ``incoming/`` hold.  One hit and nothing is written.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from html.parser import HTMLParser
from pathlib import Path

from pipeline.catalog import Catalog
from pipeline.errors import CurationError
from pipeline.verify import Identifiers, check_outputs, collect_identifiers, identifiers_of_values


class ReportRefused(CurationError):
    """The report (or an artifact) holds an identifying value of the inputs: nothing was written."""


def workspace_identifiers(catalog: Catalog, inputs: Iterable[Path] = ()) -> Identifiers:
    """What identifies the workspace's patients: the link table's originals, and ``inputs``."""
    pairs: list[tuple[str, str]] = []
    for row in catalog.original_values().reveal():
        pairs += [("PatientID", row.patient_id), ("PatientName", row.patient_name)]
        pairs += [("IssuerOfPatientID", row.issuer)]
        pairs += [("StudyInstanceUID", uid) for uid in row.uids]
    found = identifiers_of_values(pairs)
    paths = [p for p in inputs if p.exists()]
    return found.merge(collect_identifiers(paths)) if paths else found


class _Text(HTMLParser):
    """The page as read: text and attribute values, entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.parts += [value for _, value in attrs if value]

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def readable_text(html: str) -> str:
    """What a person reads of ``html`` (one line per text node)."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    return "\n".join(p.strip() for p in parser.parts if p.strip())


def check_texts(texts: Mapping[str, str], identifiers: Identifiers, private_tmp: Path) -> None:
    """Refuse (:class:`ReportRefused`) if any of ``texts`` (name -> text) holds an identifier.

    The texts are written under ``private_tmp`` (they may hold PHI until
    checked) and removed afterwards, whatever the outcome.
    """
    private_tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="report-check-", dir=private_tmp))
    try:
        outputs = []
        for index, (name, text) in enumerate(texts.items()):
            path = folder / f"{index}{Path(name).suffix or '.txt'}"
            path.write_text(text, encoding="utf-8")
            outputs.append((name, path, name))
        hits = check_outputs(outputs, identifiers)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(folder)
    if hits:
        kinds = Counter(hit.kind.value for hit in hits)
        where = sorted({f"{hit.output} {hit.where}" for hit in hits})[:5]
        raise ReportRefused(
            f"nothing was written: the leak check found {len(hits)} identifying value(s) of "
            f"the workspace's inputs in the report ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}; "
            f"at {'; '.join(where)}). A reviewer's name or a site rule's name may be a "
            "patient's: rename it (in the rule file, or the reviewer's login), then report again"
        )
