"""The step writes and hashes the byte-stream output as pieces, never joined: the same bytes.

:func:`pipeline.dicom.stream_write.write_stream_pieces` hands the writer the
runs of input bytes (views of the file read) and the elements encoded anew;
joining them first would copy the pixel data once more.  The file written
must be exactly :func:`write_stream`'s bytes, and the hash recorded for it
the SHA-256 of the file as it lies on disk.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pipeline.atomic import write_temp
from pipeline.batch.step import Area, Item, WorkerEnv
from pipeline.dicom.deidentify import deidentify_dataset
from pipeline.dicom.profile import load_profile
from pipeline.dicom.stream_write import write_stream, write_stream_pieces
from pipeline.identity.uids import UidMapper
from pipeline.read.dicom import quiet_pydicom
from pipeline.read.dicom_stream import StreamRead, read_dicom_stream
from pipeline.reasons import Outcome
from pipeline.samples import write_sample_tree
from pipeline.steps.dicom_file import STREAM_FACT, DicomStep
from tests.dicom.conftest import KEY


def _inputs(tmp: Path) -> list[Path]:
    """A generated tree's image files, and a real 6 MB radiograph where pydicom-data is installed."""
    write_sample_tree(tmp / "in", n_subjects=1, slices=2)
    found = [
        p for p in sorted((tmp / "in").rglob("*")) if p.is_file() and p.stat().st_size > 10_000
    ]
    try:
        import data_store  # pydicom-data, a dev dependency
    except ImportError:
        return found
    return found + sorted(Path(data_store.__file__).parent.rglob("RG3_UNCR.dcm"))


def test_the_step_writes_and_hashes_the_joined_bytes(tmp_path: Path) -> None:
    quiet_pydicom()
    profile = load_profile("research")
    temp = tmp_path / "tmp"
    temp.mkdir()
    step = DicomStep(KEY, profile, tmp_path / "out")
    step.setup(WorkerEnv({Area.RELEASE: temp}, lambda: None, 512 << 20))
    streamed = 0
    for index, path in enumerate(_inputs(tmp_path)):
        data = path.read_bytes()
        result = step.run(Item(path, index))
        if result.outcome is Outcome.HELD_BACK:
            continue  # a secondary capture, held for burned-in text
        assert result.outcome is Outcome.WRITTEN, path.name
        (candidate,) = result.outputs
        written = Path(candidate.temp).read_bytes()
        assert candidate.sha256 == hashlib.sha256(written).hexdigest()  # either path
        if (STREAM_FACT, 1) not in result.facts:
            continue  # big endian, private syntax...: written by pydicom, whole
        streamed += 1
        # What the pieces join to, de-identified again the same way.
        found = read_dicom_stream(data, "input")
        assert isinstance(found, StreamRead)
        deidentify_dataset(found.dataset, KEY, profile, UidMapper(KEY))
        assert written == write_stream(found.dataset, found), path.name
    assert streamed >= 2


def test_pieces_are_views_of_the_input_not_copies(tmp_path: Path) -> None:
    """The pixel data's run is a view of the bytes read: nothing copies it before the write."""
    quiet_pydicom()
    path = _inputs(tmp_path)[0]
    data = path.read_bytes()
    found = read_dicom_stream(data, "input")
    assert isinstance(found, StreamRead)
    deidentify_dataset(found.dataset, KEY, load_profile("research"), UidMapper(KEY))
    pieces = write_stream_pieces(found.dataset, found)
    assert pieces is not None
    largest = max(pieces, key=len)
    assert isinstance(largest, memoryview) and largest.obj is data
    assert len(largest) >= len(found.dataset.PixelData)


@pytest.mark.parametrize(
    "data",
    [b"whole", memoryview(b"a view alone"), [b"one ", memoryview(b"two three")[:3], b"", b" four"]],
    ids=["bytes", "view", "pieces"],
)
def test_write_temp_and_the_hash_take_pieces(tmp_path: Path, data: object) -> None:
    pieces = [data] if isinstance(data, (bytes, memoryview)) else data
    assert isinstance(pieces, list)
    expected = b"".join(pieces)
    digest = hashlib.sha256()
    written = write_temp(tmp_path, data, digest).read_bytes()  # type: ignore[arg-type]
    assert written == expected
    assert digest.hexdigest() == hashlib.sha256(expected).hexdigest()
