"""The PHI-free account of what is kept out: ``W/quarantine/quarantined.csv``.

The people who run the pipeline need to see what did not make it and why,
without opening ``private/`` (where the inputs' names and the catalog are).
So each run ends by rewriting one table, validated against
``data_contracts/quarantine.schema.json``: every input quarantined now, by
content hash, with the stable reason code, what it means, since when and by
which run.  A content hash names a file only to someone who has the file
(``sha256sum`` finds it in ``incoming/``), so the table can be read by
anyone who may read the workspace.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from pipeline.atomic import write_temp
from pipeline.catalog import Catalog
from pipeline.catalog.records import ItemRecord, Transition
from pipeline.catalog.states import Decision, ItemState, ReviewReason
from pipeline.reasons import Reason
from pipeline.release.contracts import contract_fields, validate_table
from pipeline.storage import fsync_folder, writing
from pipeline.workspace import Workspace

ACCOUNT_NAME = "quarantined.csv"
CONTRACT = "quarantine.schema.json"

#: What the codes that are not pipeline Reasons mean here.
_EXPLANATIONS = {
    ReviewReason.LEAK_CHECK.value: "an output still held an identifying value of its input "
    "(the independent leak check): it was never released; fix the rule that let it through",
    Decision.REJECT.value: "rejected by a reviewer: kept out of every release",
    Decision.REDACT.value: "a reviewer drew what to blank: the next run cleans it again and "
    "sends it back for review",
}
_REASONS = {reason.value: reason for reason in Reason}


def explanation(code: str | None) -> str:
    """What a quarantine reason code means, for people."""
    if code is None:
        return "no reason recorded"
    if code in _REASONS:
        return _REASONS[code].text
    return _EXPLANATIONS.get(code, code)


def account_rows(entries: list[tuple[ItemRecord, Transition]]) -> list[list[str]]:
    """The table's rows (header first), in the contract's field order."""
    rows = [[name for name, _ in contract_fields(CONTRACT)]]
    for item, entered in entries:
        code = entered.reason or item.reason or ""
        rows.append([
            item.sha256, item.kind.value, code, explanation(code or None),
            entered.at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "" if entered.run_id is None else str(entered.run_id),
        ])  # fmt: skip
    return rows


def write_account(workspace: Workspace, catalog: Catalog) -> Path:
    """Rewrite ``quarantine/quarantined.csv`` from the catalog; return its path.

    Written under a temporary name, validated against the contract, then
    renamed: a reader sees the previous table or the new one, never half.
    """
    folder = workspace.quarantine
    target = folder / ACCOUNT_NAME
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(
        account_rows(catalog.entered(ItemState.QUARANTINED))
    )
    with writing("QUARANTINE", folder):
        folder.mkdir(parents=True, exist_ok=True)
        temp = write_temp(folder, buffer.getvalue().encode("utf-8"))
        staged = temp.with_name(temp.name + ".csv")  # the validator reads by suffix
        try:
            os.rename(temp, staged)
            fd = os.open(staged, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            validate_table(staged, CONTRACT, label=f"quarantine/{ACCOUNT_NAME}")
            os.chmod(staged, 0o644)
            os.replace(staged, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            staged.unlink(missing_ok=True)
            raise
        fsync_folder(folder)
    return target
