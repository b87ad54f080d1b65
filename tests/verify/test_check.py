"""The leak check on a real run: nothing in what the engine released, every planted leak found.

Each planted case copies one real output of the session's run (a DICOM file
the research profile wrote, an ISMRMRD or fastMRI file the converter wrote,
a manifest made from them), puts one identifying value of the run's inputs
into it the way a bug or a careless operator would, and checks that the hit
names the right output, kind and place, and that no hit shows a value.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import h5py
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, RLELossless

from pipeline.verify import IdentifierKind, LeakHit, check_outputs, collect_identifiers
from pipeline.verify.normalise import fold
from tests.verify.conftest import ISMRMRD_UID, Run

K = IdentifierKind
Output = tuple[str, Path, str]
CopyOf = Callable[[Output], Output]


def test_a_de_identified_run_has_no_hit(run: Run) -> None:
    areas = {rel.split("/")[0] for _, _, rel in run.outputs}
    assert {"dicom", "raw", "fastmri", "manifests", "README.md", "SHA256SUMS"} <= areas
    # The ISMRMRD input with every identifying field was converted too.
    assert sum(rel.startswith("raw/") for _, _, rel in run.outputs) == 5
    assert check_outputs(run.outputs, run.identifiers) == []


def test_the_run_s_identifiers_hold_what_the_inputs_planted(run: Run) -> None:
    values = {fold(v.value) for v in run.identifiers.values.reveal()}
    for subject in run.subjects:
        phi = subject.phi
        for value in (phi.patient_id, phi.birth_date, phi.accession_number, phi.station_name,
                      phi.institution_name, phi.institution_address, phi.patient_address,
                      phi.other_patient_ids, phi.device_serial_number, phi.referring_physician,
                      phi.operator_name):  # fmt: skip
            assert fold(value) in values
        assert fold(phi.patient_name.rstrip("^")) in {v.rstrip("^") for v in values}


# -- planted leaks ------------------------------------------------------------------


def _dicom(run: Run) -> Output:
    return run.output(".dcm", "dicom/")


def _rewrite(path: Path, change: Callable[[Dataset], None], syntax: str | None = None) -> None:
    ds = dcmread(path)
    change(ds)
    if syntax == RLELossless:
        ds.compress(RLELossless)
    elif syntax is not None:
        ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True)


def _family(run: Run, index: int = 1) -> str:
    return run.subjects[index].phi.patient_name.split("^")[0]


def _input_sop_uid(run: Run) -> str:
    first = next(p for p in sorted((run.incoming / "pacs").rglob("IM0001")) if p.is_file())
    return str(dcmread(first, stop_before_pixels=True).SOPInstanceUID)


def _referenced(uid: str) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        item = Dataset()
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = uid
        ds.ReferencedImageSequence = Sequence([item])

    return change


def _private_in_sequence(value: str) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        item = Dataset()
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = "2.25.1"
        item.private_block(0x0029, "ACME LEAK 1.0", create=True).add_new(0x10, "LO", value)
        ds.ReferencedImageSequence = Sequence([item])

    return change


def _set(keyword: str, value: str) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        setattr(ds, keyword, value)

    return change


def _dicom_case(
    change: Callable[[Run], Callable[[Dataset], None]], syntax: str | None = None
) -> Callable[[Run, CopyOf], Output]:
    def plant(run: Run, copy_of: CopyOf) -> Output:
        output = copy_of(_dicom(run))
        _rewrite(output[1], change(run), syntax)
        return output

    return plant


def _hdf5_attribute(run: Run, copy_of: CopyOf) -> Output:
    output = copy_of(run.output(".h5", "fastmri/"))
    with h5py.File(output[1], "r+") as f:
        f.attrs["patient_name"] = run.subjects[1].phi.patient_name
    return output


def _ismrmrd_xml(run: Run, copy_of: CopyOf) -> Output:
    output = copy_of(run.output(".h5", "raw/"))
    with h5py.File(output[1], "r+") as f:
        xml = f["dataset/xml"][0].decode()
        xml = xml.replace("<studyDescription>Knie</studyDescription>",
                          f"<studyDescription>Knie {_family(run).upper()}</studyDescription>")  # fmt: skip
        assert _family(run).upper() in xml
        del f["dataset/xml"]
        f.create_dataset("dataset/xml", data=[xml.encode()], dtype=h5py.string_dtype())
    return output


def _csv_cell(run: Run, copy_of: CopyOf) -> Output:
    output = copy_of(run.output("files.csv"))
    rows = list(csv.reader(io.StringIO(output[1].read_text())))
    rows[2][0] = run.subjects[0].phi.patient_id  # data row 2, column "subject"
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    output[1].write_text(buffer.getvalue())
    return output


def _parquet_cell(run: Run, copy_of: CopyOf) -> Output:
    output = copy_of(run.output("files.parquet"))
    rows = pq.read_table(output[1]).to_pylist()
    rows[1]["subject"] = run.subjects[0].phi.other_patient_ids.replace("KH", "KH-")
    pq.write_table(pa.Table.from_pylist(rows), output[1])
    return output


def _path(run: Run, copy_of: CopyOf) -> Output:
    key, path, rel = copy_of(_dicom(run))
    return key, path, rel.replace("/SE-", f"/{_family(run, 0).title()}_SE-", 1)


def _json_value(run: Run, copy_of: CopyOf) -> Output:
    output = copy_of(run.output("datapackage.json"))
    document = json.loads(output[1].read_text())
    document["resources"][0]["description"] = f"order {run.subjects[1].phi.accession_number}"
    output[1].write_text(json.dumps(document))
    return output


def _readme_line(run: Run, copy_of: CopyOf) -> Output:
    output = copy_of(run.output("README.md"))
    address = run.subjects[0].phi.institution_address.split(", ")[1]  # "28027 Madrid"
    output[1].write_text(output[1].read_text() + f"Scanned at {address}.\n")
    return output


def _birth_date_dotted(run: Run) -> Callable[[Dataset], None]:
    b = run.subjects[1].phi.birth_date
    return _set("ImageComments", f"geb. {b[6:]}.{b[4:6]}.{b[:4]}")


PLANTED: dict[str, tuple[Callable[[Run, CopyOf], Output], IdentifierKind, str]] = {
    "surname in SeriesDescription": (
        _dicom_case(lambda r: _set("SeriesDescription", f"t2_tse_sag {fold(_family(r))}")),
        K.NAME_PART, "(0008,103E)",
    ),
    "MRN in a private element inside a sequence": (
        _dicom_case(lambda r: _private_in_sequence(r.subjects[0].phi.patient_id[3:])),
        K.PATIENT_ID, "(0008,1140)>item 1>(0029,1010)",
    ),
    "birth date as 25.04.1960 in ImageComments": (
        _dicom_case(_birth_date_dotted), K.BIRTH_DATE, "(0020,4000)",
    ),
    "original SOP UID in ReferencedSOPInstanceUID": (
        _dicom_case(lambda r: _referenced(_input_sop_uid(r))),
        K.ORIGINAL_UID, "(0008,1140)>item 1>(0008,1155)",
    ),
    "the raw input's study UID as the root of a new one": (
        _dicom_case(lambda r: _set("FrameOfReferenceUID", f"{ISMRMRD_UID}.1.7")),
        K.ORIGINAL_UID, "(0020,0052)",
    ),
    "whole name in a deflated output": (
        _dicom_case(lambda r: _set("StudyDescription", "Jürgen Côté"), DeflatedExplicitVRLittleEndian),
        K.PATIENT_NAME, "(0008,1030)",
    ),
    "operator in an RLE-compressed output": (
        _dicom_case(lambda r: _set("OperatorsName", r.subjects[0].phi.operator_name), RLELossless),
        K.PERSON_NAME, "(0008,1070)",
    ),
    "patient name in an HDF5 attribute": (_hdf5_attribute, K.PATIENT_NAME, "hdf5 attribute patient_name"),
    "surname in the ISMRMRD XML": (
        _ismrmrd_xml, K.NAME_PART, "hdf5:/dataset/xml>studyInformation>studyDescription",
    ),
    "MRN in a CSV cell": (_csv_cell, K.PATIENT_ID, "csv column subject row 2"),
    "other ID in a Parquet cell": (_parquet_cell, K.OTHER_ID, "parquet column subject row 2"),
    "surname in the path": (_path, K.NAME_PART, "path"),
    "accession number in JSON": (_json_value, K.ACCESSION_NUMBER, "json $.resources[0].description"),
    "address in the README": (_readme_line, K.ADDRESS, "line 4"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(PLANTED))
def test_a_planted_identifier_is_found_with_its_kind_and_place(
    run: Run, copy_of: CopyOf, case: str
) -> None:
    plant, kind, where = PLANTED[case]
    output = plant(run, copy_of)
    hits = check_outputs([output], run.identifiers)
    assert (kind, where) in {(h.kind, h.where) for h in hits}, hits
    assert {h.output for h in hits} == {output[0]}
    _assert_no_value_shown(run, hits)


def test_every_planted_leak_in_one_call_each_in_its_own_output(run: Run, copy_of: CopyOf) -> None:
    outputs = [plant(run, copy_of) for plant, _, _ in PLANTED.values()]
    hits = check_outputs([*run.outputs, *outputs], run.identifiers)
    found = {(h.output, h.kind, h.where) for h in hits}
    for output, (_, kind, where) in zip(outputs, PLANTED.values(), strict=True):
        assert (output[0], kind, where) in found
    assert {h.output for h in hits} == {o[0] for o in outputs}


def _assert_no_value_shown(run: Run, hits: list[LeakHit]) -> None:
    shown = fold(" ".join(f"{h!r} {h!s} {h.where}" for h in hits))
    for value in run.planted:
        for part in [value, *value.replace("^", " ").split()]:
            if len(part) >= 4:
                assert fold(part) not in shown, part


# -- what a location may never show -----------------------------------------------------


def test_a_name_that_is_itself_a_leak_is_shown_by_position(run: Run, copy_of: CopyOf) -> None:
    key, path, rel = copy_of(run.output(".h5", "fastmri/"))
    family = fold(_family(run, 0)).upper()
    mrn = run.subjects[0].phi.patient_id
    with h5py.File(path, "r+") as f:
        f.attrs[family] = mrn
        f.create_dataset(f"notes_{family}", data=mrn.encode())
    hits = check_outputs([(key, path, rel)], run.identifiers)
    wheres = {h.where for h in hits}
    assert all(family.lower() not in w.lower() for w in wheres), wheres
    assert {h.kind for h in hits} == {K.NAME_PART, K.PATIENT_ID}
    assert any(w.startswith("hdf5 attribute name") for w in wheres)  # the names...
    assert any(w.startswith("hdf5 name of object") for w in wheres)
    assert any(w.startswith("hdf5 attribute #") for w in wheres)  # ...and their values
    assert any(w.startswith("hdf5:/object") for w in wheres)


def test_an_output_that_cannot_be_read_is_a_hit(run: Run, copy_of: CopyOf, tmp_path: Path) -> None:
    key, path, rel = copy_of(_dicom(run))
    path.write_bytes(path.read_bytes()[:200])
    broken_h5 = tmp_path / "broken.h5"
    broken_h5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    broken_parquet = tmp_path / "broken.parquet"
    broken_parquet.write_bytes(b"PAR1 not really")
    outputs = [
        (key, path, rel),
        ("h5", broken_h5, "raw/broken.h5"),
        ("pq", broken_parquet, "manifests/broken.parquet"),
        ("gone", tmp_path / "missing.csv", "manifests/missing.csv"),
    ]
    hits = check_outputs(outputs, run.identifiers)
    assert {(h.output, h.kind) for h in hits} == {(o[0], K.UNREADABLE_OUTPUT) for o in outputs}
    assert {h.where for h in hits if h.output == "gone"} == {"file (ENOENT)"}


# -- no false alarm ---------------------------------------------------------------------


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    """An input named like DICOM vocabulary, and an output that says ordinary things."""
    source = dcmread(_path_of("MR_small.dcm"))
    source.PatientName = "HEAD^KNEE^M"
    source.PatientSex = "M"
    source.PatientID = "7"
    source.StudyID = "1"
    source.PatientBirthDate = "19620314"
    source.AccessionNumber = "2"
    incoming = tmp_path / "input.dcm"
    source.save_as(incoming, enforce_file_format=True)
    out = Dataset()
    out.file_meta = FileMetaDataset()
    out.file_meta.MediaStorageSOPClassUID = source.SOPClassUID
    out.file_meta.MediaStorageSOPInstanceUID = "2.25.1"
    out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out.SOPClassUID, out.SOPInstanceUID = source.SOPClassUID, "2.25.1"
    out.StudyInstanceUID, out.SeriesInstanceUID = "2.25.2", "2.25.3"
    out.Modality, out.Manufacturer = "MR", source.Manufacturer
    out.PatientName = "SUBJ-7K2M9Q4T7R"
    out.PatientID = "SUBJ-7K2M9Q4T7R"
    out.PatientSex = "M"
    out.BodyPartExamined = "HEAD"
    out.StudyDescription = "MR Head Knee protocol"
    out.SeriesDescription = "M 1 2 7"
    out.ImageComments = "knee 14 mm, brain 3 slices"
    out.StudyDate = "19620702"  # a shifted date in the birth year
    out.ContentDate = "19630314"  # a shifted date on the birth day and month
    out.SeriesNumber = "7"
    out.InstanceNumber = "1"
    out.StudyID = ""
    output = tmp_path / "output.dcm"
    out.save_as(output, enforce_file_format=True)
    return incoming, output


def _path_of(name: str) -> Path:
    from pydicom.data import get_testdata_file

    return Path(str(get_testdata_file(name)))


def test_ordinary_words_short_values_and_shifted_dates_are_no_leak(tmp_path: Path) -> None:
    incoming, output = _pair(tmp_path)
    identifiers = collect_identifiers([incoming])
    assert {K.PATIENT_NAME, K.PATIENT_ID, K.OTHER_ID, K.BIRTH_DATE} <= set(identifiers.counts())
    assert check_outputs([("out", output, "dicom/SUBJ-7K2M9Q4T7R/a.dcm")], identifiers) == []
    # The same values where they came from are leaks.
    leaked = dcmread(output)
    leaked.PatientName, leaked.PatientID, leaked.StudyID = "HEAD^KNEE", "7", "1"
    leaked.save_as(output, enforce_file_format=True)
    hits = check_outputs([("out", output, "a.dcm")], identifiers)
    assert {(h.kind, h.where) for h in hits} == {
        (K.PATIENT_NAME, "(0010,0010)"),
        (K.PATIENT_ID, "(0010,0020)"),
        (K.OTHER_ID, "(0020,0010)"),
    }
