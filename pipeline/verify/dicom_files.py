"""A DICOM file's elements for the leak check: the fast parser, else pydicom.

A floor above :mod:`pipeline.verify.dicom_parse` (the fast byte parser) and
:mod:`pipeline.verify.dicom_elements` (the element model and pydicom's walk):
both stand on the element model; which of them reads a file is decided here.
"""

from __future__ import annotations

import warnings
from collections.abc import Container
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

from pipeline.verify.dicom_elements import DEFER_SIZE, Element, elements
from pipeline.verify.dicom_parse import NotFast, parse_file

__all__ = ["UnreadableDicom", "file_elements"]

_FIRST_GROUPS = frozenset({b"\x02\x00", b"\x04\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08"})


class UnreadableDicom(ValueError):
    """Neither the fast parser nor pydicom reads the file."""


def file_elements(
    path: Path, *, whole: bool = False, numbers: Container[str] | None = None
) -> list[Element]:
    """Every element of the DICOM file at ``path``: the fast parser, else pydicom.

    pydicom's warnings are silenced here: they quote values (a UID that is
    not one, a name in the wrong character set), and values are PHI.

    Parameters
    ----------
    whole : bool
        Refuse a file that ends inside an element (an output: what cannot be
        parsed was not checked).  An input cut short still gives what it holds.
    numbers : container of str, optional
        Keywords whose IS, DS and TM values are wanted; ``None``: all (see
        :func:`~pipeline.verify.dicom_parse.parse_file`).

    Raises
    ------
    UnreadableDicom
        Not a DICOM file, one pydicom cannot read either, or (``whole``) cut short.
    """
    with open(path, "rb") as fh:
        head = fh.read(132)
    preamble = head[128:132] == b"DICM"
    if not preamble and head[:2] not in _FIRST_GROUPS:
        raise UnreadableDicom("not readable as DICOM (no preamble, no DICOM element first)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return parse_file(path, numbers)
        except NotFast as declined:
            if whole and declined.truncated:
                raise UnreadableDicom("not readable as DICOM (cut short)") from None
        try:
            ds = dcmread(path, defer_size=DEFER_SIZE, force=not preamble)
            found = list(elements(ds))
        except Exception as exc:  # pydicom raises many kinds for a damaged file
            raise UnreadableDicom(f"not readable as DICOM ({type(exc).__name__})") from None
    if not preamble and not _looks_like_dicom(ds):
        raise UnreadableDicom("not readable as DICOM (no DICOM elements)")
    return found


def _looks_like_dicom(ds: Dataset) -> bool:
    """A file read with ``force`` starts with elements DICOM files start with (text reads as junk)."""
    tags = sorted(int(t) for t in ds.keys())
    return len(tags) >= 3 and (tags[0] >> 16) in (0x0002, 0x0004, 0x0008)
