"""The ISMRMRD header allowlist: loading with file and line, and what survives."""

from __future__ import annotations

import datetime as dt
import pickle
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import pytest

from pipeline.dicom.deidentify import deidentify_dataset
from pipeline.dicom.profile import load_profile
from pipeline.errors import RuleError
from pipeline.identity.subjects import subject_day_offset, subject_key, subject_pseudonym
from pipeline.identity.uids import UidMapper
from pipeline.keys import SecretKey
from pipeline.raw.header_rules import (
    HeaderAction,
    HeaderContext,
    HeaderRules,
    anonymize_header,
    load_header_rules,
    schema_paths,
)
from pipeline.raw.protocol import ismrmrd_header, parse_protocol, subject_hints
from pipeline.raw.xsd import header_violations, validate_header
from tests.dicom.conftest import tiny_mr
from tests.raw.twix_headers import (
    BIRTH,
    NAME,
    PATIENT_ID,
    PLANTED,
    REAL_PHI,
    needs_reference,
    planted_header,
)

KEY = SecretKey(bytes(range(32)))
NS = "http://www.ismrm.org/ISMRMRD"
M = {"m": NS}
FRAME = "1.3.12.2.1107.5.2.19.45385.1.20210622151635693.0.0.0"
LOCALIZER = "1.3.12.2.1107.5.2.19.45385.2021062215210264104627730"


@pytest.fixture(scope="module")
def rules() -> HeaderRules:
    return load_header_rules()


def _context(pseudonym: str = "SUBJ-TESTTESTTE", days: int = -400) -> HeaderContext:
    return HeaderContext(KEY, pseudonym, days, UidMapper(KEY))


def _paths(xml: str) -> set[str]:
    """Element paths below the root, without namespaces."""
    found: set[str] = set()

    def walk(element: ET.Element, prefix: str) -> None:
        for child in element:
            path = f"{prefix}/{child.tag.split('}')[-1]}" if prefix else child.tag.split("}")[-1]
            found.add(path)
            walk(child, path)

    walk(ET.fromstring(xml), "")
    return found


def _allowed(rules: HeaderRules) -> set[str]:
    """Every path the default rules can let through (kept subtrees expanded)."""
    kept = {r.path for r in rules.rules if r.action is not HeaderAction.REMOVE}
    allowed = set(rules.ancestors) | kept
    for path in schema_paths():
        if any(
            path.startswith(f"{k}/")
            for k in kept
            if rules.by_path.get(k) is not None and rules.by_path[k].action is HeaderAction.KEEP
        ):
            allowed.add(path)
    for rule in rules.rules:
        if rule.names:
            allowed |= {rule.path, f"{rule.path}/name", f"{rule.path}/value"}
    return allowed - {""}


# --- what survives ----------------------------------------------------------------

EVERY_FIELD = f"""
<subjectInformation>
  <patientName>{NAME}</patientName><patientWeight_kg>87.5</patientWeight_kg>
  <patientHeight_m>1.93</patientHeight_m><patientID>{PATIENT_ID}</patientID>
  <patientBirthdate>1961-04-17</patientBirthdate><patientGender>F</patientGender>
</subjectInformation>
<studyInformation>
  <studyDate>2021-06-22</studyDate><studyTime>15:16:35</studyTime><studyID>STUDY-Erika</studyID>
  <accessionNumber>7788123</accessionNumber><referringPhysicianName>Dr^Kniegelenk</referringPhysicianName>
  <studyDescription>Knie Mustermann 17.04.1961</studyDescription>
  <studyInstanceUID>1.2.826.0.1.3680043.2.1125.7788123.1</studyInstanceUID>
  <bodyPartExamined>KNEE Erika</bodyPartExamined>
</studyInformation>
<measurementInformation>
  <measurementID>45385_66327770_66327775_358</measurementID>
  <seriesDate>2021-06-22</seriesDate><seriesTime>15:20:01</seriesTime>
  <patientPosition>HFS</patientPosition>
  <relativeTablePosition><x>0</x><y>0</y><z>-12.5</z></relativeTablePosition>
  <initialSeriesNumber>7</initialSeriesNumber>
  <protocolName>gre Mustermann PID-7788123</protocolName>
  <sequenceName>gre_Erika</sequenceName>
  <seriesDescription>t1 Mustermann 17.04.1961 MRC-ROOM-7</seriesDescription>
  <measurementDependency><dependencyType>Noise</dependencyType>
    <measurementID>45385_66327770_66327775_357</measurementID></measurementDependency>
  <seriesInstanceUIDRoot>1.3.12.2.1107.5.2.19.45385</seriesInstanceUIDRoot>
  <frameOfReferenceUID>{FRAME}</frameOfReferenceUID>
  <referencedImageSequence><referencedSOPInstanceUID>{LOCALIZER}</referencedSOPInstanceUID></referencedImageSequence>
</measurementInformation>
"""
MORE_PHI = ("STUDY-Erika", "Kniegelenk", "45385_66327770", "1.2.826.0.1.3680043.2.1125")


def _with_every_field(full: str) -> str:
    """The full header with the three identity sections replaced by EVERY_FIELD."""
    root = ET.fromstring(full)
    for name in ("subjectInformation", "studyInformation", "measurementInformation"):
        element = root.find(f"m:{name}", M)
        if element is not None:
            root.remove(element)
    fragment = ET.fromstring(f'<x xmlns="{NS}">{EVERY_FIELD}</x>')
    for index, element in enumerate(fragment, start=1):
        root.insert(index, element)
    system = root.find("m:acquisitionSystemInformation", M)
    assert system is not None
    if system.find("m:stationName", M) is None:
        station = ET.Element(f"{{{NS}}}stationName")
        station.text = "MRC-ROOM-7"
        system.insert(len(system) - 2, station)
    return ET.tostring(root, encoding="unicode")


@pytest.mark.reference
@needs_reference()
@pytest.mark.parametrize("name", ["gre.dat", "epi.dat"])
def test_no_planted_or_real_phi_survives(rules: HeaderRules, name: str) -> None:
    full = ismrmrd_header(parse_protocol(planted_header(name)))
    every = _with_every_field(full)
    for header in (full, every):
        validate_header(header)
        present = [p for p in (*PLANTED, *REAL_PHI) if p in header]
        assert len(present) >= 8  # the test plants what it looks for
        out = anonymize_header(header, rules, _context())
        validate_header(out)
        leaked = [p for p in (*PLANTED, *REAL_PHI, *MORE_PHI) if p.encode() in out.encode()]
        assert leaked == []
        assert _paths(out) <= _allowed(rules)
    out = anonymize_header(every, rules, _context())
    root = ET.fromstring(out)
    assert root.findtext("m:subjectInformation/m:patientID", "", M) == "SUBJ-TESTTESTTE"
    assert root.find("m:subjectInformation/m:patientName", M) is None
    assert root.find("m:subjectInformation/m:patientGender", M) is None
    assert root.find("m:subjectInformation/m:patientWeight_kg", M) is None
    # Free text keeps its clinical words and loses the rest.
    assert root.findtext("m:measurementInformation/m:protocolName", "", M) == "gre"
    assert root.findtext("m:measurementInformation/m:sequenceName", "", M) == "gre"
    assert root.findtext("m:studyInformation/m:bodyPartExamined", "", M) == "KNEE"
    assert root.findtext("m:measurementInformation/m:initialSeriesNumber", "", M) == "7"
    # Dependencies still point at the noise measurement's (pseudonymized) ID.
    meas_ids = [e.text for e in root.iter(f"{{{NS}}}measurementID")]
    assert len(set(meas_ids)) == 2 and all(i and i.startswith("MEAS-") for i in meas_ids)


@pytest.mark.reference
@needs_reference()
def test_raw_and_dicom_get_the_same_pseudonym_shift_and_uids(rules: HeaderRules) -> None:
    full = ismrmrd_header(parse_protocol(planted_header("gre.dat")))
    research = load_profile("research")
    # The DICOM side: an image of the same patient, exam and localizer.
    ds = tiny_mr()
    ds.PatientID = PATIENT_ID
    ds.PatientName = NAME
    ds.StudyDate = "20210622"
    ds.FrameOfReferenceUID = FRAME
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = LOCALIZER
    ctx, _link, _relpath, _carried = deidentify_dataset(ds, KEY, research, UidMapper(KEY))
    # The raw side, as the convert runner derives the subject.
    subject = subject_key(subject_hints(full).patient_id)
    days = subject_day_offset(KEY, subject, research.date_shift_days)
    context = HeaderContext(KEY, subject_pseudonym(KEY, subject), days, UidMapper(KEY))
    root = ET.fromstring(anonymize_header(full, rules, context))

    assert days == ctx.days
    assert root.findtext("m:subjectInformation/m:patientID", "", M) == str(ds.PatientID)
    assert root.findtext("m:measurementInformation/m:frameOfReferenceUID", "", M) == str(
        ds.FrameOfReferenceUID
    )
    refs = root.findall("m:measurementInformation/m:referencedImageSequence/*", M)
    assert refs[0].text == str(ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID)
    assert refs[0].text == UidMapper(KEY).remap(LOCALIZER) != LOCALIZER
    shifted = root.findtext("m:studyInformation/m:studyDate", "", M)
    assert shifted.replace("-", "") == str(ds.StudyDate)
    assert dt.date.fromisoformat(shifted) == dt.date(2021, 6, 22) + dt.timedelta(days=days)
    assert root.findtext("m:studyInformation/m:studyTime", "", M) == "15:16:35"


HAND_WRITTEN = f"""<?xml version="1.0"?>
<!-- exported for {NAME} -->
<ismrmrdHeader xmlns="{NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xsi:schemaLocation="{NS} Mustermann.xsd">
  <version>3</version>
  <subjectInformation><patientName>{NAME}</patientName><patientID>{PATIENT_ID}</patientID>
    <patientBirthdate>{BIRTH[:4]}-{BIRTH[4:6]}-{BIRTH[6:]}</patientBirthdate>
    <patientNickname>Erika</patientNickname></subjectInformation>
  <studyInformation><studyDate>2021-06-22+02:00</studyDate></studyInformation>
  <measurementInformation><patientPosition>FFS</patientPosition><operator>Erika</operator></measurementInformation>
  <acquisitionSystemInformation site="Kniegelenk"><receiverChannels>8</receiverChannels>
    <institutionName>Klinikum Mustermann</institutionName></acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding note="Erika">
    <encodedSpace><matrixSize><x>64</x><y>32</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>600</x><y>300</y><z>6</z></fieldOfView_mm><vendorHint>Erika</vendorHint></encodedSpace>
    <reconSpace><matrixSize><x>32</x><y>32</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>300</x><y>300</y><z>6</z></fieldOfView_mm></reconSpace>
    <encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>31</maximum><center>16</center></kspace_encoding_step_1></encodingLimits>
    <trajectory>cartesian</trajectory>
    <trajectoryDescription><identifier>ConventionalEPI</identifier>
      <userParameterLong><name>etl</name><value>64</value></userParameterLong>
      <userParameterString><name>etl</name><value>Mustermann</value></userParameterString>
      <comment>scanned by Erika</comment></trajectoryDescription>
  </encoding>
  <sequenceParameters><TR>10</TR><TE>3</TE><sequence_type>Flash Mustermann</sequence_type></sequenceParameters>
  <userParameters>
    <userParameterLong><name>EmbeddedRefLinesE1</name><value>24</value></userParameterLong>
    <userParameterLong><name>PatientAgeDays</name><value>7788123</value></userParameterLong>
    <userParameterDouble><name>PatientWeight</name><value>87.5</value></userParameterDouble>
    <userParameterString><name>EmbeddedRefLinesE1</name><value>Kniegelenk</value></userParameterString>
    <userParameterBase64><name>photo</name><value>TXVzdGVybWFubg==</value></userParameterBase64>
  </userParameters>
  <waveformInformation><waveformName>ECG Mustermann</waveformName><waveformType>ecg</waveformType>
    <userParameters><userParameterString><name>lead</name><value>Erika</value></userParameterString></userParameters>
  </waveformInformation>
  <siemensExtras><operator>Erika</operator></siemensExtras>
</ismrmrdHeader>
"""


def test_another_converters_header_keeps_only_the_allowlist(rules: HeaderRules) -> None:
    # Another converter's extensions and attributes make the input itself invalid.
    assert len(header_violations(HAND_WRITTEN)) >= 3
    out = anonymize_header(HAND_WRITTEN, rules, _context(days=10))
    validate_header(out)
    for phi in (
        "Mustermann",
        "Erika",
        "Kniegelenk",
        "7788123",
        "87.5",
        "TXVzdGVybWFubg",
        "2021-06-22",
        "1961-04-17",
    ):
        assert phi not in out
    assert _paths(out) <= _allowed(rules)
    root = ET.fromstring(out)
    assert not root.attrib and not root.find("m:encoding", M).attrib  # type: ignore[union-attr]
    assert root.findtext("m:studyInformation/m:studyDate", "", M) == "2021-07-02+02:00"
    assert root.findtext("m:measurementInformation/m:patientPosition", "", M) == "FFS"
    assert root.findtext("m:sequenceParameters/m:sequence_type", "", M) == "Flash"
    user = root.findall("m:userParameters/*", M)
    assert [(u.tag.split("}")[1], u.findtext("m:name", "", M)) for u in user] == [
        ("userParameterLong", "EmbeddedRefLinesE1")
    ]
    description = root.find("m:encoding/m:trajectoryDescription", M)
    assert description is not None
    assert [c.tag.split("}")[1] for c in description] == ["identifier", "userParameterLong"]
    waveform = root.find("m:waveformInformation", M)
    assert waveform is not None and waveform.findtext("m:waveformName", "", M) == "ECG"
    assert len(waveform.find("m:userParameters", M)) == 0  # type: ignore[arg-type]


def test_a_header_without_namespace_comes_out_in_the_ismrmrd_namespace(rules: HeaderRules) -> None:
    plain = HAND_WRITTEN.replace(f'xmlns="{NS}"', "")
    assert plain != HAND_WRITTEN
    out = anonymize_header(plain, rules, _context())
    validate_header(out)
    assert ET.fromstring(out).tag == f"{{{NS}}}ismrmrdHeader"


@pytest.mark.ismrmrd_tools
def test_ismrmrds_own_generator_keeps_only_the_allowlist(rules: HeaderRules, shepp_logan) -> None:  # type: ignore[no-untyped-def]
    with h5py.File(shepp_logan("-m", "32", "-c", "2", "-C"), "r") as handle:
        xml = handle["dataset/xml"][0].decode()
    assert "ISMRM Synthetic Imaging Lab" in xml
    out = anonymize_header(xml, rules, _context())
    validate_header(out)
    assert "ISMRM Synthetic Imaging Lab" not in out
    # The generator writes no subject: the release still names the pseudonym.
    assert "subjectInformation" not in xml
    assert subject_hints(out).patient_id == "SUBJ-TESTTESTTE"
    assert _paths(out) <= _allowed(rules)
    assert _paths(out) >= {
        "encoding/encodedSpace/matrixSize/x",
        "acquisitionSystemInformation/receiverChannels",
    }


def test_dummy_and_unshiftable_dates(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(BASE + "  - {path: measurementInformation/patientPosition, action: dummy, value: HFS}\n"
                    "  - {path: studyInformation/studyDate, action: shift}\n")  # fmt: skip
    rules = load_header_rules(path)
    out = anonymize_header(
        HAND_WRITTEN.replace("2021-06-22+02:00", "22.06.2021"), rules, _context()
    )
    validate_header(out)
    root = ET.fromstring(out)
    assert root.findtext("m:measurementInformation/m:patientPosition", "", M) == "HFS"
    assert root.find("m:studyInformation", M) is None  # a date that cannot be shifted goes


def test_the_hints_fields_are_pseudonymized_or_gone(rules: HeaderRules) -> None:
    planted = subject_hints(HAND_WRITTEN)
    assert (planted.patient_name, planted.patient_id) == (NAME, PATIENT_ID)
    assert planted.birth_date == "1961-04-17"  # the input does hold a birth date
    out = anonymize_header(HAND_WRITTEN, rules, _context(days=-400))
    hints = subject_hints(out)
    assert hints.patient_id == "SUBJ-TESTTESTTE"
    assert hints.patient_name is None and hints.birth_date is None
    assert "patientBirthdate" not in out
    # Neither date form, nor the birth date shifted like the study date: removed, not moved.
    assert BIRTH not in out and "1961-04-17" not in out
    assert (dt.date(1961, 4, 17) - dt.timedelta(days=400)).isoformat() not in out


# --- loading ----------------------------------------------------------------------

BASE = """\
name: test
rules:
  - {path: experimentalConditions/H1resonanceFrequency_Hz, action: keep}
  - {path: encoding/encodedSpace, action: keep}
  - {path: encoding/reconSpace, action: keep}
  - {path: encoding/encodingLimits, action: keep}
  - {path: encoding/trajectory, action: keep}
"""
BASE_LINES = BASE.count("\n")


def test_the_default_rules_load(rules: HeaderRules) -> None:
    assert rules.name == "ismrmrd-header"
    assert len(rules.digest) == 64
    assert rules.by_path["subjectInformation/patientID"].action is HeaderAction.PSEUDONYM
    assert "subjectInformation/patientName" not in {
        r.path for r in rules.rules if r.action is not HeaderAction.REMOVE
    }
    assert (
        rules.by_path["studyInformation/studyDate"]
        .describe()
        .endswith(
            f"header.yaml:{rules.by_path['studyInformation/studyDate'].source.rsplit(':', 1)[1]})"
        )
    )


BAD_RULES = {
    "typo in a key": ("  - {path: version, acton: keep}\n", "missing key(s): action"),
    "extra key": ("  - {path: version, action: keep, vlaue: 1}\n", "unknown key(s): vlaue"),
    "unknown action": ("  - {path: version, action: scramble}\n", "unknown action 'scramble'"),
    "unknown element": (
        "  - {path: studyInformation/studyDat, action: shift}\n",
        "unknown element path",
    ),
    "twice": ("  - {path: encoding/trajectory, action: remove}\n", "has a rule already"),
    "dummy without value": (
        "  - {path: studyInformation/studyID, action: dummy}\n",
        "needs a 'value'",
    ),
    "pseudonym without kind": (
        "  - {path: subjectInformation/patientID, action: pseudonym}\n",
        "needs 'kind'",
    ),
    "name off a parameter": (
        "  - {path: version, action: keep, name: x}\n",
        "selects userParameter",
    ),
    "parameter without name": (
        "  - {path: userParameters/userParameterLong, action: keep}\n",
        "needs 'name'",
    ),
    "shift on a container": (
        "  - {path: encoding/reconSpace/matrixSize, action: shift}\n",
        "has children",
    ),
    "required child dropped": (
        "  - {path: measurementInformation/protocolName, action: keep}\n",
        "patientPosition",
    ),
    "not a mapping": ("  - version\n", "must be a mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD_RULES))
def test_rule_errors_name_file_and_line(tmp_path: Path, case: str) -> None:
    line, message = BAD_RULES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(BASE + line)
    with pytest.raises(RuleError) as info:
        load_header_rules(path)
    error = info.value
    assert error.path == path and message in error.reason
    expected = BASE_LINES + 1
    assert error.line == expected, str(error)
    assert str(error).startswith(f"{path}:{expected}: ")


def test_yaml_syntax_and_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BASE + "  - {path: version, action: keep\n")
    with pytest.raises(RuleError, match="YAML syntax") as info:
        load_header_rules(path)
    assert info.value.line is not None and info.value.line > BASE_LINES
    path.write_text("name: x\n")
    with pytest.raises(RuleError, match="missing key"):
        load_header_rules(path)


def test_rules_travel_to_worker_processes(rules: HeaderRules) -> None:
    assert pickle.loads(pickle.dumps(rules)) == rules


def test_a_minimal_rule_set_drops_everything_else(tmp_path: Path) -> None:
    path = tmp_path / "minimal.yaml"
    path.write_text(BASE)
    out = anonymize_header(HAND_WRITTEN, load_header_rules(path), _context())
    validate_header(out)
    assert {p.split("/")[0] for p in _paths(out)} == {"experimentalConditions", "encoding"}
