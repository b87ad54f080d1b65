"""``peek_value`` reads a value as pydicom decodes it, and leaves the element as read."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement

from pipeline.read.dicom import quiet_pydicom
from pipeline.read.peek import peek_value, tag_object
from pipeline.samples import make_subjects, mr_series

_FILES = sorted((Path(pydicom.__file__).parent / "data" / "test_files").glob("*.dcm"))


def _datasets() -> list[pydicom.Dataset]:
    quiet_pydicom()
    found = []
    for path in _FILES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                found.append(pydicom.dcmread(path))
            except Exception:
                continue
    return found


def test_every_top_level_value_peeks_as_pydicom_decodes_it() -> None:
    """Same value and same type as ``ds.get`` (UID, str, int, MultiValue, ...), on real files."""
    compared = 0
    plain = 0
    for ds in _datasets():
        decoded = copy.deepcopy(ds)
        for tag, element in list(ds._dict.items()):
            keyword = keyword_for_tag(tag)
            if not keyword or tag >> 16 == 0x7FE0 or not isinstance(element, RawDataElement):
                continue
            try:
                expected = decoded.get(keyword)
            except Exception:
                continue
            before = ds._dict[tag]  # (an earlier sequence may have decoded it: pydicom's way)
            got = peek_value(ds, keyword)
            assert type(got) is type(expected), (keyword, got, expected)
            assert got == expected, keyword
            compared += 1
            if before.VR in ("UI", "CS", "LO", "SH", "AE", "US", "SS", "UL", "SL") and before.value:
                assert ds._dict[tag] is before  # left as it was
                plain += isinstance(got, str | int)
    assert compared > 2000
    assert plain > 1000  # the plain values were among them


@pytest.mark.parametrize(
    ("vr", "data", "expected"),
    [
        ("UI", b"1.2.3\0", "1.2.3"),
        ("UI", b"1.2.3 ", "1.2.3"),
        ("CS", b"YES ", "YES"),
        ("UI", b"\0\0", ""),
        ("CS", b" NO \0", " NO"),
        ("SH", b" ID 7  ", " ID 7"),
        ("LO", b"name\0\0", "name"),
        ("AE", b"  STATION  ", "STATION"),
        ("US", b"\x00\x01", 256),
        ("SS", b"\xff\xff", -1),
        ("UL", b"\x01\x00\x00\x00", 1),
        ("SL", b"\xfe\xff\xff\xff", -2),
    ],
)
def test_plain_values_decode_as_pydicom_does(vr: str, data: bytes, expected: object) -> None:
    quiet_pydicom()
    for implicit in (False, True):
        tag = {"UI": 0x00080018, "CS": 0x00080060, "SH": 0x00200010, "LO": 0x00100020,
               "AE": 0x00080055, "US": 0x00280010, "SS": 0x00189219, "UL": 0x00081160,
               "SL": 0x00186020}[vr]  # fmt: skip
        if implicit and tag in (0x00081160, 0x00186020):
            continue  # these have another or an ambiguous dictionary VR
        ds = pydicom.Dataset()
        raw = RawDataElement(tag_object(tag), None if implicit else vr, len(data), data, 0,
                             implicit, True)  # fmt: skip
        ds._dict[tag_object(tag)] = raw
        ds.set_original_encoding(implicit, True, "iso8859")
        keyword = keyword_for_tag(tag)
        got = peek_value(ds, keyword)
        assert ds._dict[tag_object(tag)] is raw
        expected_here = ds.get(keyword)  # pydicom's own decoding, in place
        assert got == expected == expected_here
        assert type(got) is type(expected_here)


def test_values_pydicom_must_decide_still_go_through_pydicom() -> None:
    """Non-ASCII, multi-valued, empty and numeric strings are pydicom's to decode."""
    quiet_pydicom()
    ds = mr_series(make_subjects(1)[0], n_slices=1)[0]
    ds.PatientName = "Müller^Jörg"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.AccessionNumber = ""
    for keyword in ("PatientName", "ImageType", "AccessionNumber", "InstanceNumber"):
        assert peek_value(ds, keyword) == ds.get(keyword)
        assert type(peek_value(ds, keyword)) is type(ds.get(keyword))


def test_the_tag_objects_are_shared() -> None:
    assert tag_object(0x00100010) is tag_object(0x00100010)
    assert tag_object(0x00100010) == 0x00100010
