"""`mricurate listen` with real senders: dcmtk's storescu and echoscu, pynetdicom for a bad stream."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from pipeline.catalog import Catalog
from pipeline.workspace import Workspace
from tests.net.conftest import SCANNER, dataset_bytes, listen_log, needs_dcmtk

pytestmark = needs_dcmtk

# (storescu's option proposing exactly the files' syntaxes, files): every file lands once.
# "-xf ... Default" is dcmtk's mixed profile (uncompressed, JPEG baseline and lossless).
SENDS = [
    (
        ["-xf", "/etc/dcmtk/storescu.cfg", "Default"],
        ["CT_small.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", "MR2_UNCR.dcm", "MR_small.dcm"],
    ),
    (["-xv"], ["emri_small_jpeg_2k_lossless.dcm", "US1_J2KR.dcm"]),  # JPEG 2000 lossless
    (["-xu"], ["JPEGLSNearLossless_16.dcm"]),  # JPEG-LS near-lossless
    (["-xy"], ["color3d_jpeg_baseline.dcm"]),  # JPEG baseline (pydicom-data)
    (["-xr"], ["SC_rgb_rle.dcm"]),  # RLE
    (["-xw"], ["JPEG2000.dcm"]),  # JPEG 2000 (lossy)
]
# SOP Instance UIDs sent above, again in other transfer syntaxes: not stored again.
AGAIN = [(["-xr"], ["MR_small_RLE.dcm"]), (["-xv"], ["MR_small_jp2klossless.dcm"]),
         (["-xi"], ["MR_small_implicit.dcm"]),
         (["-xt"], ["emri_small_jpeg_ls_lossless.dcm"])]  # fmt: skip


def same_content(landed: Path, original: Path) -> bool:
    """Every element's value as the file has it (pixel data bytes included, not decoded).

    Not the file's bytes: storescu re-encodes what it reads (OW encapsulated
    pixel data goes as OB, Data Set Trailing Padding is dropped), so the
    dataset sent is the file's content, and that is what must have landed.
    """
    ours, theirs = dcmread(landed), dcmread(original)
    kept = [e for e in theirs if e.tag != 0xFFFCFFFC]
    return len(ours) == len(kept) and all(
        e.tag in ours and ours[e.tag].value == e.value for e in kept
    )


def storescu(port: int, options: list[str], files: list[str], aet: str = SCANNER) -> int:
    paths = [get_testdata_file(name) for name in files]
    assert all(paths), files
    done = subprocess.run(
        ["storescu", "-aet", aet, "-aec", "MRICURATE", *options, "127.0.0.1", str(port),
         *paths],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.returncode


@pytest.fixture(scope="module")
def sent(listening: tuple[Workspace, int]) -> tuple[Workspace, int]:
    workspace, port = listening
    for options, files in [*SENDS, *AGAIN]:
        assert storescu(port, options, files) == 0, (options, files)
    return workspace, port


def test_every_file_lands_once_under_its_content_hash_as_it_was_sent(
    sent: tuple[Workspace, int],
) -> None:
    workspace, _ = sent
    stored = {path.name: path for path in workspace.incoming.iterdir()}
    originals = [name for _, files in SENDS for name in files]
    assert len(stored) == len(originals)  # MR_small's other syntaxes were not stored again
    by_uid = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in stored.values()}
    for name in originals:
        original = Path(get_testdata_file(name))
        uid = str(dcmread(original, stop_before_pixels=True).SOPInstanceUID)
        landed = by_uid[uid]
        assert landed.name == hashlib.sha256(landed.read_bytes()).hexdigest() + ".dcm"
        assert same_content(landed, original), name
        assert (
            dcmread(landed, stop_before_pixels=True).file_meta.TransferSyntaxUID
            == dcmread(original, stop_before_pixels=True).file_meta.TransferSyntaxUID
        )
    assert list(workspace.receiving.iterdir()) == []  # no temp file left behind


def test_the_catalog_records_each_instance_with_sender_address_and_syntax(
    sent: tuple[Workspace, int],
) -> None:
    workspace, _ = sent
    mr = dcmread(get_testdata_file("MR_small.dcm"), stop_before_pixels=True)
    with Catalog.open(workspace.catalog_url) as catalog:
        receipt = catalog.received(str(mr.SOPInstanceUID))
    assert receipt is not None
    assert (receipt.calling_ae, receipt.peer_address) == (SCANNER, "127.0.0.1")
    assert receipt.transfer_syntax == "1.2.840.10008.1.2.1"  # the first copy, sent explicit
    assert (workspace.incoming / f"{receipt.sha256}.dcm").is_file()


def test_an_unknown_calling_ae_is_rejected_and_echoscu_works(
    sent: tuple[Workspace, int],
) -> None:
    workspace, port = sent
    before = set(workspace.incoming.iterdir())
    refused = subprocess.run(
        ["storescu", "-aet", "INTRUDER", "127.0.0.1", str(port), get_testdata_file("rtplan.dcm")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stderr
    assert set(workspace.incoming.iterdir()) == before
    echo = subprocess.run(["echoscu", "-aet", SCANNER, "127.0.0.1", str(port)],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert echo.returncode == 0, echo.stderr
    log = listen_log(workspace)
    assert "INTRUDER" in log and "calling AE title is not allowed" in log


def test_a_cut_off_dataset_gets_a_failure_status_and_leaves_nothing(
    sent: tuple[Workspace, int], tmp_path: Path
) -> None:
    workspace, port = sent
    original = Path(get_testdata_file("CT_small.dcm"))
    data = original.read_bytes()
    meta_end = len(data) - len(dataset_bytes(original))
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(data[: meta_end + (len(data) - meta_end) // 2])  # cut inside the pixels
    before = set(workspace.incoming.iterdir())
    ae = AE(ae_title=SCANNER)
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    _config.STORE_SEND_CHUNKED_DATASET = True  # sent as bytes: never parsed on our side
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title="MRICURATE")
        assert assoc.is_established
        status = assoc.send_c_store(broken)
        assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False
    assert status.Status == 0xC000
    assert set(workspace.incoming.iterdir()) == before
    assert list(workspace.receiving.iterdir()) == []
    log = listen_log(workspace)
    assert "not a whole DICOM dataset" in log
    uid = str(dcmread(original, stop_before_pixels=True).SOPInstanceUID)
    assert uid not in log and "CompressedSamples" not in log  # no header value is logged
