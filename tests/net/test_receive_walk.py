"""The completeness walk of a received file (`read_whole`), on real files, whole and broken.

Encapsulated pixel data is walked fragment by fragment (each item's length
seeked over), never read; what that must keep: every whole file accepted,
whatever its syntax (one labelled explicit but written implicit, big endian,
a JPEG 2000 stream holding the delimiter's bytes), and every file cut short
or followed by bytes that are not an element refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from pipeline.net.receive import read_whole

FILES = [
    "CT_small.dcm", "MR_small_implicit.dcm", "SC_rgb_expb.dcm", "emri_small.dcm",
    "JPEG2000.dcm", "JPEG2000-embedded-sequence-delimiter.dcm", "SC_rgb_jpeg.dcm",
    "SC_rgb_rle_2frame.dcm", "JPEGLSNearLossless_16.dcm", "emri_small_jpeg_2k_lossless.dcm",
    "rtplan.dcm", "waveform_ecg.dcm",
]  # fmt: skip


@pytest.mark.parametrize("name", FILES)
# pydicom's SC_rgb_jpeg.dcm says explicit VR and is written implicit: pydicom warns, and reads it.
@pytest.mark.filterwarnings("ignore:Expected explicit VR, but found implicit VR:UserWarning")
def test_whole_files_pass_and_cut_or_padded_ones_do_not(name: str, tmp_path: Path) -> None:
    original = Path(get_testdata_file(name))
    data = original.read_bytes()
    header = dcmread(original, stop_before_pixels=True)
    path = tmp_path / "x.dcm"
    path.write_bytes(data)
    expected = (str(header.SOPInstanceUID), str(header.SOPClassUID),
                str(header.file_meta.TransferSyntaxUID))  # fmt: skip
    assert read_whole(path) == expected
    pixels = data.rfind(b"\xe0\x7f\x10\x00")
    # Not at an element's end: a dataset cut there is whole, if short (what pixel data
    # it lacks, no walk can tell; pynetdicom does not hand over a dataset cut off).
    cuts = {len(data) - k for k in (1, 2, 4, 7, 8, 9, 12)}
    if pixels > 0:  # in the pixel data's header, in its first item's, in its value
        cuts |= {pixels + 2, pixels + 6, pixels + 10, pixels + 14, (pixels + len(data)) // 2}
    for cut in sorted(cuts):
        path.write_bytes(data[:cut])
        assert read_whole(path) is None, cut
    for junk in (b"\x01\x02\x03", b"\x00" * 7):
        path.write_bytes(data + junk)
        assert read_whole(path) is None, junk
