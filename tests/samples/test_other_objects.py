"""The non-MR objects hide PHI in pixels, documents and report text; check it is really there."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.samples import Subject, other_objects

from .checks import dciodvfy_errors, roundtrip


def test_other_objects(subjects: list[Subject], tmp_path: Path) -> None:
    subject = subjects[0]
    name = subject.phi.patient_name
    objects = other_objects(subject)
    assert list(objects) == [
        "secondary_capture", "encapsulated_pdf", "basic_sr", "private_sop", "ultrasound",
    ]  # fmt: skip
    read = {key: roundtrip(ds, tmp_path / f"{key}.dcm") for key, ds in objects.items()}

    sc = read["secondary_capture"]
    assert (sc.Modality, sc.ConversionType, sc.BurnedInAnnotation) == ("OT", "WSD", "YES")
    assert sc.BitsAllocated == 8
    text_line, background = sc.pixel_array[8:26], sc.pixel_array[88:]
    assert text_line.max() > 200 > background.max(), "the name is burned into the pixels"

    pdf = read["encapsulated_pdf"]
    document = bytes(pdf.EncapsulatedDocument)
    assert document.startswith(b"%PDF-1.4") and b"%%EOF" in document
    assert name.split("^")[0].encode("latin-1") in document
    assert subject.phi.patient_id.encode() in document

    sr = read["basic_sr"]
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.11"
    items = {item.ValueType: item for item in sr.ContentSequence}
    assert name.split("^")[0] in items["TEXT"].TextValue
    assert items["PNAME"].PersonName == subject.phi.referring_physician

    private = read["private_sop"]
    assert private.SOPClassUID == "1.3.12.2.1107.5.9.1"
    assert private.file_meta.MediaStorageSOPClassUID == "1.3.12.2.1107.5.9.1"

    us = read["ultrasound"]
    assert (us.Modality, us.PhotometricInterpretation, us.SamplesPerPixel) == ("US", "RGB", 3)
    assert us.pixel_array.shape == (us.Rows, us.Columns, 3)


# -- dciodvfy -------------------------------------------------------------------------------


@pytest.mark.dciodvfy
@pytest.mark.parametrize("key", ["secondary_capture", "encapsulated_pdf", "basic_sr", "ultrasound"])
def test_standard_other_objects_pass_dciodvfy(
    subjects: list[Subject], key: str, tmp_path: Path
) -> None:
    path = tmp_path / f"{key}.dcm"
    other_objects(subjects[0])[key].save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
