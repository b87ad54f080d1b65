"""The header before -> after, element by element, with the rule that decided each.

The dry run of :func:`pipeline.dicom.deidentify.explain` on the original,
with the workspace's key and profile: the same rules the ingest applied, so
the reviewer sees what the released header holds and why.  ``before`` is
the original's value (PHI: shown behind the session only).
"""

from __future__ import annotations

from pipeline.dicom.deidentify import explain
from pipeline.dicom.engine import Change
from pipeline.dicom.profile import load_profile
from pipeline.errors import InputError
from pipeline.keys import load_key
from pipeline.review.item import ItemView, ReviewError
from pipeline.workspace import Workspace

__all__ = ["Change", "header_changes"]


def header_changes(workspace: Workspace, item: ItemView) -> list[Change]:
    """Every element of ``item``'s original header: before, after (None: removed), rule.

    Raises
    ------
    ReviewError
        The original left ``incoming/`` or is not DICOM that can be read.
    """
    if item.original is None:
        raise ReviewError(
            f"input {item.key}: the original is no longer in incoming/, so its header "
            "before de-identification cannot be shown; put the file back to see it"
        )
    try:
        data = item.original.read_bytes()
    except OSError as exc:
        raise ReviewError(
            f"input {item.key}: the original cannot be read ({type(exc).__name__})"
        ) from None
    key = load_key(workspace.key_file)  # a missing key is the workspace's failure: raised
    profile = load_profile(workspace.config.profile)
    try:
        return explain(data, key, profile)
    except InputError as exc:
        # The detail may quote the file; the reason code never does.
        raise ReviewError(
            f"input {item.key}: its header cannot be read ({exc.reason.value}); it was "
            "quarantined for the same reason, or the file changed since"
        ) from None
