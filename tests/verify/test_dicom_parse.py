"""The fast parser reads what pydicom reads, or declines and leaves the file to pydicom."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_charset_files, get_testdata_file

from pipeline.verify.dicom_elements import elements
from pipeline.verify.dicom_files import UnreadableDicom, file_elements
from pipeline.verify.dicom_parse import NotFast, parse_file

# Every encoding the fast path reads: explicit, implicit (with and without file
# meta), deflated, encapsulated JPEG / JPEG 2000 / JPEG-LS / RLE, undefined-length
# and private (UN) sequences, nested private sequences, DICOMDIR, SR, RT, waveforms,
# overlays, and the character-set files (ISO 2022, UTF-8, per-item character sets).
FAST = [
    "MR_small.dcm", "CT_small.dcm", "MR_small_implicit.dcm", "image_dfl.dcm",
    "ExplVR_LitEndNoMeta.dcm", "no_meta_group_length.dcm", "MR_small_RLE.dcm",
    "JPEG2000.dcm", "JPEG2000-embedded-sequence-delimiter.dcm", "MR_small_jpeg_ls_lossless.dcm",
    "SC_rgb_jpeg_dcmtk.dcm", "UN_sequence.dcm", "priv_SQ.dcm", "nested_priv_SQ.dcm",
    "rtplan.dcm", "rtstruct.dcm", "test-SR.dcm", "reportsi.dcm", "waveform_ecg.dcm",
    "examples_overlay.dcm", "MR_small_padded.dcm", "empty_charset_LEI.dcm", "DICOMDIR",
]  # fmt: skip
CHARSETS = [Path(p).name for p in get_charset_files("chr*.dcm")]
# Big endian and files that break the standard are left to pydicom.
DECLINED = ["MR_small_bigendian.dcm", "ExplVR_BigEnd.dcm", "SC_rgb_jpeg.dcm", "MR_truncated.dcm"]


def _path(name: str) -> Path:
    found = get_testdata_file(name) or get_charset_files(name)[0]
    return Path(str(found))


def _as_pydicom_reads_it(path: Path) -> set[tuple[str, str, tuple[str, ...], bytes, str]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(path, defer_size=1 << 16, force=True)
        return {(e.where, e.vr, e.values, e.data, e.creator) for e in elements(ds)}


@pytest.mark.parametrize("name", FAST + CHARSETS)
def test_the_fast_parser_reads_what_pydicom_reads(name: str) -> None:
    path = _path(name)
    fast = parse_file(path)
    assert {(e.where, e.vr, e.values, e.data, e.creator) for e in fast} == _as_pydicom_reads_it(
        path
    )
    assert not any(e.tag in (0x7FE00010, 0x60003000) for e in fast)  # pixels, overlays


@pytest.mark.parametrize("name", DECLINED)
def test_a_declined_file_is_read_by_pydicom(name: str) -> None:
    path = _path(name)
    with pytest.raises(NotFast):
        parse_file(path)
    assert {(e.where, e.values) for e in file_elements(path)} == {
        (w, v) for w, _, v, _, _ in _as_pydicom_reads_it(path)
    }


def test_an_output_cut_short_is_unreadable_an_input_gives_what_it_holds(tmp_path: Path) -> None:
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(_path("CT_small.dcm").read_bytes()[:1500])
    with pytest.raises(UnreadableDicom):
        file_elements(cut, whole=True)
    assert any(e.keyword == "SOPInstanceUID" for e in file_elements(cut))


def test_not_dicom_is_unreadable(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("Patient Müller called.\n")
    with pytest.raises(UnreadableDicom):
        file_elements(text)
