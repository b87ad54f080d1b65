from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.identity.dates import (
    DateFormatError,
    cap_age,
    shift_da,
    shift_dt,
    year_only_da,
    year_only_dt,
    years_between,
)


@pytest.mark.parametrize(
    ("value", "days", "expected"),
    [
        ("20240311", -10, "20240301"),
        ("20240301", -1, "20240229"),  # leap day
        ("2024.03.11", 1, "20240312"),  # ACR-NEMA form
        ("", 5, ""),
    ],
)
def test_shift_da(value: str, days: int, expected: str) -> None:
    assert shift_da(value, days) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20240311143012.123000+0100", "20240301143012.123000+0100"),  # offset and time kept
        ("20240311", "20240301"),
        ("202403", "202402"),  # precision kept (March 1st - 10 days is in February)
        ("2024", "2023"),
        ("20240311-0500", "20240301-0500"),
    ],
)
def test_shift_dt_keeps_precision_time_and_offset(value: str, expected: str) -> None:
    assert shift_dt(value, -10) == expected


@pytest.mark.parametrize("bad", ["2024031", "2024-03-11", "20241311", "hello", "20240230"])
def test_bad_dates_are_refused(bad: str) -> None:
    with pytest.raises(DateFormatError):
        shift_da(bad, 1)


@given(
    st.dates(dt.date(1900, 1, 1), dt.date(2090, 1, 1)),
    st.dates(dt.date(1900, 1, 1), dt.date(2090, 1, 1)),
    st.integers(-4000, 4000),
)
def test_intervals_are_preserved_exactly(a: dt.date, b: dt.date, days: int) -> None:
    sa, sb = shift_da(a.strftime("%Y%m%d"), days), shift_da(b.strftime("%Y%m%d"), days)
    parse = lambda s: dt.datetime.strptime(s, "%Y%m%d").date()  # noqa: E731
    assert parse(sb) - parse(sa) == b - a


def test_year_only() -> None:
    assert year_only_da("19580314") == "19580101"
    assert year_only_dt("20240311143012+0100") == "2024"


def test_ages() -> None:
    assert years_between("19300601", "20240531") == 93
    assert years_between("19300601", "20240601") == 94
    assert cap_age("093Y", 89) == "090Y"
    assert cap_age("089Y", 89) == "089Y"
    assert cap_age("006M", 89) == "006M"
