"""pydeface's template head, its face and a brain region, as SimpleITK images (``data/``).

The files are derived from pydeface's wheel (MIT, ``data/LICENSE-pydeface.txt``)
by ``scripts/deface_template.py``: the mean head at 2 mm, the face at the
template's 1 mm grid (1 = face), and a conservative brain region at 2 mm
(tissue 10 mm in from the scalp, 15 mm from the face, above the skull
base) for the quality check.  SimpleITK reads NIfTI's RAS into its own
LPS, the DICOM patient system, so no axis is flipped here by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import SimpleITK as sitk

DATA = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Template:
    head: sitk.Image  # float32, 2 mm: what is registered
    inside: sitk.Image  # uint8, 2 mm: the template's head (tissue, holes filled)
    face: sitk.Image  # uint8, 1 mm: 1 where pydeface removes the face
    brain: sitk.Image  # uint8, 2 mm: a region of brain far from the face


@lru_cache(maxsize=1)
def load_template() -> Template:
    """Read the template once per process (about 0.1 s)."""
    head = sitk.ReadImage(str(DATA / "template_2mm.nii.gz"), sitk.sitkFloat32)
    inside = sitk.BinaryFillhole(sitk.OtsuThreshold(head, 0, 1))
    face = sitk.ReadImage(str(DATA / "face_1mm.nii.gz"), sitk.sitkUInt8)
    brain = sitk.ReadImage(str(DATA / "brain_2mm.nii.gz"), sitk.sitkUInt8)
    return Template(head, inside, face, brain)
