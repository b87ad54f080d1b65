"""ISMRMRD header validation against data_contracts/ismrmrd.xsd."""

from __future__ import annotations

import h5py
import ismrmrd.xsd
import pytest

from pipeline.errors import InputError, UnreadableInput
from pipeline.identity.uids import UidMapper
from pipeline.keys import SecretKey
from pipeline.raw.header_rules import HeaderContext, anonymize_header, load_header_rules
from pipeline.raw.protocol import ismrmrd_header, parse_protocol
from pipeline.raw.xsd import (
    InvalidHeader,
    data_contracts_root,
    header_violations,
    ismrmrd_schema,
    validate_header,
)
from pipeline.reasons import Reason
from tests.raw.twix_headers import needs_reference, planted_header

KEY = SecretKey(bytes(range(32)))
MINIMAL = (
    '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
    "<experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz></experimentalConditions>"
    "<encoding><encodedSpace><matrixSize><x>64</x><y>32</y><z>1</z></matrixSize>"
    "<fieldOfView_mm><x>600</x><y>300</y><z>6</z></fieldOfView_mm></encodedSpace>"
    "<reconSpace><matrixSize><x>32</x><y>32</y><z>1</z></matrixSize>"
    "<fieldOfView_mm><x>300</x><y>300</y><z>6</z></fieldOfView_mm></reconSpace>"
    "<encodingLimits/><trajectory>cartesian</trajectory></encoding></ismrmrdHeader>"
)


def test_the_shipped_schema_is_ismrmrds_with_its_licence() -> None:
    text = (data_contracts_root() / "ismrmrd.xsd").read_text()
    assert "ISMRMRD SOFTWARE LICENSE" in text and "v1.15.0" in text
    assert ismrmrd_schema() is ismrmrd_schema()  # compiled once
    validate_header(MINIMAL)


@pytest.mark.reference
@needs_reference()
@pytest.mark.parametrize("name", ["gre.dat", "epi.dat"])
def test_full_and_anonymized_headers_validate(name: str) -> None:
    full = ismrmrd_header(parse_protocol(planted_header(name)))
    validate_header(full)
    context = HeaderContext(KEY, "SUBJ-0000000000", -500, UidMapper(KEY))
    validate_header(anonymize_header(full, load_header_rules(), context))


@pytest.mark.reference
@needs_reference()
def test_ismrmrds_own_bindings_read_the_anonymized_header() -> None:
    full = ismrmrd_header(parse_protocol(planted_header("gre.dat")))
    context = HeaderContext(KEY, "SUBJ-0000000000", -500, UidMapper(KEY))
    header = ismrmrd.xsd.CreateFromDocument(anonymize_header(full, load_header_rules(), context))
    space = header.encoding[0].encodedSpace
    assert (space.matrixSize.x, space.matrixSize.y, space.matrixSize.z) == (320, 160, 1)
    assert space.fieldOfView_mm.x == 400
    assert header.subjectInformation.patientID == "SUBJ-0000000000"
    assert header.acquisitionSystemInformation.institutionName is None
    assert header.experimentalConditions.H1resonanceFrequency_Hz == 123263034


@pytest.mark.ismrmrd_tools
def test_ismrmrds_own_generator_validates(shepp_logan) -> None:  # type: ignore[no-untyped-def]
    with h5py.File(shepp_logan("-m", "32", "-c", "2", "-C"), "r") as handle:
        validate_header(handle["dataset/xml"][0].decode())


def test_violations_name_paths_never_values() -> None:
    planted = "Mustermann-1961"
    bad = MINIMAL.replace(
        "<experimentalConditions>",
        f"<subjectInformation><patientBirthdate>{planted}</patientBirthdate>"
        f"<patientGender>{planted}</patientGender><nickname>{planted}</nickname>"
        "</subjectInformation><experimentalConditions>",
    ).replace("<trajectory>cartesian</trajectory>", f"<trajectory>{planted}</trajectory>")
    with pytest.raises(InvalidHeader) as info:
        validate_header(bad)
    error = info.value
    assert isinstance(error, InputError) and error.reason is Reason.INVALID_ISMRMRD_HEADER
    assert planted not in str(error)
    assert "/ismrmrdHeader/subjectInformation/patientBirthdate" in error.detail
    assert "nickname" in error.detail  # an unknown element is named by its tag
    assert "/ismrmrdHeader/encoding/trajectory" in error.detail
    assert "{http" not in error.detail


def test_a_missing_required_element_is_reported() -> None:
    without_encoding = MINIMAL[: MINIMAL.index("<encoding>")] + "</ismrmrdHeader>"
    violations = header_violations(without_encoding)
    assert any("encoding" in v and "expected" in v for v in violations)


def test_many_violations_are_summarised() -> None:
    bad = MINIMAL.replace("<x>64</x>", "<x>-1</x>").replace("<y>32</y>", "<y>a</y>")
    bad = bad.replace("<z>6</z>", "<z>b</z>").replace("<x>300</x>", "<x>c</x>")
    bad = bad.replace("<x>600</x>", "<x>d</x>").replace("<y>300</y>", "<y>e</y>")
    with pytest.raises(InvalidHeader, match=r"and \d+ more"):
        validate_header(bad)


def test_not_xml_is_unreadable_and_quotes_nothing() -> None:
    with pytest.raises(UnreadableInput) as info:
        validate_header("<ismrmrdHeader><patientName>Mustermann</ismrmrdHeader>")
    assert "Mustermann" not in str(info.value) and "line 1" in str(info.value)
