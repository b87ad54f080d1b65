"""Objects without Pixel Data: MR Spectroscopy is released, the rest refused with a true reason.

A well-formed object that keeps its content elsewhere (spectra, waveforms,
documents, reports, vendor blobs) is not "truncated"; each refusal says what
the object is and why it stays out.  Real files where there are some
(pydicom's ECG waveform, RT plan and SR, nibabel's Siemens image stripped of
its pixels, pydicom's truncated MR), generated ones where there are none
(MR Spectroscopy, a Siemens CSA Non-Image spectrum).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import pydicom
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from pipeline.dicom.profile import Profile
from pipeline.keys import SecretKey
from pipeline.private_store import PrivateStore
from pipeline.reasons import Reason
from pipeline.samples import make_subjects, other_objects
from pipeline.samples.spectroscopy import mr_spectroscopy, siemens_csa_spectroscopy
from pipeline.steps.dicom_file import deidentify_tree

KEY = SecretKey(b"\x5a" * 32)
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
NIBABEL_DATA = Path(nib.__file__).parent / "nicom" / "tests" / "data"


def run(
    files: dict[str, Dataset | Path], tmp_path: Path, profile: Profile
) -> dict[str, dict[str, object]]:
    """De-identify ``files`` (datasets or real files) in one run; the record row by name."""
    source = tmp_path / "source"
    source.mkdir()
    for name, what in files.items():
        if isinstance(what, Path):
            if not what.exists():
                pytest.skip(f"{what} is not installed")
            shutil.copy(what, source / name)
        else:
            what.save_as(source / name, enforce_file_format=True)
    store = PrivateStore(tmp_path / "private")
    summary = deidentify_tree(source, tmp_path / "out", KEY, profile, store)
    return {Path(str(r["input_path"])).name: r for r in store.inputs_for(summary.run_id)}


def test_mr_spectroscopy_is_released_with_its_spectra_byte_for_byte(
    tmp_path: Path, research: Profile
) -> None:
    subject = make_subjects(1)[0]
    original = mr_spectroscopy(subject)
    spectra = original.SpectroscopyData
    rows = run({"mrs.dcm": original}, tmp_path, research)
    row = rows["mrs.dcm"]
    assert row["outcome"] == "written", row["detail"]
    written = (tmp_path / "out" / str(row["output_path"])).read_bytes()
    out = dcmread(tmp_path / "out" / str(row["output_path"]))
    assert out.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4.2"
    assert out.SpectroscopyData == spectra and spectra in written  # untouched, byte for byte
    assert "PixelData" not in out
    assert out.DataPointColumns == 1024 and out.DataRepresentation == "COMPLEX"
    # its header is de-identified like an image's
    assert out.PatientIdentityRemoved == "YES" and str(out.PatientName).startswith("SUBJ-")
    for value in subject.phi.values():
        assert value.upper().encode("latin-1") not in written.upper(), value


@pytest.mark.dciodvfy
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed")
def test_de_identified_spectroscopy_has_no_dciodvfy_error(
    tmp_path: Path, research: Profile
) -> None:
    rows = run({"mrs.dcm": mr_spectroscopy(make_subjects(1)[0])}, tmp_path, research)
    for path in (
        tmp_path / "source" / "mrs.dcm",
        tmp_path / "out" / str(rows["mrs.dcm"]["output_path"]),
    ):
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        errors = [x for x in (result.stdout + result.stderr).splitlines() if x.startswith("Error")]
        assert errors == [], path.name


def test_siemens_csa_non_image_is_refused_with_its_own_reason(
    tmp_path: Path, research: Profile
) -> None:
    subject = make_subjects(1)[0]
    rows = run(
        {
            "csa_spectroscopy.dcm": siemens_csa_spectroscopy(subject),  # no Pixel Data
            "csa_image.dcm": other_objects(subject)["private_sop"],  # an image under that class
        },
        tmp_path,
        research,
    )
    for row in rows.values():
        assert (row["outcome"], row["reason"]) == ("quarantined", "siemens-csa-non-image")
        detail = str(row["detail"])
        assert "Siemens CSA Non-Image object" in detail and "spectroscopy" in detail  # what
        assert "no rule can clean" in detail and "not on the allowlist" in detail  # why
        assert "truncated" not in detail
    assert "Siemens CSA Non-Image" in Reason.SIEMENS_CSA_NON_IMAGE.text


# Real objects that are well-formed without Pixel Data: (file, reason, what the detail says).
_REAL = {
    "waveform_ecg.dcm": (PYDICOM_FILES / "waveform_ecg.dcm", "sop-class-not-allowed", "a waveform"),
    "rtplan.dcm": (PYDICOM_FILES / "rtplan.dcm", "sop-class-not-allowed", "a radiotherapy object"),
    "reportsi.dcm": (PYDICOM_FILES / "reportsi.dcm", "sop-class-not-allowed", "a structured report"),
    # nibabel's real Siemens MR image, its pixels stripped to keep the test data small
    "csa_slice_norm.dcm": (
        NIBABEL_DATA / "csa_slice_norm.dcm", "image-without-pixel-data", "no Pixel Data element",
    ),
}  # fmt: skip


def test_every_refusal_says_what_the_object_is_never_a_guess(
    tmp_path: Path, research: Profile
) -> None:
    subject = make_subjects(1)[0]
    files: dict[str, Dataset | Path] = {name: path for name, (path, _, _) in _REAL.items()}
    files["encapsulated_pdf.dcm"] = other_objects(subject)["encapsulated_pdf"]
    files["MR_truncated.dcm"] = PYDICOM_FILES / "MR_truncated.dcm"  # really cut short
    rows = run(files, tmp_path, research)
    for name, (_, reason, what) in _REAL.items():
        row = rows[name]
        assert (row["outcome"], row["reason"]) == ("quarantined", reason), name
        assert what in str(row["detail"]), name
        assert "truncated" not in str(row["detail"]), name
    assert "an encapsulated document" in str(rows["encapsulated_pdf.dcm"]["detail"])
    truncated = rows["MR_truncated.dcm"]
    assert truncated["reason"] == "unreadable" and "truncated inside" in str(truncated["detail"])


def test_float_pixel_data_is_pixel_data(research: Profile) -> None:
    """A parametric map keeps its pixels in Float Pixel Data: it is read, and the policy decides."""
    from pipeline.dicom.deidentify import classify
    from pipeline.errors import UnsupportedObject
    from pipeline.read.dicom import read_dicom

    ds = mr_spectroscopy(make_subjects(1)[0])
    del ds.SpectroscopyData
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.30"
    ds.FloatPixelData = b"\0\0\x80\x3f"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    back = read_dicom(buffer.getvalue(), "map")
    with pytest.raises(UnsupportedObject, match="Parametric Map Storage"):
        classify(back, research, keep_burned_in=False)
