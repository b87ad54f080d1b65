"""Date and time transformations for DA, TM and DT values.

A whole-day shift moves every date of a subject by the same number of days and
leaves times of day as they were, so a DA+TM pair stays one consistent instant
and every interval between a subject's dates and times is preserved exactly.
DT values keep their precision and their UTC offset.
"""

from __future__ import annotations

import datetime as dt
import re

_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(.*)$")
_DT_REST = re.compile(r"^(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?([+-]\d{4})?$")


class DateFormatError(ValueError):
    """A value that is not a DICOM date; the caller empties it rather than guess."""


def _parse_da(value: str) -> dt.date:
    text = value.strip()
    if len(text) == 10 and text[4] == "." and text[7] == ".":  # ACR-NEMA form YYYY.MM.DD
        text = text.replace(".", "")
    if len(text) != 8 or not text.isdigit():
        raise DateFormatError(f"not a DA value: {len(value)} characters")
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        raise DateFormatError("not a valid calendar date") from None


def shift_da(value: str, days: int) -> str:
    """Shift one DA value by whole days."""
    if not value.strip():
        return value
    return (_parse_da(value) + dt.timedelta(days=days)).strftime("%Y%m%d")


def _split_dt(text: str) -> tuple[str, str | None, str | None, str]:
    """Year, month, day and the rest (time and UTC offset) of a DT value."""
    match = _DT.match(text)
    if not match:
        raise DateFormatError("not a DT value")
    year, month, day, rest = match.groups()
    if rest and not _DT_REST.match(rest):
        raise DateFormatError("not a DT value")
    if month is None and rest and not rest.startswith(("+", "-")):
        raise DateFormatError("not a DT value")
    _parse_da(f"{year}{month or '01'}{day or '01'}")  # a real calendar date
    return year, month, day, rest


def shift_dt(value: str, days: int) -> str:
    """Shift the date part of a DT value, keeping precision, time and UTC offset."""
    text = value.strip()
    if not text:
        return value
    year, month, day, rest = _split_dt(text)
    base = _parse_da(f"{year}{month or '01'}{day or '01'}")
    shifted = (base + dt.timedelta(days=days)).strftime("%Y%m%d")
    precision = 4 + (2 if month else 0) + (2 if day else 0)
    return shifted[:precision] + rest


def year_only_da(value: str) -> str:
    """HIPAA Safe Harbor: keep the year, set month and day to January 1st."""
    if not value.strip():
        return value
    return f"{_parse_da(value).year:04d}0101"


def year_only_dt(value: str) -> str:
    """HIPAA Safe Harbor: keep the year of a DT value, nothing finer, no offset."""
    text = value.strip()
    return _split_dt(text)[0] if text else value


def years_between(earlier: str, later: str) -> int | None:
    """Whole years from DA ``earlier`` to DA ``later``, or None if either is unusable."""
    try:
        a, b = _parse_da(earlier), _parse_da(later)
    except DateFormatError:
        return None
    return b.year - a.year - ((b.month, b.day) < (a.month, a.day))


def cap_age(value: str, limit: int) -> str:
    """An AS value over ``limit`` years becomes ``limit + 1`` years ("90 or older")."""
    text = value.strip()
    if len(text) == 4 and text[:3].isdigit() and text[3] == "Y" and int(text[:3]) > limit:
        return f"{limit + 1:03d}Y"
    return value
