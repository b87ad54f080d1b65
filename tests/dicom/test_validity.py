"""Output stays valid DICOM: dciodvfy finds no error in it that it did not find in the input.

Run on real files no one here wrote: the test files inside pydicom's wheel,
the ~80 files of the pydicom-data package (an Enhanced MR among them) and the
GDCM vendor samples in ../shared/reference/dicom.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from pipeline.dicom.profile import load_profile
from pipeline.keys import SecretKey
from pipeline.private_store import PrivateStore
from pipeline.samples import write_sample_tree
from pipeline.steps.dicom_file import deidentify_tree
from tests.reference import reference_marks, reference_path

pytestmark = pytest.mark.dciodvfy

_VALUE = re.compile(r"<[^>]*>|\[[^\]]*\]|\b[0-9][0-9.]*\b")


def corpus_folder(corpus: str, tmp_path: Path) -> Path:
    """The corpus's folder; a corpus that is not installed is a reported skip."""
    if corpus == "pydicom":
        return Path(pydicom.__file__).parent / "data" / "test_files"
    if corpus == "generated":
        folder = tmp_path / "generated"
        write_sample_tree(folder, n_subjects=3, slices=3)
        return folder
    if corpus == "vendor-mr":
        return vendor_mr_folder(tmp_path / "vendor-mr")
    if corpus == "pydicom-data":
        try:
            import data_store  # pydicom-data, a dev dependency
        except ImportError:
            pytest.skip("pydicom-data is not installed (pip install -e '.[dev]')")
        return Path(data_store.__file__).parent / "data"
    assert corpus == "reference"
    return reference_path("dicom")


def vendor_mr_folder(folder: Path) -> Path:
    """Objects whose research values live in private elements, or that have no Pixel Data.

    nibabel's real Siemens mosaics (CSA headers, rebuilt) and Philips enhanced
    MR; generated Philips DTI (scale slope, private b-values), classic and
    enhanced; generated MR Spectroscopy (released without pixels).
    """
    import gzip

    import nibabel

    from pipeline.samples import make_subjects, philips_dti_series, philips_enhanced_dti
    from pipeline.samples.spectroscopy import mr_spectroscopy

    folder.mkdir(parents=True)
    nibabel_data = Path(nibabel.__file__).parent / "nicom" / "tests" / "data"
    for name in ("0.dcm", "siemens_dwi_1000.dcm.gz", "philips_mprage.dcm.gz"):
        if (nibabel_data / name).exists():
            data = (nibabel_data / name).read_bytes()
            data = gzip.decompress(data) if name.endswith(".gz") else data
            (folder / name.removesuffix(".gz")).write_bytes(data)
    subject = make_subjects(1)[0]
    generated = philips_dti_series(subject, bvalues=(0, 1000), n_slices=2)
    generated += [philips_enhanced_dti(subject), mr_spectroscopy(subject)]
    for index, ds in enumerate(generated):
        ds.save_as(folder / f"generated{index:02d}.dcm", enforce_file_format=True)
    return folder


CORPORA = [
    "pydicom",
    "generated",  # written by the test from pipeline.samples
    "vendor-mr",  # nibabel's Siemens and Philips files, generated Philips DTI and MR Spectroscopy
    "pydicom-data",
    pytest.param("reference", marks=reference_marks("dicom")),
]


def dciodvfy_errors(path: Path) -> set[str]:
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    # Values differ by design (UIDs, dates); compare the messages without them.
    return {_VALUE.sub("<>", line) for line in lines if line.startswith("Error")}


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed")
@pytest.mark.parametrize("corpus", CORPORA)
def test_no_new_dciodvfy_errors_on_real_files(corpus: str, tmp_path: Path) -> None:
    source = corpus_folder(corpus, tmp_path)
    store = PrivateStore(tmp_path / "private")
    summary = deidentify_tree(
        source,
        tmp_path / "out",
        SecretKey(b"\7" * 32),
        load_profile("research"),
        store,
        jobs=2,
        keep_burned_in=True,
    )
    written = [row for row in store.inputs_for(summary.run_id) if row["outcome"] == "written"]
    assert len(written) >= 3
    regressions = {}
    for row in written:
        before = dciodvfy_errors(Path(str(row["input_path"])))
        after = dciodvfy_errors(tmp_path / "out" / str(row["output_path"]))
        if after - before:
            regressions[Path(str(row["input_path"])).name] = sorted(after - before)
    assert not regressions


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed")
def test_structured_reports_stay_valid_with_clean_structured_content(tmp_path: Path) -> None:
    from pipeline.rulefiles import rules_root
    from pipeline.samples import make_subjects, other_objects

    source = tmp_path / "in"
    source.mkdir()
    bundled = Path(pydicom.__file__).parent / "data" / "test_files"
    for name in ("test-SR.dcm", "reportsi.dcm"):
        shutil.copy(bundled / name, source / name)
    report = other_objects(make_subjects(1)[0])["basic_sr"]
    report.save_as(source / "generated_sr.dcm", enforce_file_format=True)
    option = rules_root() / "dicom" / "options" / "clean_structured_content.yaml"
    site = tmp_path / "sr.yaml"
    site.write_text(f"include: [research.yaml, {option}]\n")
    store = PrivateStore(tmp_path / "private")
    summary = deidentify_tree(
        source, tmp_path / "out", SecretKey(b"\7" * 32), load_profile(site), store
    )
    rows = store.inputs_for(summary.run_id)
    assert [r["outcome"] for r in rows] == ["written"] * 3
    for row in rows:
        before = dciodvfy_errors(Path(str(row["input_path"])))
        after = dciodvfy_errors(tmp_path / "out" / str(row["output_path"]))
        assert after <= before, Path(str(row["input_path"])).name
