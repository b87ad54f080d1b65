"""ISMRMRD header validation against data_contracts/ismrmrd.xsd."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import inspect
import types
import typing

import h5py
import ismrmrd.xsd
import pytest
from ismrmrd.xsd import ismrmrdschema as bindings

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


# github.com/ismrmrd/ismrmrd, schema/ismrmrd.xsd at tag v1.15.0 (commit
# 2886c1f4881ddc11b9c99a8890018c703a9216f1): 17,972 bytes with this SHA-256
# (the same file at tags v1.13.4, v1.14.1 and v1.14.2).
PUBLISHED_V1_15_0 = "4959ef96d60d674ccc53e39a795b0422c2ac1ea646a96460d83f8639fe6c9366"


def test_the_shipped_schema_is_the_published_v1_15_0_file_byte_for_byte() -> None:
    data = (data_contracts_root() / "ismrmrd.xsd").read_bytes()
    # Our only addition: one comment (provenance and licence) after the XML declaration.
    declaration, rest = data.split(b"\n", 1)
    assert rest.startswith(b"<!--")
    comment_end = rest.index(b"-->") + len(b"-->")
    published = declaration + b"\n" + rest[comment_end + 1 :]
    assert len(published) == 17972
    assert hashlib.sha256(published).hexdigest() == PUBLISHED_V1_15_0


XS = "{http://www.w3.org/2001/XMLSchema}"


def _local(name: str | None) -> str | None:
    return name.rsplit("}", 1)[-1] if name else None


def _our_types() -> dict[str, tuple[object, ...]]:
    """Every named type of our XSD: element names, types and occurrences, attributes, enums."""
    found: dict[str, tuple[object, ...]] = {}
    for qualified, xsd_type in ismrmrd_schema().types.items():
        name = _local(qualified)
        assert name is not None
        if xsd_type.is_complex():
            elements = []
            for element in xsd_type.content.iter_elements():
                type_name = _local(element.type.name)
                if element.type.name is None and element.type.enumeration:  # a local enum
                    type_name = name + element.local_name[0].upper() + element.local_name[1:]
                    found[type_name] = ("enum", list(element.type.enumeration))
                elif element.type.is_simple() and (
                    element.type.name is None or element.type.name.startswith(XS)
                ):
                    type_name = "builtin"  # xs:long, xs:string ... or a local pattern
                many = element.max_occurs is None or element.max_occurs > 1
                elements.append((element.local_name, type_name, element.min_occurs == 0, many))
            attributes = sorted(_local(a) or "" for a in xsd_type.attributes)
            found[name] = ("complex", elements, attributes)
        elif xsd_type.enumeration:
            found[name] = ("enum", list(xsd_type.enumeration))
    return found


def _binding_types() -> dict[str, tuple[object, ...]]:
    """The same, from the dataclasses the installed ismrmrd package generated from its schema."""
    module = bindings.ismrmrd
    found: dict[str, tuple[object, ...]] = {}

    def describe(hint: object) -> tuple[str, bool, bool]:
        optional = many = False
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
            optional = True
        if typing.get_origin(hint) is list:
            hint, many = typing.get_args(hint)[0], True
        if inspect.isclass(hint) and hint.__module__ == module.__name__:
            return getattr(getattr(hint, "Meta", None), "name", hint.__name__), optional, many
        return "builtin", optional, many

    for class_name, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ != module.__name__:
            continue
        name = getattr(getattr(cls, "Meta", None), "name", class_name)
        if issubclass(cls, enum.Enum):
            found[name] = ("enum", [member.value for member in cls])
        elif dataclasses.is_dataclass(cls):
            hints = typing.get_type_hints(cls, vars(module))
            elements, attributes = [], []
            for f in dataclasses.fields(cls):
                xml_name = f.metadata.get("name", f.name)
                if f.metadata.get("type") == "Attribute":
                    attributes.append(xml_name)
                elif f.metadata.get("type") == "Element":
                    type_name, optional, many = describe(hints[f.name])
                    if many:
                        optional = f.metadata.get("min_occurs", 0) == 0
                    elements.append((xml_name, type_name, optional, many))
            found[name] = ("complex", elements, sorted(attributes))
    return found


def test_the_shipped_schema_is_the_one_of_the_installed_ismrmrd_package() -> None:
    """Type by type, our XSD against the bindings ismrmrd generated from its own schema."""
    ours, theirs = _our_types(), _binding_types()
    assert len(ours) >= 35
    assert sorted(ours) == sorted(theirs)
    assert {name: ours[name] for name in ours if ours[name] != theirs[name]} == {}


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
