"""Build ``pipeline/deface/data/`` from pydeface's wheel (MIT): the template, the face and the brain.

pydeface ships a mean T1 head (``mean_reg2mean.nii.gz``, 176×256×256 at
1 mm, 8 MB) and its face mask (``facemask.nii.gz``: 1 keep, 0 face).  We
register at low resolution only, so the template is stored at 2 mm (int16,
a few hundred kB); the face is stored at the template's own 1 mm grid as
uint8 (1 = face, to be removed: the inverse of pydeface's mask), so the
mask's edge in a 1 mm volume is as fine as pydeface's.  The brain region
the quality check uses is not in pydeface: it is derived here, once, from
the template (tissue above an Otsu threshold, holes filled, eroded 10 mm so
scalp, skull and face go, the largest component kept, nothing closer
than 15 mm to the face, nothing lower than 24 mm below the face's top) and stored at 2 mm.

Run: ``.venv/bin/python scripts/deface_template.py PYDEFACE_WHEEL`` (``pip
download --no-deps pydeface`` fetches the wheel); the outputs are committed.
"""

from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path

import SimpleITK as sitk

OUT = Path(__file__).resolve().parents[1] / "pipeline" / "deface" / "data"


def main(wheel: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as whl:
        for name in ("mean_reg2mean.nii.gz", "facemask.nii.gz"):
            whl.extract(f"pydeface/data/{name}", tmp)
        licence = next(n for n in whl.namelist() if n.endswith("LICENSE.txt"))
        (OUT / "LICENSE-pydeface.txt").write_bytes(whl.read(licence))
        template = sitk.ReadImage(f"{tmp}/pydeface/data/mean_reg2mean.nii.gz", sitk.sitkFloat32)
        keep = sitk.ReadImage(f"{tmp}/pydeface/data/facemask.nii.gz", sitk.sitkFloat32)
    OUT.mkdir(parents=True, exist_ok=True)
    face = sitk.Cast(keep < 0.5, sitk.sitkUInt8)
    face.CopyInformation(template)
    sitk.WriteImage(face, str(OUT / "face_1mm.nii.gz"), useCompression=True)

    coarse = _resampled(template, 2.0)
    sitk.WriteImage(sitk.Cast(coarse, sitk.sitkInt16), str(OUT / "template_2mm.nii.gz"), True)

    smooth = sitk.SmoothingRecursiveGaussian(coarse, 2.0)
    tissue = sitk.OtsuThreshold(smooth, 0, 1)
    tissue = sitk.BinaryFillhole(tissue)
    inner = sitk.BinaryErode(tissue, [5, 5, 5])  # 5 voxels of 2 mm
    components = sitk.RelabelComponent(sitk.ConnectedComponent(inner))
    brain = components == 1
    face_coarse = sitk.Resample(face, coarse, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    distance = sitk.SignedMaurerDistanceMap(
        face_coarse, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
    )
    brain = sitk.And(brain, distance > 15.0)
    # Below the face's top lie the skull base and the neck: not brain.  The
    # template is RAS-aligned (within 3 degrees), so its index k is superior.
    top = int(sitk.GetArrayViewFromImage(face_coarse).any(axis=(1, 2)).nonzero()[0].max())
    above = sitk.Image(brain.GetSize(), sitk.sitkUInt8)
    above.CopyInformation(brain)
    above[:, :, max(0, top - 12) :] = 1
    brain = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.And(brain, above))) == 1
    sitk.WriteImage(sitk.Cast(brain, sitk.sitkUInt8), str(OUT / "brain_2mm.nii.gz"), True)
    for path in sorted(OUT.glob("*.nii.gz")):
        print(path.name, path.stat().st_size)


def _resampled(image: sitk.Image, spacing: float) -> sitk.Image:
    size = [
        round(n * s / spacing) for n, s in zip(image.GetSize(), image.GetSpacing(), strict=True)
    ]
    blurred = sitk.SmoothingRecursiveGaussian(image, spacing / 2)
    return sitk.Resample(
        blurred, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
        [spacing] * 3, image.GetDirection(), 0.0, sitk.sitkFloat32,
    )  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]))
