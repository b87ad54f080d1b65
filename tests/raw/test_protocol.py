"""The twix protocol and the full ISMRMRD header built from it (real Siemens headers)."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET

import h5py
import pytest
import twixtools

from pipeline.errors import UnreadableInput
from pipeline.raw.protocol import ismrmrd_header, parse_protocol, subject_hints
from pipeline.raw.xsd import validate_header
from tests.raw.twix_headers import (
    BIRTH,
    NAME,
    PATIENT_ID,
    REFERENCE,
    buffers,
    needs_reference,
    planted_header,
    reference_header,
    reframe,
)

NS = {"m": "http://www.ismrm.org/ISMRMRD"}

pytestmark = [pytest.mark.reference, needs_reference()]


def _header(name: str, **kwargs: bool) -> ET.Element:
    xml = ismrmrd_header(parse_protocol(reference_header(name)), **kwargs)
    validate_header(xml)
    return ET.fromstring(xml)


def _ints(root: ET.Element, path: str) -> tuple[int, ...]:
    node = root.find(path, NS)
    assert node is not None, path
    return tuple(int(float(c.text or "")) for c in node)


def test_gre_sizes_match_twixtools_geometry_and_the_data() -> None:
    root = _header("gre.dat")
    scans = twixtools.read_twix(str(REFERENCE / "gre.dat"), verbose=False)
    geometry = scans[-1]["geometry"][0]
    readouts = [mdb for mdb in scans[-1]["mdb"] if mdb.is_image_scan()]
    enc = "m:encoding/m:encodedSpace"
    rec = "m:encoding/m:reconSpace"

    # Encoded space includes the 2x readout oversampling, as twixtools' geometry says.
    assert _ints(root, f"{enc}/m:matrixSize") == (320, 160, 1) == tuple(geometry.resolution)
    assert _ints(root, f"{enc}/m:fieldOfView_mm") == (400, 200, 4) == tuple(geometry.fov)
    assert _ints(root, f"{rec}/m:matrixSize") == (160, 160, 1)
    assert _ints(root, f"{rec}/m:fieldOfView_mm") == (200, 200, 4)
    # ... and as the data has it: 160 lines of 320 samples on 2 channels.
    assert len(readouts) == 160
    assert {mdb.data.shape for mdb in readouts} == {(2, 320)}
    lines = sorted(mdb.cLin for mdb in readouts)
    limit = root.find("m:encoding/m:encodingLimits/m:kspace_encoding_step_1", NS)
    assert limit is not None
    assert (int(limit.findtext("m:minimum", "", NS)), int(limit.findtext("m:maximum", "", NS))) == (
        lines[0],
        lines[-1],
    )
    assert int(limit.findtext("m:center", "", NS)) == 80
    assert root.findtext("m:acquisitionSystemInformation/m:receiverChannels", "", NS) == "2"
    labels = root.findall("m:acquisitionSystemInformation/m:coilLabel/m:coilName", NS)
    assert sorted(label.text or "" for label in labels) == ["Body:1:BC", "Body:1:BC2"]


@pytest.mark.parametrize("name", ["gre.dat", "epi.dat"])
def test_parsed_as_twixtools_parses_it(name: str) -> None:
    scans = twixtools.read_twix(str(REFERENCE / name), verbose=False, parse_data=False)
    protocol = parse_protocol(scans[-1]["hdr_str"].tobytes())
    expected = {k: v for k, v in scans[-1]["hdr"].items() if not k.endswith("_raw")}
    assert dict(protocol.sections) == expected
    assert dict(protocol.raw) == {
        k[:-4]: v for k, v in scans[-1]["hdr"].items() if k.endswith("_raw")
    }
    assert "Meas" in repr(protocol) and "DZNE" not in repr(protocol)


def test_gre_sequence_and_system_values() -> None:
    root = _header("gre.dat")
    seq = "m:sequenceParameters"
    assert root.findtext(f"{seq}/m:TR", "", NS) == "10"
    # alTE lists 13 echo times but the protocol has one contrast: only the first counts.
    assert [e.text for e in root.findall(f"{seq}/m:TE", NS)] == ["3"]
    assert root.findtext(f"{seq}/m:flipAngle_deg", "", NS) == "15"
    assert root.findtext(f"{seq}/m:sequence_type", "", NS) == "Flash"
    assert (
        root.findtext("m:experimentalConditions/m:H1resonanceFrequency_Hz", "", NS) == "123263034"
    )
    assert root.findtext("m:acquisitionSystemInformation/m:systemModel", "", NS) == "Skyra"
    assert root.findtext("m:measurementInformation/m:patientPosition", "", NS) == "HFS"
    assert root.findtext("m:encoding/m:trajectory", "", NS) == "cartesian"
    refs = root.findall("m:measurementInformation/m:referencedImageSequence/*", NS)
    assert len(refs) == 3


def test_epi_gets_the_ramp_sampling_description() -> None:
    root = _header("epi.dat")
    assert _ints(root, "m:encoding/m:encodedSpace/m:matrixSize") == (160, 80, 1)
    assert root.findtext("m:sequenceParameters/m:sequence_type", "", NS) == "EPI"
    assert root.findtext("m:sequenceParameters/m:echo_spacing", "", NS) == "0.56"
    description = root.find("m:encoding/m:trajectoryDescription", NS)
    assert description is not None
    assert description.findtext("m:identifier", "", NS) == "ConventionalEPI"
    values = {
        p.findtext("m:name", "", NS): p.findtext("m:value", "", NS)
        for p in description.findall("m:userParameterLong", NS)
    }
    assert values["etl"] == "128" and values["rampUpTime"] == "160"


def test_noise_measurement_header_leaves_out_imaging_parts() -> None:
    root = _header("epi.dat", noise=True)
    assert root.find("m:encoding/m:parallelImaging", NS) is None
    assert root.find("m:encoding/m:trajectoryDescription", NS) is None


def test_planted_subject_reaches_the_full_header_and_the_hints() -> None:
    xml = ismrmrd_header(parse_protocol(planted_header("gre.dat")))
    validate_header(xml)
    hints = subject_hints(xml)
    assert hints.patient_id == PATIENT_ID
    assert hints.patient_name == NAME
    assert hints.birth_date == f"{BIRTH[:4]}-{BIRTH[4:6]}-{BIRTH[6:]}"
    assert hints.frame_of_reference_uid == "1.3.12.2.1107.5.2.19.45385.1.20210622151635693.0.0.0"
    assert hints.series_uid_root == "1.3.12.2.1107.5.2.19.45385"
    assert hints.measurement_id == "45385_66327770_66327775_358"
    assert hints.study_uid is None  # a twix protocol has no study instance UID
    assert hints.study_id == "66327775"  # but the exam's LOID (the same in epi.dat)
    assert subject_hints(ismrmrd_header(parse_protocol(planted_header("epi.dat")))).study_id == (
        hints.study_id
    )
    assert PATIENT_ID not in repr(hints)


def test_hints_from_a_header_without_namespace() -> None:
    xml = (
        "<ismrmrdHeader><subjectInformation><patientID> A17 </patientID></subjectInformation>"
        "<studyInformation><studyInstanceUID>1.2.3</studyInstanceUID></studyInformation>"
        "</ismrmrdHeader>"
    )
    hints = subject_hints(xml)
    assert (hints.patient_id, hints.study_uid, hints.patient_name) == ("A17", "1.2.3", None)


@pytest.mark.ismrmrd_tools
def test_hints_from_ismrmrds_own_generator(shepp_logan) -> None:  # type: ignore[no-untyped-def]
    with h5py.File(shepp_logan("-m", "32", "-c", "2"), "r") as handle:
        xml = handle["dataset/xml"][0].decode()
    assert subject_hints(xml) == type(subject_hints(xml))()


def _broken(data: bytes) -> str:
    with pytest.raises(UnreadableInput) as info:
        parse_protocol(data)
    return info.value.detail


def test_damaged_headers_fail_with_a_reason_that_quotes_nothing() -> None:
    header = planted_header("gre.dat")
    parts, padding = buffers(header)
    cases = {
        "empty": b"",
        "truncated": header[: len(header) // 3],
        "no buffers": struct.pack("<II", 8, 0),
        "garbage": b"\x00\x10\x00\x00\x07\x00\x00\x00" + b"\xff" * 200,
        "lying length": reframe(parts[:1])[:-10],
    }
    for label, data in cases.items():
        detail = _broken(data)
        assert detail, label
        for phi in ("Mustermann", PATIENT_ID, "DZNE"):
            assert phi not in detail, label
    assert len(padding) < 512


def test_a_protocol_without_resonance_frequency_is_refused() -> None:
    parts, padding = buffers(reference_header("gre.dat"))
    stripped = [
        (name, text.replace('"lFrequency"', '"lFrequencyGone"').replace("lFrequency\t", "lGone\t"))
        for name, text in parts
    ]
    with pytest.raises(UnreadableInput, match="resonance frequency"):
        ismrmrd_header(parse_protocol(reframe(stripped, padding)))


def test_string_parameters_are_read_as_written() -> None:
    """twixtools turns ExamMemoryUID into a float (underscores pass as digit separators)."""
    protocol = parse_protocol(reference_header("gre.dat"))
    assert protocol.string("ExamMemoryUID") == "6_0_66327775_20210622_151635_650"
    assert protocol.string("tPatientPosition") == "HFS"
    assert protocol.string("NoSuchParameter") is None
    root = _header("gre.dat")
    assert root.findtext("m:studyInformation/m:studyTime", "", NS) == "15:16:35"
