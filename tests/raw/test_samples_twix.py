"""Synthetic twix files through the whole conversion, as the bench and other tests use them.

The generator's protocol must be realistic enough for ``ismrmrd_header``,
the allowlist and the schema, with sizes that match the data it writes, and
with every identifying field a real header has planted, so the end-to-end
run below checks that none of them is released.  No reference file needed.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.batch.runner import RunSummary
from pipeline.dicom.profile import load_profile
from pipeline.keys import SecretKey
from pipeline.private_store import PrivateStore
from pipeline.raw.fastmri import export_fastmri
from pipeline.raw.header_rules import load_header_rules
from pipeline.raw.protocol import (
    LEARNING_PHASE_OFFSET,
    ismrmrd_header,
    parse_protocol,
    subject_hints,
)
from pipeline.raw.twix import SYNCDATA_WAVEFORM_ID
from pipeline.raw.xsd import validate_header
from pipeline.reasons import Outcome
from pipeline.samples.twix import (
    MIN_HEADER_BYTES,
    SyntheticMeasurement,
    expected_kspace,
    protocol_header,
    write_vb17_twix,
    write_vd_twix,
)
from pipeline.steps.raw_file import convert_tree
from tests.release import released

NS = {"m": "http://www.ismrm.org/ISMRMRD"}
KEY = SecretKey(bytes(range(32)))
SPAN = load_profile("research").date_shift_days

IMAGE = SyntheticMeasurement(
    channels=4, samples=64, lines=16, slices=2, pmu_every=5, syncdata_every=7, meas_id=2
)
NOISE = replace(IMAGE, noise=True, lines=4, slices=1, pmu_every=0, syncdata_every=0, meas_id=1)
VB17 = replace(IMAGE, channels=3, samples=48, lines=12, slices=1, pmu_every=0, syncdata_every=0,
               meas_id=77, seed=5, contrasts=2)  # fmt: skip


def planted(meas: SyntheticMeasurement) -> dict[str, str]:
    """Every planted identity value, and the forms it could take in a header."""
    birth, exam = meas.birth_date, meas.exam_date
    return {
        "patient name": meas.patient_name,
        "family name": meas.patient_name.split("^")[0],
        "given name": meas.patient_name.split("^")[1],
        "patient ID": meas.patient_id,
        "birth date": birth,
        "birth date (xs:date)": f"{birth[:4]}-{birth[4:6]}-{birth[6:]}",
        "institution": meas.institution,
        "address street": meas.institution_address.split(",")[0],
        "address city": meas.institution_address.split(",")[1],
        "station": meas.station_name,
        "serial number": meas.serial,
        "referring physician": meas.referring_physician.split("^")[0],
        "study description": meas.study_description,
        "exam date": exam,
        "exam date (xs:date)": f"{exam[:4]}-{exam[4:6]}-{exam[6:]}",
        "patient LOID": str(meas.patient_loid),
        "study LOID": str(meas.study_loid),
    }


def _find(root: ET.Element, path: str) -> str:
    return root.findtext(path, "", NS)


def _ints(root: ET.Element, path: str) -> tuple[int, ...]:
    node = root.find(path, NS)
    assert node is not None, path
    return tuple(int(float(c.text or "")) for c in node)


# ---------------------------------------------------------------------------
# The protocol header


@pytest.mark.parametrize("vb17", [False, True], ids=["VE11C", "VB17"])
@pytest.mark.parametrize(
    "meas",
    [IMAGE, replace(IMAGE, partitions=6, slices=1, channels=2, samples=32)],
    ids=["2D", "3D"],
)
def test_the_protocol_makes_a_valid_header_sized_like_the_data(
    meas: SyntheticMeasurement, vb17: bool
) -> None:
    xml = ismrmrd_header(parse_protocol(protocol_header(meas, vb17=vb17)))
    validate_header(xml)
    root = ET.fromstring(xml)
    enc = "m:encoding/m:encodedSpace"
    rec = "m:encoding/m:reconSpace"
    z = meas.partitions
    # Encoded x: the samples of a readout, 2x oversampled; recon x: half of them.
    assert _ints(root, f"{enc}/m:matrixSize") == (meas.samples, meas.lines, z)
    assert _ints(root, f"{rec}/m:matrixSize") == (meas.samples // 2, meas.lines, z)
    assert _ints(root, f"{enc}/m:fieldOfView_mm") == (280, 140, 3)
    assert _ints(root, f"{rec}/m:fieldOfView_mm") == (140, 140, 3)
    limits = "m:encoding/m:encodingLimits"
    assert _ints(root, f"{limits}/m:kspace_encoding_step_1") == (0, meas.lines - 1, meas.lines // 2)
    assert _ints(root, f"{limits}/m:kspace_encoding_step_2") == (0, z - 1, z // 2)
    assert _ints(root, f"{limits}/m:slice") == (0, meas.slices - 1, 0)
    system = "m:acquisitionSystemInformation"
    assert _find(root, f"{system}/m:receiverChannels") == str(meas.channels)
    assert len(root.findall(f"{system}/m:coilLabel", NS)) == meas.channels
    assert _find(root, f"{system}/m:systemFieldStrength_T") == "2.89362"
    assert _find(root, "m:experimentalConditions/m:H1resonanceFrequency_Hz") == "123203045"
    seq = "m:sequenceParameters"
    assert (_find(root, f"{seq}/m:TR"), _find(root, f"{seq}/m:TE")) == ("2800", "27")
    # VB17 writes dFlipAngleDegree, VD and later adFlipAngleDegree[0]: both read.
    assert _find(root, f"{seq}/m:flipAngle_deg") == "150"
    info = "m:measurementInformation"
    assert _find(root, f"{info}/m:protocolName") == "CORPD_FBK"
    assert _find(root, f"{info}/m:patientPosition") == "FFS"
    assert _find(root, f"{info}/m:frameOfReferenceUID") == meas.frame_of_reference
    assert _find(root, "m:studyInformation/m:studyID") == str(meas.study_loid)
    assert _find(root, "m:studyInformation/m:studyDate") == "2024-03-11"
    assert _find(root, "m:studyInformation/m:studyTime") == "09:30:15"


def test_echoes_in_the_data_are_contrasts_in_the_header() -> None:
    meas = replace(IMAGE, contrasts=3)
    root = ET.fromstring(ismrmrd_header(parse_protocol(protocol_header(meas))))
    assert [e.text for e in root.findall("m:sequenceParameters/m:TE", NS)] == ["27", "54", "81"]
    assert _ints(root, "m:encoding/m:encodingLimits/m:contrast") == (0, 2, 0)
    assert expected_kspace(meas).shape == (2, 1, 16, 3, 4, 64)


# Planted values that no ISMRMRD field holds as such (the address) or that a header
# holds only in another form (dates as xs:date): checked in the raw protocol.
RAW_FORMS = ("birth date", "exam date", "address street", "address city")


def test_every_planted_value_reaches_the_full_header() -> None:
    """The allowlist must see them, else the end-to-end test below proves nothing."""
    xml = ismrmrd_header(parse_protocol(protocol_header(IMAGE)))
    values = planted(IMAGE)
    assert not [k for k, v in values.items() if k not in RAW_FORMS and v not in xml]
    hints = subject_hints(xml)
    assert (hints.patient_id, hints.patient_name) == (IMAGE.patient_id, IMAGE.patient_name)
    assert hints.measurement_id == f"{IMAGE.serial}_{IMAGE.patient_loid}_{IMAGE.study_loid}_2"
    header = protocol_header(IMAGE).decode("latin-1")
    assert not [k for k in RAW_FORMS if values[k] not in header]


def test_the_exam_start_comes_from_the_exam_memory_uid() -> None:
    """twixtools reads ExamMemoryUID as a float (underscores are digit separators)."""
    header = protocol_header(IMAGE).replace(b".1.20240311093015412.", b".1.20191231235959000.")
    root = ET.fromstring(ismrmrd_header(parse_protocol(header)))
    assert _find(root, "m:studyInformation/m:studyDate") == "2024-03-11"
    assert _find(root, "m:studyInformation/m:studyTime") == "09:30:15"
    # VB17 headers here have no ExamMemoryUID: the frame of reference's time stamp is used.
    vb = protocol_header(IMAGE, vb17=True).replace(b"093015412", b"101112412")
    root = ET.fromstring(ismrmrd_header(parse_protocol(vb)))
    assert _find(root, "m:studyInformation/m:studyTime") == "10:11:12"


def test_both_flavours_have_the_same_aligned_length() -> None:
    for meas in (IMAGE, NOISE, VB17, SyntheticMeasurement()):
        sizes = {len(protocol_header(meas)), len(protocol_header(meas, vb17=True))}
        assert sizes == {MIN_HEADER_BYTES}
    wide = replace(IMAGE, channels=96, slices=40)
    assert len(protocol_header(wide)) % 32 == 0 and len(protocol_header(wide)) > MIN_HEADER_BYTES


def test_waveform_information_declares_the_ids_the_converter_writes() -> None:
    protocol = parse_protocol(protocol_header(IMAGE))
    assert "waveformInformation" not in ismrmrd_header(protocol)
    xml = ismrmrd_header(protocol, waveforms=True)
    validate_header(xml)
    entries = ET.fromstring(xml).findall("m:waveformInformation", NS)

    def longs(entry: ET.Element) -> dict[str, str]:
        return {
            p.findtext("m:name", "", NS): p.findtext("m:value", "", NS)
            for p in entry.findall("m:userParameters/m:userParameterLong", NS)
        }

    ids = [int(longs(e)["waveformId"]) for e in entries]
    assert ids == [*range(2 * LEARNING_PHASE_OFFSET), SYNCDATA_WAVEFORM_ID]
    # Entries 0-9 in id order: a reader that goes by position finds the same thing.
    kinds = [
        (e.findtext("m:waveformName", "", NS), e.findtext("m:waveformType", "", NS))
        for e in entries
    ]
    first = [("ECG", "ecg"), ("PULS", "pulse"), ("RESP", "respiratory"), ("EXT1", "other"),
             ("EXT2", "other")]  # fmt: skip
    assert kinds == [*first, *first, ("SYNCDATA", "other")]
    phases = [e.findtext("m:userParameters/m:userParameterString/m:value", "", NS) for e in entries]
    assert phases == ["Acquisition"] * 5 + ["Learning"] * 5 + [""]  # SYNCDATA: no phase
    assert [longs(e).get("TriggerChannel") for e in entries[:5]] == [None, "1", "1", "1", "1"]
    # A noise measurement's header may declare them too.
    validate_header(ismrmrd_header(protocol, noise=True, waveforms=True))


# ---------------------------------------------------------------------------
# The whole conversion


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunSummary, Path]:
    """A VD file (noise + image with PMU and other SYNCDATA) and a VB17 file, converted."""
    tmp = tmp_path_factory.mktemp("synthetic")
    source = tmp / "incoming" / f"{IMAGE.patient_name} {IMAGE.patient_id}"
    source.mkdir(parents=True)
    write_vd_twix(source / f"meas_{IMAGE.birth_date}_knee.dat", [NOISE, IMAGE])
    write_vb17_twix(source / "meas_vb17.dat", VB17)
    output = tmp / "release"
    summary = convert_tree(
        source.parent, output, KEY, PrivateStore(tmp / "private"), load_header_rules(),
        date_shift_days=SPAN,
    )  # fmt: skip
    return summary, output


def _outputs(output: Path) -> dict[str, Path]:
    """ "noise", "image" and "vb17" outputs, told apart by shape."""
    found: dict[str, Path] = {}
    for path in output.rglob("*.h5"):
        with h5py.File(path, "r") as f:
            n = f["dataset/data"].shape[0]
        name = (
            "noise" if path.stem.endswith("-noise") else "image" if n == IMAGE.readouts else "vb17"
        )
        found[name] = path
    return found


def test_both_files_are_written_and_validate(converted: tuple[RunSummary, Path]) -> None:
    summary, output = converted
    assert summary.outcomes == {Outcome.WRITTEN: 2}, summary.reasons
    assert (summary.facts["measurements"], summary.facts["noise measurements"]) == (3, 1)
    kinds = {k: n for k, n in summary.facts.items() if k.startswith("input ")}
    assert kinds == {"input twix VD": 1, "input twix VB": 1}
    outputs = _outputs(output)
    assert sorted(outputs) == ["image", "noise", "vb17"]
    for path in outputs.values():
        with h5py.File(path, "r") as f:
            xml = f["dataset/xml"][0]
        validate_header(xml.decode() if isinstance(xml, bytes) else xml)
    with h5py.File(outputs["image"], "r") as f:
        waves = f["dataset/waveforms"][:]
        xml = f["dataset/xml"][0]
    ids = set(waves["head"]["waveform_id"].tolist())
    assert ids == {0, 1, 2, 5, 6, 7, SYNCDATA_WAVEFORM_ID}  # PMU (learning first) and kept SYNCDATA
    # The released header still says which waveform_id is which signal.
    root = ET.fromstring(xml)
    declared = {
        int(entry.findtext("m:value", "", NS))
        for entry in root.iterfind("m:waveformInformation/m:userParameters/m:userParameterLong", NS)
        if entry.findtext("m:name", "", NS) == "waveformId"
    }
    assert ids <= declared


def test_no_planted_value_is_released(converted: tuple[RunSummary, Path]) -> None:
    _, output = converted
    values = {label: v.upper() for m in (IMAGE, VB17) for label, v in planted(m).items()}
    files = released(output)
    assert len(files) == 3
    for path in files:
        rel = str(path.relative_to(output)).upper()
        with h5py.File(path, "r") as f:
            header = f["dataset/xml"][0]
        header = (header.decode() if isinstance(header, bytes) else header).upper()
        leaks = sorted(label for label, v in values.items() if v in header or v in rel)
        assert not leaks, f"{path.name}: {leaks}"
        # Every byte of the file: values long enough not to turn up in random samples.
        data = path.read_bytes().upper()
        leaks = sorted(label for label, v in values.items() if len(v) >= 6 and v.encode() in data)
        assert not leaks, f"{path.name}: {leaks}"


def _check_kspace(path: Path, meas: SyntheticMeasurement) -> None:
    expected = expected_kspace(meas)
    with h5py.File(path, "r") as f:
        rows = f["dataset/data"][:]
    assert len(rows) == meas.readouts
    idx = rows["head"]["idx"]
    seen = set()
    for row, sli, par, lin, eco in zip(
        rows, idx["slice"], idx["kspace_encode_step_2"], idx["kspace_encode_step_1"],
        idx["contrast"], strict=True,
    ):  # fmt: skip
        got = row["data"].view(np.complex64).reshape(meas.channels, meas.samples)
        assert np.array_equal(got.view(np.uint64), expected[sli, par, lin, eco].view(np.uint64))
        seen.add((int(sli), int(par), int(lin), int(eco)))
    assert len(seen) == meas.readouts


def test_kspace_is_bit_identical_to_what_was_generated(
    converted: tuple[RunSummary, Path],
) -> None:
    outputs = _outputs(converted[1])
    _check_kspace(outputs["noise"], NOISE)
    _check_kspace(outputs["image"], IMAGE)
    _check_kspace(outputs["vb17"], VB17)


@pytest.mark.ismrmrd_tools
def test_ismrmrds_cpp_client_reconstructs_the_image_measurement(
    converted: tuple[RunSummary, Path], tmp_path: Path
) -> None:
    if shutil.which("ismrmrd_recon_cartesian_2d") is None:
        pytest.skip("ismrmrd-tools is not installed (the Makefile installs it)")
    work = tmp_path / "recon.h5"
    shutil.copy(_outputs(converted[1])["image"], work)
    done = subprocess.run(
        ["ismrmrd_recon_cartesian_2d", str(work)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    rx, ry = IMAGE.samples // 2, IMAGE.lines
    with h5py.File(work, "r") as f:
        cpp = f["dataset/cpp/data"][:].reshape(ry, rx).T.astype(np.float64)
    # The client fills one buffer with every readout: the last slice's lines win.
    # Its FFT is FFTW's unnormalised backward transform between two fftshifts.
    kspace = expected_kspace(IMAGE)[-1, 0, :, 0].transpose(1, 2, 0).astype(np.complex128)  # c, x, y
    coils = np.fft.fftshift(np.fft.ifft2(np.fft.fftshift(kspace, axes=(1, 2))), axes=(1, 2))
    coils *= IMAGE.samples * IMAGE.lines
    offset = (IMAGE.samples - rx) // 2
    ours = np.sqrt((np.abs(coils[:, offset : offset + rx, :]) ** 2).sum(axis=0))
    np.testing.assert_allclose(cpp, ours, rtol=1e-4, atol=1e-4 * ours.max())


def test_fastmri_export_has_the_knee_layout(
    converted: tuple[RunSummary, Path], tmp_path: Path
) -> None:
    result = export_fastmri(_outputs(converted[1])["image"], tmp_path / "knee.h5")
    shape = (IMAGE.slices, IMAGE.channels, IMAGE.samples, IMAGE.lines)
    assert result.kspace_shape == shape
    assert result.reconstruction_shape == (IMAGE.slices, IMAGE.samples // 2, IMAGE.lines)
    with h5py.File(tmp_path / "knee.h5", "r") as f:
        kspace = f["kspace"][:]
        assert f.attrs["acquisition"] == IMAGE.protocol_name
    # (slices, coils, readout, lines): every generated readout in its column.  The
    # generator's MDHs cut 2 samples before and 1 after (CutOff) and flag odd lines
    # REFLECT: the export zeroes the cut samples and reverses reflected readouts.
    generated = expected_kspace(IMAGE)[:, 0, :, 0]  # slices, lines, coils, samples
    expected = np.zeros(shape, np.complex64)
    pre, post = 2, 1
    for line in range(IMAGE.lines):
        kept = generated[:, line, :, pre : IMAGE.samples - post]
        expected[:, :, pre : IMAGE.samples - post, line] = kept[..., ::-1] if line % 2 else kept
    assert kspace.shape == shape and np.array_equal(kspace, expected)
