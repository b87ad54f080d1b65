"""Real de-identified files to release, made once per session by the real steps.

The generated sample (DICOM studies with planted PHI and Siemens twix of the
same subjects) and five of pydicom's own files (classic, enhanced, JPEG 2000
MR; a 1.494 T Siemens image with overlays from pydicom-data; an ultrasound) go through
``deidentify_tree`` and ``convert_tree --fastmri`` exactly as a run does.
What they wrote is the *staged* tree a publish takes its files from.

Publishing hard-links staged files and makes them read-only: a test that
needs a staged file with other bytes writes a new one in its own folder.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from pipeline.demo import write_raw_sample
from pipeline.dicom.profile import load_profile
from pipeline.keys import SecretKey, generate_key
from pipeline.private_store import PrivateStore
from pipeline.raw.header_rules import load_header_rules
from pipeline.release import DataArea, Publishable, SplitRatios
from pipeline.samples import write_sample_tree
from pipeline.steps.dicom_file import deidentify_tree
from pipeline.steps.raw_file import convert_tree
from tests.release import released

PYDICOM_FILES = (
    "MR_small.dcm",
    "emri_small.dcm",
    "MR2_J2KI.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
)
RATIOS = SplitRatios(train=0.6, validation=0.2, test=0.2)


@dataclass(frozen=True)
class Staged:
    """What the runner wrote: ``root/<area>/...`` for each area, with the key it used."""

    key: SecretKey
    root: Path
    files: tuple[Publishable, ...]

    def subjects(self) -> list[str]:
        return sorted({f.subject for f in self.files})

    def of_area(self, area: DataArea) -> list[Publishable]:
        return [f for f in self.files if f.area is area]


def publishables(root: Path) -> list[Publishable]:
    """Every file the runner released under ``root/<area>/``, as a publish takes it."""
    found = []
    for area in DataArea:
        for path in released(root / area.value):
            relpath = path.relative_to(root / area.value).as_posix()
            found.append(
                Publishable(
                    staged=path,
                    area=area,
                    relpath=relpath,
                    subject=relpath.split("/")[0],
                    item=hashlib.sha256(f"input of {relpath}".encode()).hexdigest(),
                )
            )
    return found


def _copy_pydicom_files(folder: Path, names: Iterable[str]) -> None:
    folder.mkdir(parents=True)
    for name in names:
        path = get_testdata_file(name)
        assert path is not None, f"pydicom test file {name} missing (pydicom-data installed?)"
        shutil.copyfile(path, folder / name)


@pytest.fixture(scope="session")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Staged:
    work = tmp_path_factory.mktemp("staged")
    key = generate_key()
    private_dir = work / "private"
    private_dir.mkdir(mode=0o700)
    private = PrivateStore(private_dir)
    profile = load_profile("research")
    people = write_sample_tree(work / "incoming", n_subjects=2)
    _copy_pydicom_files(work / "incoming" / "pydicom", PYDICOM_FILES)
    out = work / "out"
    # Burned-in text is kept here: the pixel work is not under test, the release is.
    deidentify_tree(
        work / "incoming", out / "dicom", key, profile, private, jobs=1, keep_burned_in=True
    )
    write_raw_sample(work / "incoming-raw", people)
    convert_tree(
        work / "incoming-raw",
        out / "raw",
        key,
        private,
        load_header_rules(),
        date_shift_days=profile.date_shift_days,
        fastmri=out / "fastmri",
        jobs=1,
    )
    files = tuple(publishables(out))
    assert {f.area for f in files} == set(DataArea), "every area has files"
    return Staged(key=key, root=out, files=files)
