"""The Siemens CSA image header is rebuilt from its allowlist, never copied; the series header goes.

Real headers from nibabel's test data (a Siemens DWI mosaic, a DTI mosaic)
and ../shared/reference are decoded by nibabel's own CSA reader, not ours, so
what the rebuilt header says is what research software will read.  Headers
with planted values are written by the samples' independent encoder.
"""

from __future__ import annotations

import gzip
import io
import warnings
from pathlib import Path

import nibabel as nib
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pipeline.dicom.csa import (
    FACT_REBUILT,
    FACT_REMOVED,
    CsaFormatError,
    decode_csa2,
    load_csa_allowlist,
    rebuild_image_header,
)
from pipeline.dicom.deidentify import deidentify_dataset
from pipeline.dicom.profile import Profile, load_profile
from pipeline.errors import RuleError
from pipeline.identity.uids import UidMapper
from pipeline.keys import SecretKey
from pipeline.read.dicom import read_dicom
from pipeline.samples import diffusion_series, encode_csa, make_subjects
from tests.reference import ROOT as REFERENCE
from tests.reference import needs_reference

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # nibabel warns that its DICOM readers are experimental
    from nibabel.nicom import csareader, dicomwrappers

KEY = SecretKey(b"\x29" * 32)
NIBABEL_DATA = Path(nib.__file__).parent / "nicom" / "tests" / "data"
ALLOWLIST = load_csa_allowlist()


def nibabel_file(name: str) -> bytes:
    path = NIBABEL_DATA / name
    if not path.exists():
        pytest.skip(f"nibabel's test data lacks {name}")
    data = path.read_bytes()
    return gzip.decompress(data) if name.endswith(".gz") else data


def deid(ds: Dataset, profile: Profile) -> tuple[Dataset, bytes, tuple[tuple[str, int], ...]]:
    """De-identify, write, read back: what a user of the release gets."""
    _, _, _, facts = deidentify_dataset(ds, KEY, profile, UidMapper(KEY))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    written = buffer.getvalue()
    return dcmread(io.BytesIO(written)), written, facts


def tags_of(header: bytes) -> dict[str, list[object]]:
    """Non-empty fields of a CSA header as nibabel reads them."""
    return {
        name: tag["items"] for name, tag in csareader.read(header)["tags"].items() if tag["items"]
    }


def test_the_allowlist_holds_what_dcm2niix_and_nibabel_read() -> None:
    assert {
        "NumberOfImagesInMosaic", "SliceNormalVector", "B_value", "DiffusionGradientDirection",
        "B_matrix", "MosaicRefAcqTimes", "AcquisitionMatrixText",
    } <= set(ALLOWLIST.fields)  # fmt: skip
    assert all(field.why for field in ALLOWLIST.fields.values())


@pytest.mark.parametrize("name", ["siemens_dwi_1000.dcm.gz", "0.dcm"])
def test_real_header_keeps_exactly_its_allowlisted_fields_with_their_values(name: str) -> None:
    original = dcmread(io.BytesIO(nibabel_file(name)))[0x00291010].value
    rebuilt = rebuild_image_header(original, ALLOWLIST)
    assert rebuilt.data is not None
    before, after = tags_of(original), tags_of(rebuilt.data)
    expected = {n: items for n, items in before.items() if n in ALLOWLIST.fields}
    assert after == expected  # same values, as nibabel parses them
    assert {"NumberOfImagesInMosaic", "SliceNormalVector", "MosaicRefAcqTimes"} <= set(after)
    # Fields with values that are not on the list are gone, and counted.
    gone = set(before) - set(after)
    assert {"ImaCoilString", "SlicePosition_PCS", "UsedChannelMask", "TimeAfterStart"} <= gone
    assert rebuilt.dropped == len(gone)


@needs_reference("heads", "t1_fl2d_sag_hfs")
def test_reference_head_loses_its_coil_string_and_image_history() -> None:
    path = sorted((REFERENCE / "heads" / "t1_fl2d_sag_hfs").glob("*.dcm"))[0]
    original = dcmread(path)[0x00291010].value
    before = tags_of(original)
    assert before["ImageHistory"] and "CC:ComplexAdd" not in before["ImageHistory"]
    after = tags_of(rebuild_image_header(original, ALLOWLIST).data or b"")
    assert "ImageHistory" not in after and "UsedChannelString" not in after
    assert after["ICE_Dims"] == before["ICE_Dims"]


def test_deidentified_real_mosaic_reads_the_same_in_nibabel(research: Profile) -> None:
    """nibabel's DICOM wrapper finds the same mosaic, geometry and diffusion in the release."""
    data = nibabel_file("siemens_dwi_1000.dcm.gz")
    out, written, facts = deid(read_dicom(data, "dwi"), research)
    assert (FACT_REBUILT, 1) in facts
    before = dicomwrappers.wrapper_from_data(dcmread(io.BytesIO(data)))
    after = dicomwrappers.wrapper_from_data(out)
    assert type(after).__name__ == "MosaicWrapper"
    assert after.image_shape == before.image_shape == (128, 128, 48)
    assert (after.get_data() == before.get_data()).all()
    assert (after.affine == before.affine).all()
    assert after.b_value == before.b_value  # nibabel's, from the B matrix: 992.05
    assert abs(after.b_value - 1000) < 10
    assert (after.q_vector == before.q_vector).all()
    assert csareader.get_csa_header(out, "series") is None  # the series header is gone
    assert b"MrPhoenixProtocol" not in written and b"ASCCONV" not in written


def test_field_not_on_the_allowlist_and_the_series_header_are_gone(research: Profile) -> None:
    subject = make_subjects(1)[0]
    (ds,) = diffusion_series(subject, bvalues=(1000,), vendor="SIEMENS")
    block = ds.private_block(0x0029, "SIEMENS CSA HEADER")
    before = tags_of(ds[block.get_tag(0x10)].value)
    assert before["PatientName"] == [subject.phi.patient_name]  # planted, not on the list
    assert "ASCCONV" in ds[block.get_tag(0x20)].value.decode("latin-1")
    out, written, _ = deid(ds, research)
    out_block = out.private_block(0x0029, "SIEMENS CSA HEADER")
    after = tags_of(out[out_block.get_tag(0x10)].value)
    assert "PatientName" not in after and "ImaCoilString" not in after
    assert after["B_value"] == [1000] and after["DiffusionGradientDirection"] == [1.0, 0.0, 0.0]
    assert out_block.get_tag(0x20) not in out  # the series header,
    assert out_block.get_tag(0x18) not in out and out_block.get_tag(0x19) not in out
    family = subject.phi.patient_name.split("^")[0].encode("latin-1")
    assert family.upper() not in written.upper()


def test_allowlisted_field_whose_values_are_not_of_its_form_is_dropped() -> None:
    header = encode_csa(
        {
            "B_value": ["JOHNDOE"],  # not a number
            "NumberOfImagesInMosaic": ["48213977"],  # a number, outside its range
            "SliceNormalVector": ["0.0", "1.0"],  # two values where there are three
            "AcquisitionMatrixText": ["MULLER*JOSE"],  # not its pattern
            "DiffusionGradientDirection": ["1.0\x00SMITH", "0.0", "0.0"],  # text after the NUL
            "ImageHistory": ["CC:ComplexAdd", "Reviewed by Dr SMITH"],  # only the known step stays
            "MosaicRefAcqTimes": ["0.0", "60.0", "120.0", "180.0"],
        },
        vrs={"B_value": ("IS", 6)},
    )
    rebuilt = rebuild_image_header(header, ALLOWLIST)
    assert rebuilt.data is not None
    after = tags_of(rebuilt.data)
    assert after == {
        "DiffusionGradientDirection": [1.0, 0.0, 0.0],
        "ImageHistory": ["CC:ComplexAdd"],
        "MosaicRefAcqTimes": [0.0, 60.0, 120.0, 180.0],
    }
    assert rebuilt.dropped == 4
    for planted in (b"JOHNDOE", b"48213977", b"MULLER", b"SMITH"):
        assert planted not in rebuilt.data


def test_header_that_is_not_csa2_or_keeps_nothing_is_removed(research: Profile) -> None:
    with pytest.raises(CsaFormatError):  # nibabel's real-world broken header: 1001 items
        decode_csa2(nibabel_file("csa_str_1001n_items.bin"))
    subject = make_subjects(1)[0]
    for value in (b"garbage that is no header", encode_csa({"PatientName": ["MULLER^JOSE"]})):
        (ds,) = diffusion_series(subject, bvalues=(0,), vendor="SIEMENS")
        tag = ds.private_block(0x0029, "SIEMENS CSA HEADER").get_tag(0x10)
        ds[tag].value = value
        out, written, facts = deid(ds, research)
        assert tag not in out and (FACT_REMOVED, 1) in facts
        assert b"MULLER" not in written and b"garbage" not in written


def test_without_retain_safe_private_the_profile_removes_it_unread() -> None:
    (ds,) = diffusion_series(make_subjects(1)[0], bvalues=(1000,), vendor="SIEMENS")
    out, _, facts = deid(ds, load_profile("safe-harbor"))
    assert not any(t.group == 0x0029 for t in out.keys())
    assert not any("CSA" in fact for fact, _ in facts)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_a_header_nested_in_a_sequence_is_rebuilt_too(research: Profile, syntax: str) -> None:
    subject = make_subjects(1)[0]
    (ds,) = diffusion_series(subject, bvalues=(1000,), vendor="SIEMENS")
    item = ds.ReferencedImageSequence[0]  # kept with its UIDs remapped
    # lower case: creators are compared upper-cased, so this one counts too
    block = item.private_block(0x0029, "Siemens CSA Header", create=True)
    block.add_new(0x10, "OB", encode_csa({"B_value": ["1000"], "PatientName": ["MULLER^JOSE"]}))
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True)
    out, written, _ = deid(read_dicom(buffer.getvalue(), "nested"), research)
    nested = out.ReferencedImageSequence[0]
    value = nested[nested.private_block(0x0029, "Siemens CSA Header").get_tag(0x10)].value
    assert tags_of(value) == {"B_value": [1000]}
    assert b"MULLER" not in written


def allowlist_file(tmp_path: Path, field: str) -> Path:
    path = tmp_path / "csa.yaml"
    path.write_text(
        f"name: csa\nfields:\n  - {{name: B_value, vr: IS, values: integer, range: [0, 9], why: b}}\n{field}"
    )
    return path


@pytest.mark.parametrize(
    ("field", "message"),
    [
        (
            "  - {name: X, vr: IS, values: integer, range: [0, 1], why: x, colour: red}\n",
            "unknown key(s): colour",
        ),
        ("  - {name: X, vr: XX, values: integer, range: [0, 1], why: x}\n", "vr 'XX'"),
        ("  - {name: X, vr: IS, values: float, range: [0, 1], why: x}\n", "'values' must be"),
        ("  - {name: X, vr: IS, values: integer, why: x}\n", "range: [low, high]"),
        ("  - {name: X, vr: LO, pattern: '((', why: x}\n", "not a regular expression"),
        ("  - {name: X, vr: LO, choices: [A], pattern: 'A', why: x}\n", "exactly one of"),
        ("  - {name: B_value, vr: IS, values: integer, range: [0, 1], why: x}\n", "listed twice"),
        (
            "  - {name: X, vr: IS, values: integer, range: [0, 1], count: 1, max_count: 2, why: x}\n",
            "not both",
        ),
        ("  - {name: X, vr: IS, values: integer, range: [0, 1]}\n", "missing key(s): why"),
    ],
)
def test_allowlist_typo_fails_at_load_with_file_and_line(
    tmp_path: Path, field: str, message: str
) -> None:
    path = allowlist_file(tmp_path, field)
    with pytest.raises(RuleError) as info:
        load_csa_allowlist(path)
    assert info.value.path == path and info.value.line == 4
    assert message in info.value.reason


def test_the_dry_run_shows_the_rebuild(research: Profile) -> None:
    from pipeline.dicom.deidentify import explain

    changes = explain(nibabel_file("siemens_dwi_1000.dcm.gz"), KEY, research)
    (rebuild,) = [c for c in changes if c.action == "rebuild"]
    assert rebuild.path == "(0029,1010)" and rebuild.before == "<11864 bytes>"
    assert rebuild.after is not None and "NumberOfImagesInMosaic" in rebuild.after
    assert rebuild.rule.startswith("csa_image_header.yaml rebuilt")
    assert any(c.path == "(0029,1020)" and c.after is None for c in changes)  # series header
