"""``convert`` end to end: a messy raw folder in, anonymized ISMRMRD out, every input accounted for."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest
import twixtools

from mricurate.cli import main
from pipeline.batch.runner import RunSummary
from pipeline.dicom.profile import load_profile
from pipeline.identity.subjects import subject_key, subject_pseudonym
from pipeline.keys import SecretKey, write_key
from pipeline.private_store import PrivateStore
from pipeline.raw.header_rules import load_header_rules
from pipeline.read.content import file_sha256
from pipeline.reasons import Outcome, Reason
from pipeline.samples.ismrmrd import IsmrmrdSample, write_ismrmrd_sample
from pipeline.steps.raw_file import convert_tree
from tests.raw.twix_headers import (
    PATIENT_ID,
    PLANTED,
    REAL_PHI,
    REFERENCE,
    needs_reference,
    planted_header,
)
from tests.release import released

pytestmark = [pytest.mark.reference, needs_reference()]

KEY = SecretKey(bytes(range(32)))
NS = {"m": "http://www.ismrm.org/ISMRMRD"}
SPAN = load_profile("research").date_shift_days


def _scans(name: str) -> list[dict[str, object]]:
    return list(twixtools.read_twix(str(REFERENCE / name), keep_acqend=True, verbose=False))


def _write_planted(path: Path, name: str, *, noise_first: bool = False) -> None:
    """The reference file with a made-up patient in its protocol (and optionally a noise scan)."""
    scan = _scans(name)[-1]
    scan["hdr_str"] = np.frombuffer(planted_header(name), dtype=np.uint8)
    scans = [scan]
    if noise_first:
        noise = _scans(name)[-1]  # a second read: mdbs hold file handles, no deepcopy
        noise["hdr_str"] = scan["hdr_str"]
        for mdb in noise["mdb"]:  # type: ignore[attr-defined]
            if not mdb.is_flag_set("ACQEND"):
                mdb.clear_all_flags()
                mdb.add_flag("NOISEADJSCAN")
        scans = [noise, scan]
    twixtools.write_twix(scans, str(path))


@pytest.fixture(scope="module")
def raw_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gre with a planted patient (and a noise scan), epi as shipped (masked), junk, a cut file."""
    source = tmp_path_factory.mktemp("raw") / "incoming"
    (source / "Mustermann Erika").mkdir(parents=True)
    _write_planted(source / "Mustermann Erika" / "meas_gre.dat", "gre.dat", noise_first=True)
    shutil.copy(REFERENCE / "epi.dat", source / "meas_epi.dat")
    (source / "notes.dat").write_bytes(b"Mustermann called, knee hurts\n" * 40)
    data = (source / "Mustermann Erika" / "meas_gre.dat").read_bytes()
    (source / "cut.dat").write_bytes(data[: len(data) * 2 // 3])
    write_ismrmrd_sample(source / "other_converter.h5", IsmrmrdSample())
    return source


def _sources(summary: RunSummary) -> dict[str, int]:
    """How each written input's subject was found (the summary's "subject from ..." facts)."""
    prefix = "subject from "
    return {k[len(prefix) :]: n for k, n in summary.facts.items() if k.startswith(prefix)}


def _convert(
    source: Path, tmp: Path, *, jobs: int = 1, subjects: dict[str, tuple[str, str]] | None = None
) -> tuple[RunSummary, Path, PrivateStore]:
    output = tmp / "release"
    private = PrivateStore(tmp / "private")
    summary = convert_tree(
        source, output, KEY, private, load_header_rules(), date_shift_days=SPAN,
        subjects=subjects, jobs=jobs,
    )  # fmt: skip
    return summary, output, private


@pytest.fixture(scope="module")
def converted(
    raw_tree: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[RunSummary, Path, PrivateStore]:
    return _convert(raw_tree, tmp_path_factory.mktemp("out"))


def test_every_input_ends_in_one_outcome(
    converted: tuple[RunSummary, Path, PrivateStore],
) -> None:
    summary, _, private = converted
    assert summary.seen == 5
    assert summary.outcomes == {Outcome.WRITTEN: 2, Outcome.HELD_BACK: 1, Outcome.QUARANTINED: 2}
    assert set(summary.reasons) == {Reason.SUBJECT_UNKNOWN, Reason.UNREADABLE}
    assert len(summary.reasons[Reason.UNREADABLE]) == 2  # the notes and the cut file
    rows = private.inputs_for(summary.run_id)
    assert len(rows) == 5
    for row in rows:
        if row["outcome"] != "written":
            assert (
                private.root / "quarantine" / str(row["sha256"])[:2] / str(row["sha256"])
            ).is_file()
    assert summary.facts["measurements"] == 3 and summary.facts["noise measurements"] == 1


def test_no_planted_or_real_phi_reaches_the_release(
    converted: tuple[RunSummary, Path, PrivateStore],
) -> None:
    _, output, _ = converted
    needles = {v.upper().encode() for v in (*PLANTED, *REAL_PHI)}
    files = released(output)
    assert len(files) == 3
    for path in files:
        data = path.read_bytes().upper()
        rel = str(path.relative_to(output)).upper().encode()
        leaks = sorted(n.decode() for n in needles if n in data or n in rel)
        assert not leaks, f"{path.name}: {leaks}"


def test_recorded_hashes_are_those_of_the_released_files(
    converted: tuple[RunSummary, Path, PrivateStore],
) -> None:
    """The writer hashes its file while it fsyncs it: that hash is what the record holds."""
    summary, output, private = converted
    written = [str(r["sha256"]) for r in private.inputs_for(summary.run_id)]
    recorded = {relpath: sha for _, _, relpath, sha in private.outputs_of_inputs(written)}
    assert len(recorded) == 3
    for relpath, sha in recorded.items():
        assert file_sha256(output / relpath) == sha, relpath


def test_outputs_are_laid_out_by_keyed_tokens(
    converted: tuple[RunSummary, Path, PrivateStore],
) -> None:
    _, output, _ = converted
    pseudonym = subject_pseudonym(KEY, subject_key(PATIENT_ID))
    gre = sorted((output / pseudonym).rglob("*.h5"))
    assert [p.name.endswith("-noise.h5") for p in gre] in ([True, False], [False, True])
    assert len({p.parent for p in gre}) == 1  # one exam, one study folder
    header = ismrmrd.Dataset(str(gre[0]), "dataset", create_if_needed=False).read_xml_header()
    root = ET.fromstring(header)
    assert root.findtext("m:subjectInformation/m:patientID", namespaces=NS) == pseudonym


def test_kspace_is_bit_identical_to_twixtools(
    converted: tuple[RunSummary, Path, PrivateStore],
) -> None:
    _, output, _ = converted
    pseudonym = subject_pseudonym(KEY, subject_key(PATIENT_ID))
    image = next(p for p in (output / pseudonym).rglob("*.h5") if "noise" not in p.name)
    expected = [
        mdb
        for mdb in _scans("gre.dat")[-1]["mdb"]  # type: ignore[attr-defined]
        if not mdb.is_flag_set("ACQEND") and not mdb.is_flag_set("SYNCDATA")
    ]
    with h5py.File(image, "r") as f:
        rows = f["dataset/data"][:]
    assert len(rows) == len(expected)
    for row, mdb in zip(rows, expected, strict=True):
        data = mdb.data.astype(np.complex64)
        got = row["data"].view(np.complex64).reshape(data.shape)
        assert np.array_equal(got, data)
        assert row["head"]["idx"]["kspace_encode_step_1"] == mdb.cLin


def test_the_cpp_client_reconstructs_the_output(
    converted: tuple[RunSummary, Path, PrivateStore], tmp_path: Path
) -> None:
    if shutil.which("ismrmrd_recon_cartesian_2d") is None:
        pytest.skip("ismrmrd-tools is not installed (the Makefile installs it)")
    _, output, _ = converted
    pseudonym = subject_pseudonym(KEY, subject_key(PATIENT_ID))
    image = next(p for p in (output / pseudonym).rglob("*.h5") if "noise" not in p.name)
    work = tmp_path / "recon.h5"
    shutil.copy(image, work)
    done = subprocess.run(
        ["ismrmrd_recon_cartesian_2d", str(work)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    with h5py.File(work, "r") as f:
        images = f["dataset/cpp/data"][:]
    # gre.dat: one slice, 160 x 160 recon matrix (the readout oversampling removed).
    assert images.shape[-2:] == (160, 160)
    cpp = np.abs(images.reshape(160, 160).astype(np.float64))
    # An independent picture of the same scan: k-space from twixtools, numpy's FFT,
    # readout oversampling cropped, root sum of squares over coils.
    kspace = np.zeros((2, 160, 320), np.complex128)
    for mdb in _scans("gre.dat")[-1]["mdb"]:  # type: ignore[attr-defined]
        if mdb.is_image_scan():
            kspace[:, mdb.cLin, :] = mdb.data
    coils = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(1, 2))), axes=(1, 2))
    ours = np.sqrt((np.abs(coils[:, :, 80:240]) ** 2).sum(axis=0))
    correlation = np.corrcoef(cpp.ravel(), ours.ravel())[0, 1]
    assert correlation > 0.99, correlation


def test_a_masked_file_is_released_once_the_mapping_names_it(
    raw_tree: Path, tmp_path: Path
) -> None:
    sha = file_sha256(raw_tree / "meas_epi.dat")
    summary, output, private = _convert(raw_tree, tmp_path, subjects={sha: ("MRN-55", "")})
    assert summary.outcomes[Outcome.WRITTEN] == 3
    assert Reason.SUBJECT_UNKNOWN not in summary.reasons
    assert (output / subject_pseudonym(KEY, subject_key("MRN-55"))).is_dir()
    assert _sources(summary) == {
        "patient ID in the header": 2, "--subjects mapping file": 1,
    }  # fmt: skip
    links = private.links_for(summary.run_id)
    assert {link["patient_id"] for link in links} >= {"MRN-55", PATIENT_ID}


def test_two_jobs_give_the_same_files(raw_tree: Path, tmp_path: Path) -> None:
    one, out1, _ = _convert(raw_tree, tmp_path / "one")
    two, out2, _ = _convert(raw_tree, tmp_path / "two", jobs=2)
    assert one.outcomes == two.outcomes
    names = sorted(p.relative_to(out1) for p in out1.rglob("*.h5"))
    assert names == sorted(p.relative_to(out2) for p in out2.rglob("*.h5"))
    for name in names:
        with h5py.File(out1 / name) as a, h5py.File(out2 / name) as b:
            assert a["dataset/xml"][0] == b["dataset/xml"][0]
            assert np.array_equal(a["dataset/data"]["head"][:], b["dataset/data"]["head"][:])


def test_the_cli_converts_and_says_where_things_went(
    raw_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "keys" / "site.key"
    key_file.parent.mkdir(mode=0o700)
    write_key(key_file, KEY)
    code = main([
        "convert", str(raw_tree), str(tmp_path / "release"), "--key-file", str(key_file),
        "--fastmri", str(tmp_path / "fastmri"),
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "held back" in out and "subject-unknown" in out
    assert "Mustermann" not in out and PATIENT_ID not in out
    fastmri = sorted((tmp_path / "fastmri").rglob("*.h5"))
    assert len(fastmri) == 2  # gre and the other converter's file; noise scans are not exported
    with h5py.File(fastmri[0], "r") as f:
        assert f["kspace"].dtype == np.complex64
        assert f.attrs["patient_id"].startswith("SUBJ-")


def test_a_masked_file_finds_its_subject_through_dicom_of_the_same_session(
    raw_tree: Path, tmp_path: Path
) -> None:
    """epi.dat's patient fields are masked; the scanner's DICOM shares its frame of reference."""
    from pipeline.steps.dicom_file import deidentify_tree
    from tests.dicom.conftest import tiny_mr

    frame = "1.3.12.2.1107.5.2.19.45385.1.20210622151635693.0.0.0"  # epi.dat's
    ds = tiny_mr()
    ds.FrameOfReferenceUID = frame
    ds.PatientID = "MRN-EPI-1"
    dicom = tmp_path / "dicom"
    dicom.mkdir()
    ds.save_as(dicom / "image.dcm", enforce_file_format=True)
    private = PrivateStore(tmp_path / "private")
    deidentify_tree(dicom, tmp_path / "dicom-release", KEY, load_profile("research"), private)

    summary, output, _ = _convert(raw_tree, tmp_path)
    assert Reason.SUBJECT_UNKNOWN not in summary.reasons
    assert _sources(summary)["frame of reference UID shared with de-identified DICOM"] == 1
    (dicom_subject,) = [p.name for p in (tmp_path / "dicom-release").iterdir() if p.name[0] != "."]
    assert (output / dicom_subject).is_dir()  # one subject, one pseudonym on both sides
