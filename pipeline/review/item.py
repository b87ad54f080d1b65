"""One queue entry as the review page shows it: what, why, where its files are, who decided.

Read from the catalog (the entry, its reasons, the outputs, where the content
was seen, the decisions) and the workspace (the staging area).  Everything in
an :class:`ItemView` but ``queue_id``, ``sha256`` and the pseudonyms is PHI
or leads to it (paths, reviewers' words): it belongs on the page, behind the
session, never in a log line.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from pipeline.catalog import Catalog, DecisionRecord, OutputRecord
from pipeline.catalog.errors import short
from pipeline.catalog.states import ItemState, ReviewReason
from pipeline.dicom.deidentify import deidentify_dataset
from pipeline.dicom.profile import load_profile
from pipeline.errors import CurationError
from pipeline.identity.uids import UidMapper
from pipeline.keys import load_key
from pipeline.read.dicom import quiet_pydicom, read_dicom
from pipeline.read.image_pixel import number_of_frames
from pipeline.workspace import Workspace

__all__ = ["ItemView", "ReviewError", "open_item"]


class ReviewError(CurationError):
    """The review cannot show or do what was asked; the message names the item by short sha."""


@dataclass(frozen=True)
class ItemView:
    """One queue entry, with what the review page needs to show it.

    Attributes
    ----------
    queue_id, sha256 : int, str
        The entry and its input (the opaque key; :attr:`key` is its short form).
    reasons : tuple of ReviewReason
        Why it is in the queue.
    state : ItemState or None
        Where the input stands now.
    subject, study, series : str
        Its pseudonyms (``SUBJ-…``, ``ST-…``, ``SE-…``): from the output
        recorded for it, else derived from the original's header with the
        workspace key (an input held back has no output); ``""`` when neither
        is possible.  The web app filters by ``study``.
    frames : int
        Frames of its image (the original's, else the staged output's; 0
        for no pixel data or a file that is not DICOM).
    rows, columns : int
        The image's size in pixels (0 when unknown): boxes are in these.
    original : Path or None
        Where the input was last seen in ``incoming/``, if it is still there
        (PHI: the path names the patient).
    original_gone : bool
        The catalog saw it, but no file is at any of those paths now: the
        original left ``incoming/`` (the page says so; the header before and
        the scan need it).
    staged : Path or None
        Its de-identified output in ``private/staging/`` (None: none yet,
        e.g. held back).
    area, relpath : str
        The staged output's area and release path (``""`` without one).
    decisions : tuple of DecisionRecord
        Every decision on the input so far, oldest first, with its boxes.
    queued_at : datetime
    """

    queue_id: int
    sha256: str
    reasons: tuple[ReviewReason, ...]
    state: ItemState | None
    subject: str
    study: str
    series: str
    frames: int
    rows: int
    columns: int
    original: Path | None = field(repr=False)
    original_gone: bool
    staged: Path | None = field(repr=False)
    area: str
    relpath: str
    decisions: tuple[DecisionRecord, ...] = field(repr=False)
    queued_at: dt.datetime

    @property
    def key(self) -> str:
        """The short opaque key the page and messages name the item by."""
        return short(self.sha256)

    @property
    def pending(self) -> bool:
        """No decision on this entry yet."""
        return not any(d.queue_id == self.queue_id for d in self.decisions)


def open_item(workspace: Workspace, catalog: Catalog, queue_id: int) -> ItemView:
    """The queue entry ``queue_id`` as the review page shows it.

    Raises
    ------
    CatalogError
        There is no such entry (the catalog's own error: "there is no review N").
    """
    entry = catalog.review_entry(queue_id)
    sha = entry.sha256
    outputs = catalog.outputs_of([sha])
    output = _dicom_output(outputs)
    paths = catalog.paths_of(sha)
    original = next((Path(os.fsdecode(p)) for p in paths if os.path.isfile(p)), None)
    staged = workspace.staging / output.area / output.relpath if output else None
    if staged is not None and not staged.is_file():
        staged = None
    header = _header(original) or _header(staged)
    if output is not None:
        relpath = output.relpath
    elif original is not None:
        relpath = _derived_relpath(workspace, original)
    else:
        relpath = ""
    subject, study, series = _pseudonyms(relpath)
    return ItemView(
        queue_id=entry.queue_id,
        sha256=sha,
        reasons=entry.reasons,
        state=catalog.state_of(sha),
        subject=subject,
        study=study,
        series=series,
        frames=number_of_frames(header) if header is not None and "PixelData" in header else 0,
        rows=int(header.get("Rows", 0) or 0) if header is not None else 0,
        columns=int(header.get("Columns", 0) or 0) if header is not None else 0,
        original=original,
        original_gone=original is None and bool(paths),
        staged=staged,
        area=output.area if output else "",
        relpath=output.relpath if output else "",
        decisions=tuple(catalog.decisions(sha)),
        queued_at=entry.queued_at,
    )


def _dicom_output(outputs: list[OutputRecord]) -> OutputRecord | None:
    """The output a person looks at: the DICOM one (an input makes one), else the first."""
    return next((o for o in outputs if o.area == "dicom"), outputs[0] if outputs else None)


def _header(path: Path | None) -> pydicom.Dataset | None:
    """The header of ``path`` without its pixel data, or None (gone, not DICOM)."""
    if path is None:
        return None
    quiet_pydicom()
    try:
        return pydicom.dcmread(path, stop_before_pixels=False, defer_size=1024, force=True)
    except (OSError, InvalidDicomError, ValueError, TypeError, AttributeError, EOFError):
        return None


def _derived_relpath(workspace: Workspace, original: Path) -> str:
    """The release path the original would get (pseudonyms from the key), or ``""``."""
    try:
        data = original.read_bytes()
        ds = read_dicom(data, "input")
        key = load_key(workspace.key_file)
        _, _, relpath, _ = deidentify_dataset(
            ds, key, load_profile(workspace.config.profile), UidMapper(key)
        )
    except (OSError, CurationError, ValueError, KeyError, TypeError, AttributeError):
        return ""
    return str(relpath)


def _pseudonyms(relpath: str) -> tuple[str, str, str]:
    """``SUBJ-…/ST-…/SE-…/file`` -> the three folder names (``""`` for what is missing)."""
    parts = relpath.split("/")[:-1]
    found = {"SUBJ": "", "ST": "", "SE": ""}
    for part in parts:
        prefix = part.split("-", 1)[0]
        if prefix in found and not found[prefix]:
            found[prefix] = part
    return found["SUBJ"], found["ST"], found["SE"]
