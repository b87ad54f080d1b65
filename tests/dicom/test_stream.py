"""The byte-stream path gives what the pydicom path gives, byte for byte, on every file it takes.

``pipeline.read.dicom_stream`` reads a file's top level as pydicom would and
``pipeline.dicom.stream_write`` writes the elements the rules left alone as
the bytes they were read from.  Each file of the generated samples,
pydicom's bundled files, pydicom-data, nibabel's vendor files and
``../shared/reference`` (when present) is de-identified both ways: the same
output bytes, the same edit counts, VR-default counts, doubts, link record,
output path, pre-step facts and dry-run explanations.  Where the stream
reader refuses a file as unreadable, pydicom's reading refuses it with the
same error.  A hypothesis property does the same over generated datasets
(both encodings, nested and private PHI, sequences of both lengths).
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, MRImageStorage

from pipeline.batch.step import Area, Item, WorkerEnv
from pipeline.dicom.deidentify import deidentify_dataset
from pipeline.dicom.profile import Profile, load_profile
from pipeline.dicom.stream_write import write_stream
from pipeline.errors import InputError
from pipeline.identity.uids import UidMapper
from pipeline.read.dicom import is_dicomdir, quiet_pydicom, read_dicom
from pipeline.read.dicom_stream import Decline, StreamRead, read_dicom_stream
from pipeline.samples import write_sample_tree
from pipeline.steps.dicom_file import PYDICOM_FACT, STREAM_FACT, DicomStep
from tests.dicom.conftest import KEY, tiny_mr
from tests.reference import ROOT as REFERENCE

Outcome = tuple[object, ...]


@dataclass(frozen=True)
class Compared:
    """What the corpus gave: files compared per source, declined by reason, refused alike."""

    compared: dict[str, int]
    declined: dict[Decline, int]
    refused: int
    differences: list[str]


def _corpus(tmp: Path) -> dict[str, list[Path]]:
    generated = tmp / "generated"
    write_sample_tree(generated, n_subjects=2, slices=2)
    sources = {
        "generated": generated,
        "pydicom": Path(pydicom.__file__).parent / "data" / "test_files",
    }
    try:
        import data_store  # pydicom-data, a dev dependency

        sources["pydicom-data"] = Path(data_store.__file__).parent / "data"
    except ImportError:
        pass
    import nibabel

    vendor = tmp / "nibabel"
    vendor.mkdir()
    for name in ("0.dcm", "siemens_dwi_1000.dcm.gz", "philips_mprage.dcm.gz"):
        found = Path(nibabel.__file__).parent / "nicom" / "tests" / "data" / name
        if found.exists():
            data = found.read_bytes()
            (vendor / name.removesuffix(".gz")).write_bytes(
                gzip.decompress(data) if name.endswith(".gz") else data
            )
    sources["nibabel"] = vendor
    if (REFERENCE / "dicom").exists():
        sources["reference"] = REFERENCE / "dicom"
    return {
        name: sorted(p for p in folder.rglob("*") if p.is_file() and p.stat().st_size < 8 << 20)
        for name, folder in sources.items()
    }


def _both_ways(data: bytes, profile: Profile, stream: StreamRead) -> tuple[Outcome, Outcome]:
    outcomes = []
    for ds, fast in ((read_dicom(data, "input"), None), (stream.dataset, stream)):
        try:
            ctx, link, relpath, facts = deidentify_dataset(
                ds, KEY, profile, UidMapper(KEY), explain=True
            )
        except InputError as exc:
            outcomes.append((type(exc).__name__, str(exc)))
            continue
        written = write_stream(ds, fast) if fast is not None else None
        if written is None:
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            written = buffer.getvalue()
        outcomes.append(
            (written, dict(ctx.edited), ctx.doubts, dict(ctx.by_default), link, relpath, facts,
             ctx.changes)
        )  # fmt: skip
    return outcomes[0], outcomes[1]


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Compared:
    quiet_pydicom()
    profiles = [load_profile("research"), load_profile("safe-harbor")]
    counts: dict[str, int] = {}
    declined: dict[Decline, int] = {}
    refused = 0
    differences: list[str] = []
    for source, paths in _corpus(tmp_path_factory.mktemp("stream")).items():
        for path in paths:
            data = path.read_bytes()
            try:
                found = read_dicom_stream(data, "input")
            except InputError as exc:
                with pytest.raises(type(exc)) as raised:
                    read_dicom(data, "input")
                if str(raised.value) != str(exc):
                    differences.append(f"{source} {path.name}: refused otherwise")
                refused += 1
                continue
            if isinstance(found, Decline):
                declined[found] = declined.get(found, 0) + 1
                continue
            if is_dicomdir(found.dataset):
                continue  # the step never de-identifies a DICOMDIR
            # Generated files under both profiles; real files under research.
            for profile in profiles if source == "generated" else profiles[:1]:
                found = read_dicom_stream(data, "input")
                assert isinstance(found, StreamRead)
                slow, fast = _both_ways(data, profile, found)
                if slow != fast:
                    differences.append(f"{source} {path.name} ({profile.name})")
            counts[source] = counts.get(source, 0) + 1
    return Compared(counts, declined, refused, differences)


def test_every_file_the_stream_takes_gives_the_pydicom_result(compared: Compared) -> None:
    assert compared.differences == []
    assert compared.compared["generated"] >= 8
    assert compared.compared["pydicom"] >= 80
    assert compared.compared["nibabel"] >= 1


def test_the_stream_takes_most_real_files(compared: Compared) -> None:
    """The encodings it declines are the unusual ones; the rest it reads."""
    taken = sum(compared.compared.values())
    declined = sum(compared.declined.values())
    assert taken > 3 * declined
    assert set(compared.declined) <= set(Decline)
    assert compared.refused > 0  # pydicom's damaged files are refused, and refused alike


def test_pydicom_data_and_reference_are_compared_when_present(compared: Compared) -> None:
    missing = [s for s in ("pydicom-data", "reference") if s not in compared.compared]
    if missing:
        pytest.skip(f"not present: {', '.join(missing)} (pydicom-data, ../shared/reference)")
    assert compared.compared["pydicom-data"] >= 20


def test_the_step_counts_the_path_each_file_took(tmp_path: Path) -> None:
    quiet_pydicom()
    source = tmp_path / "in"
    source.mkdir()
    explicit = tiny_mr()
    explicit.save_as(source / "explicit.dcm", enforce_file_format=True)
    big = tiny_mr()
    big.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.2"
    big.save_as(source / "big.dcm", enforce_file_format=True)
    out = tmp_path / "out"
    out.mkdir()
    step = DicomStep(KEY, load_profile("research"), out, keep_burned_in=True)
    step.setup(WorkerEnv({Area.RELEASE: out}, lambda: None, 64 << 20))
    facts = {
        name: dict(step.run(Item(source / name, 0)).facts) for name in ("explicit.dcm", "big.dcm")
    }
    assert facts["explicit.dcm"].get(STREAM_FACT) == 1
    assert facts["big.dcm"].get(PYDICOM_FACT + Decline.SYNTAX.value) == 1
    assert STREAM_FACT not in facts["big.dcm"]


_TEXT = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0xFF, exclude_characters="\\"),
    max_size=24,
)


@st.composite
def datasets(draw: st.DrawFn) -> tuple[Dataset, bool]:
    """A small MR dataset with drawn PHI, private blocks and sequences, in a drawn encoding."""
    ds = tiny_mr()
    implicit = draw(st.booleans())
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.PatientName = draw(_TEXT)
    ds.PatientID = draw(_TEXT.map(lambda t: t[:16]))
    ds.StudyDescription = draw(_TEXT)
    ds.ImageComments = draw(_TEXT)
    ds.StudyDate = draw(st.sampled_from(["20240311", "", "2024", "19000101"]))
    if draw(st.booleans()):
        ds.SpecificCharacterSet = draw(st.sampled_from(["ISO_IR 100", "ISO_IR 192", ""]))
    item = Dataset()
    item.ReferencedSOPClassUID = MRImageStorage
    item.ReferencedSOPInstanceUID = "1.2.3." + str(draw(st.integers(0, 10**9)))
    item.PatientName = draw(_TEXT)
    ds.ReferencedImageSequence = Sequence([item] * draw(st.integers(0, 2)))
    ds.ReferencedImageSequence.is_undefined_length = draw(st.booleans())
    if draw(st.booleans()):
        block = ds.private_block(0x0029, draw(st.sampled_from(["SIEMENS CSA HEADER", "ACME 1"])),
                                 create=True)  # fmt: skip
        block.add_new(0x10, "LO", draw(_TEXT))
        block.add_new(0x11, "DA", "20240311")
    ds.PixelData = bytes(draw(st.sampled_from([8, 32])))
    ds.Rows, ds.Columns = 2, 2 if len(ds.PixelData) == 8 else 8
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelRepresentation = 0
    return ds, implicit


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=datasets(), profile_name=st.sampled_from(["research", "safe-harbor"]))
def test_generated_datasets_give_the_same_bytes(
    drawn: tuple[Dataset, bool], profile_name: str
) -> None:
    quiet_pydicom()
    ds, _ = drawn
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    found = read_dicom_stream(data, "input")
    assert isinstance(found, StreamRead), found
    slow, fast = _both_ways(data, _PROFILES[profile_name], found)
    assert slow == fast


_PROFILES = {name: load_profile(name) for name in ("research", "safe-harbor")}


def test_file_meta_matches_pydicoms_writer() -> None:
    """The meta group is written here, not by pydicom: the same bytes."""
    quiet_pydicom()
    buffer = io.BytesIO()
    tiny_mr().save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    found = read_dicom_stream(data, "input")
    assert isinstance(found, StreamRead)
    ds = found.dataset
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".1"  # odd length: padded
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = "1.2.3"
    meta.ImplementationVersionName = "ODD"
    ds.file_meta = meta
    expected = io.BytesIO()
    ds.save_as(expected, enforce_file_format=True)
    assert write_stream(ds, found) == expected.getvalue()


def _series_bytes() -> list[bytes]:
    """Slices that share their top-level sequences, in both encodings and both lengths."""
    from pipeline.samples import make_subjects, mr_series

    files = []
    for implicit, undefined in ((False, False), (True, True), (False, True)):
        for index in range(3):
            ds = tiny_mr()
            ds.file_meta.TransferSyntaxUID = (
                ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
            )
            ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{index}"
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            item = Dataset()
            item.ReferencedSOPClassUID = MRImageStorage
            item.ReferencedSOPInstanceUID = "1.2.3.4"
            item.PatientName = "Müller^José"
            ds.ReferencedImageSequence = Sequence([item, item])
            ds.ReferencedImageSequence.is_undefined_length = undefined
            kept = Dataset()
            kept.CodeValue = "T-15780"  # nothing to change: written back as read
            kept.CodingSchemeDesignator = "SRT"
            ds.AnatomicRegionSequence = Sequence([kept])
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            files.append(buffer.getvalue())
    for ds in mr_series(make_subjects(1, seed=3)[0], n_slices=3, rows=8, cols=8):
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append(buffer.getvalue())
    return files


def test_a_remembered_sequence_gives_what_the_rules_give(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sequence memo (pipeline.dicom.engine) changes no byte and no count, on either path.

    Each file is de-identified with the memo emptied first (every sequence
    walked by the rules), then all of them again with the memo kept: the
    later slices of a series then take their sequences from it.
    """
    from pipeline.dicom import engine

    quiet_pydicom()
    profile = load_profile("research")
    files = _series_bytes()

    def run(data: bytes, stream: bool) -> Outcome:
        found = read_dicom_stream(data, "input")
        assert isinstance(found, StreamRead)
        ds = found.dataset if stream else read_dicom(data, "input")
        ctx, link, relpath, facts = deidentify_dataset(ds, KEY, profile, UidMapper(KEY))
        written = write_stream(ds, found) if stream else None
        if written is None:
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            written = buffer.getvalue()
        return (written, dict(ctx.edited), ctx.doubts, dict(ctx.by_default), link, relpath, facts)

    cold = []
    for data in files:
        engine._SEQUENCE_MEMO.clear()
        cold.append(run(data, stream=True))
    walked = []
    real = engine._encoded_sequence
    monkeypatch.setattr(
        engine,
        "_encoded_sequence",
        lambda *a: walked.append(1) or real(*a),  # type: ignore[func-returns-value]
    )
    engine._SEQUENCE_MEMO.clear()
    for stream in (True, False):
        assert [run(data, stream) for data in files] == cold
    # Memoised: each distinct edited sequence is walked once, not once per slice and path.
    assert 0 < len(walked) < len(files)
