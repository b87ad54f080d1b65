"""Real files none of us wrote: every identifier found in its own file, none after the engine.

pydicom's bundled files (a Toshiba MR in JPEG-LS, a GE CT with private
groups and other patient IDs, a deflated secondary capture) and, where
present, the vendor files in ``../shared/reference/dicom``: each identifier
the check collects from a file must be found in that same file, alone (so a
collected value the matcher could not find fails here), and the files the
real engine de-identified from them must have no hit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from pipeline.dicom.profile import load_profile
from pipeline.phi import Phi
from pipeline.private_store import PrivateStore
from pipeline.steps.dicom_file import deidentify_tree
from pipeline.verify import IdentifierKind, Identifiers, check_outputs, collect_identifiers
from tests.reference import ROOT, reference_marks
from tests.verify.conftest import KEY

K = IdentifierKind
PYDICOM = ["MR_small_jpeg_ls_lossless.dcm", "CT_small.dcm", "image_dfl.dcm"]
REFERENCE = sorted(p.name for p in (ROOT / "dicom").glob("*.dcm")) if ROOT.exists() else []


def _file(name: str) -> Path:
    found = get_testdata_file(name)
    return Path(str(found)) if found else ROOT / "dicom" / name


ONE_BY_ONE_UP_TO = 1 << 20  # larger files (a 1.4 MB ultrasound cine): every kind at once


def _assert_each_identifier_found_in_its_own_file(path: Path) -> set[IdentifierKind]:
    identifiers = collect_identifiers([path])
    assert len(identifiers) > 0 and not identifiers.unreadable
    kinds = set(identifiers.counts())
    if path.stat().st_size > ONE_BY_ONE_UP_TO:
        hits = check_outputs([("self", path, "self.dcm")], identifiers)
        assert kinds <= {h.kind for h in hits}
        return kinds
    for identifier in identifiers.values.reveal():
        alone = Identifiers(Phi(frozenset({identifier})), 1)
        hits = check_outputs([("self", path, "self.dcm")], alone)
        assert identifier.kind in {h.kind for h in hits}, repr(identifier)
    return kinds


EXPECTED = {
    "MR_small.dcm": {K.PATIENT_NAME, K.PATIENT_ID, K.ORIGINAL_UID, K.OTHER_ID, K.DEVICE_SERIAL},
    "MR_small_jpeg_ls_lossless.dcm": {K.PATIENT_NAME, K.PATIENT_ID, K.ORIGINAL_UID},
    "CT_small.dcm": {K.PATIENT_NAME, K.PATIENT_ID, K.OTHER_ID, K.STATION, K.INSTITUTION},
    "image_dfl.dcm": {K.ORIGINAL_UID, K.STATION},  # already anonymised: UIDs and its AE title
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_identifier_of_a_pydicom_file_is_found_in_it(name: str) -> None:
    assert _assert_each_identifier_found_in_its_own_file(_file(name)) >= EXPECTED[name]


@pytest.mark.parametrize("name", REFERENCE or ["absent"], ids=REFERENCE or ["absent"])
def test_every_identifier_of_a_vendor_file_is_found_in_it(name: str) -> None:
    for mark in reference_marks("dicom", name):
        if mark.name == "skipif" and mark.args[0]:
            pytest.skip(mark.kwargs["reason"])
    kinds = _assert_each_identifier_found_in_its_own_file(ROOT / "dicom" / name)
    assert K.ORIGINAL_UID in kinds


def test_what_the_engine_released_from_them_has_no_hit(tmp_path: Path) -> None:
    incoming, release, private = tmp_path / "in", tmp_path / "out", tmp_path / "private"
    incoming.mkdir()
    private.mkdir(mode=0o700)
    names = PYDICOM + REFERENCE
    for name in names:
        shutil.copyfile(_file(name), incoming / name)
    deidentify_tree(
        incoming, release, KEY, load_profile("research"), PrivateStore(private), jobs=1,
        keep_burned_in=True,
    )  # fmt: skip
    written = sorted(p for p in release.rglob("*.dcm") if ".mricurate" not in p.parts)
    assert len(written) >= len(PYDICOM)
    syntaxes = {
        str(dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID) for p in written
    }
    assert "1.2.840.10008.1.2.1.99" in syntaxes  # the deflated file stayed deflated
    assert "1.2.840.10008.1.2.4.80" in syntaxes  # and the JPEG-LS one compressed
    identifiers = collect_identifiers([incoming])
    outputs = [(p.name, p, str(p.relative_to(release))) for p in written]
    assert check_outputs(outputs, identifiers) == []
    # The same check on the inputs themselves finds them all.
    hits = check_outputs([(n, incoming / n, n) for n in names], identifiers)
    assert {h.output for h in hits} == set(names)
