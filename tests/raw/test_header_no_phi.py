"""Property: whatever identity a raw header carries, and wherever, none of it is released.

Values are drawn by hypothesis and planted twice over: into the Siemens
protocol the synthetic twix generator writes (so they pass through
``parse_protocol`` and ``ismrmrd_header`` as a scanner's would), and into
the XML of a header from "another converter" — every text field of the
identity sections, a user parameter of any name, an element the schema does
not know.  The anonymized header must hold none of them and still validate.
"""

from __future__ import annotations

import string
import xml.etree.ElementTree as ET
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.identity.uids import UidMapper
from pipeline.keys import SecretKey
from pipeline.raw.header_rules import (
    HeaderAction,
    HeaderContext,
    anonymize_header,
    load_header_rules,
)
from pipeline.raw.protocol import ismrmrd_header, parse_protocol
from pipeline.raw.xsd import validate_header
from pipeline.samples.twix import SyntheticMeasurement, protocol_header

KEY = SecretKey(bytes(range(32)))
RULES = load_header_rules()
CONTEXT = HeaderContext(KEY, "SUBJ-TESTTESTTE", -400, UidMapper(KEY))
NS = "http://www.ismrm.org/ISMRMRD"

# "PHI" + 6-12 capitals and digits: cannot occur by chance in a header.
token = st.text(string.ascii_uppercase + string.digits, min_size=6, max_size=12).map(
    lambda s: "PHI" + s
)
name = st.tuples(token, token).map(lambda parts: "^".join(parts))
digits = st.integers(10**5, 10**6 - 1).map(str)  # a serial number: digits only


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    patient=name, patient_id=token, institution=token, station=token, physician=name,
    serial=digits,
)  # fmt: skip
def test_nothing_planted_in_the_protocol_is_released(
    patient: str, patient_id: str, institution: str, station: str, physician: str, serial: str
) -> None:  # fmt: skip
    # Operators type the patient's name and ID into free text; Clean Descriptors
    # removes this file's own identity from it (not arbitrary words: see clean.py).
    description = f"{patient.split('^')[0]} {patient_id}"
    meas = replace(
        SyntheticMeasurement(), patient_name=patient, patient_id=patient_id,
        institution=institution, institution_address=f"{institution} Street 1,Town,D,DE,1",
        station_name=station, referring_physician=physician,
        study_description=f"Knee {description}", serial=serial,
    )  # fmt: skip
    full = ismrmrd_header(parse_protocol(protocol_header(meas)))
    planted = [*patient.split("^"), patient_id, institution, station, *physician.split("^")]
    assert all(value in full for value in (patient_id, institution)), "the plant did not take"
    out = anonymize_header(full, RULES, CONTEXT)
    validate_header(out)
    assert not [value for value in planted if value in out]
    # The serial number also lives inside the scanner's UIDs; none may survive.
    assert f".{serial}." not in out and f"{serial}_" not in out


@settings(max_examples=25, deadline=None)
@given(values=st.lists(token, min_size=40, max_size=40, unique=True), parameter=token)
def test_nothing_planted_in_another_converters_xml_is_released(
    values: list[str], parameter: str
) -> None:
    """Every text field of the identity sections, a user parameter, an unknown element."""
    root = ET.fromstring(ismrmrd_header(parse_protocol(protocol_header(SyntheticMeasurement()))))
    planted = iter(values)
    family, patient_id = next(planted), next(planted)
    for path, leaf in _leaves(root, ("subjectInformation", "studyInformation",
                                     "measurementInformation")):  # fmt: skip
        action = _action(path)
        if action is HeaderAction.KEEP:
            continue  # kept on purpose (positions, numbers, enumerations)
        if path == "subjectInformation/patientName":
            leaf.text = f"{family}^{next(planted)}"
        elif path == "subjectInformation/patientID":
            leaf.text = patient_id
        elif action is HeaderAction.CLEAN:
            # Clean Descriptors removes the file's own identity from free text.
            leaf.text = f"knee {family} {patient_id}"
        elif action in (HeaderAction.SHIFT, HeaderAction.UID):
            continue  # dates and UIDs have their own tests (shifted, remapped)
        else:
            leaf.text = next(planted)
    unknown = ET.SubElement(root, f"{{{NS}}}vendorPatientRecord")
    unknown.text = next(planted)
    params = root.find(f"{{{NS}}}userParameters")
    if params is None:
        params = ET.SubElement(root, f"{{{NS}}}userParameters")
    entry = ET.SubElement(params, f"{{{NS}}}userParameterString")
    ET.SubElement(entry, f"{{{NS}}}name").text = parameter
    ET.SubElement(entry, f"{{{NS}}}value").text = next(planted)
    out = anonymize_header(ET.tostring(root, encoding="unicode"), RULES, CONTEXT)
    validate_header(out)
    leaked = [v for v in (*values, parameter) if v in out]
    assert not leaked


def _leaves(root: ET.Element, sections: tuple[str, ...]) -> list[tuple[str, ET.Element]]:
    """(path below the root, element) of every leaf in ``sections``."""
    found: list[tuple[str, ET.Element]] = []

    def walk(element: ET.Element, path: str) -> None:
        if not len(element):
            found.append((path, element))
        for child in element:
            walk(child, f"{path}/{child.tag.split('}')[1]}")

    for section in sections:
        element = root.find(f"{{{NS}}}{section}")
        assert element is not None
        walk(element, section)
    return found


def _action(path: str) -> HeaderAction:
    """The rule deciding ``path``: its own, or a kept ancestor's; unnamed paths are dropped."""
    parts = path.split("/")
    for end in range(len(parts), 0, -1):
        rule = RULES.by_path.get("/".join(parts[:end]))
        if rule is not None and (end == len(parts) or rule.action is HeaderAction.KEEP):
            return rule.action
    return HeaderAction.REMOVE
