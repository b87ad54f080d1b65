"""A head with a face, placed in the scanner under a known pose, as classic or enhanced MR.

Defacing must be shown on heads whose truth is known: where the face is,
where the brain is, which voxel is which.  The phantom is pydeface's mean
head (the template :mod:`pipeline.deface` registers, MIT) moved by a known
rigid pose and resampled onto a scanner grid (sagittal, axial or coronal
slices, any spacing), so the true face and brain on that grid are the
template's masks moved by the same pose.  The patient position (supine,
prone, on either side) turns the image axes in the patient coordinate
system as a scanner does: the same head, the voxels laid out otherwise.

The series carry the PHI the other samples plant (:mod:`pipeline.samples.classic_mr`
and :mod:`pipeline.samples.enhanced_mr` write their headers), so an ingest
test can check the defaced result for leaks too.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from pydicom.dataset import Dataset

from pipeline.deface.template import load_template
from pipeline.samples.classic_mr import add_siemens_private, mr_instance
from pipeline.samples.enhanced_mr import enhanced_instance
from pipeline.samples.exams import BRAIN, SIEMENS
from pipeline.samples.headers import add_acme_block, new_series, sample_uid
from pipeline.samples.subjects import Subject, make_subjects

__all__ = [
    "HeadGrid",
    "HeadPhantom",
    "HeadPose",
    "PatientPosition",
    "SlicePlane",
    "brain_subject",
    "head_datasets",
    "make_head",
    "write_head_series",
]


class SlicePlane(enum.Enum):
    """Image rows and columns in the scanner's frame (as a supine, head-first patient's LPS)."""

    SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


class PatientPosition(enum.Enum):
    """How the patient lies (DICOM PatientPosition) and the turn about the bore axis it makes.

    The scanner's image axes stay where they are; in the patient's own
    coordinates (DICOM's LPS) they turn the other way round: prone by 180°,
    decubitus by 90° one way or the other.
    """

    HFS = ("HFS", 0.0)
    HFP = ("HFP", 180.0)
    HFDL = ("HFDL", 90.0)
    HFDR = ("HFDR", -90.0)

    @property
    def code(self) -> str:
        return self.value[0]

    def to_patient(self) -> npt.NDArray[np.float64]:
        """The rotation from the scanner's frame to the patient's (about the S-I axis)."""
        angle = np.deg2rad(self.value[1])
        c, s = np.cos(angle), np.sin(angle)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class HeadPose:
    """Where the head sits: rotations (degrees, about L-R, A-P, S-I) then a shift (mm, LPS).

    The rotation turns the template head about its own centre; a pitch of
    20° (``rotation_deg=(20, 0, 0)``) tips the chin towards the chest.
    """

    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class HeadGrid:
    """The scanner grid: plane, matrix, spacing, how the patient lies; centred on the head."""

    plane: SlicePlane = SlicePlane.SAGITTAL
    rows: int = 128
    cols: int = 128
    slices: int = 88
    pixel_mm: float = 2.0
    slice_mm: float = 2.0
    position: PatientPosition = PatientPosition.HFS

    def orientation(self) -> tuple[float, float, float, float, float, float]:
        """``ImageOrientationPatient``: the plane's axes turned into the patient's frame."""
        turn = self.position.to_patient()
        o = np.array(self.plane.value)
        row, col = turn @ o[:3], turn @ o[3:]
        values = [round(float(v), 6) + 0.0 for v in (*row, *col)]  # + 0.0: no "-0"
        return values[0], values[1], values[2], values[3], values[4], values[5]


@dataclass(frozen=True)
class HeadPhantom:
    """Stored values ``(slices, rows, cols)`` (uint16, 12 bit) and the truth about them."""

    voxels: npt.NDArray[np.uint16]
    affine: npt.NDArray[np.float64]  # (col, row, slice, 1) -> LPS mm, as pipeline.deface.volume
    face: npt.NDArray[np.bool_]  # the template's face, moved by the pose, on this grid
    brain: npt.NDArray[np.bool_]  # the template's brain region, likewise
    grid: HeadGrid
    pose: HeadPose
    noise: float  # the background's noise level (stored values)

    def positions(self) -> list[list[float]]:
        """``ImagePositionPatient`` of each slice, in slice order."""
        return [[float(v) for v in self.affine[:3, :3] @ (0, 0, k) + self.affine[:3, 3]]
                for k in range(self.voxels.shape[0])]  # fmt: skip


_SCALE = 6.0  # the template's 0..611 to 12-bit stored values
_NOISE = 6.0


def _placement(pose: HeadPose, centre: npt.NDArray[np.float64]) -> sitk.Euler3DTransform:
    """Template point -> scanner point: rotated about ``centre``, then shifted."""
    place = sitk.Euler3DTransform()
    place.SetCenter(tuple(float(v) for v in centre))
    place.SetRotation(*(float(np.deg2rad(a)) for a in pose.rotation_deg))
    place.SetTranslation(tuple(float(v) for v in pose.translation_mm))
    return place


def make_head(
    grid: HeadGrid = HeadGrid(), pose: HeadPose = HeadPose(), seed: int = 0
) -> HeadPhantom:
    """The template head moved by ``pose`` and sampled on ``grid`` (centred on the moved head).

    Background is Rayleigh-like noise (``|N(0, 6)|``), tissue the template's
    intensities times six, so the stored values look like a 12-bit T1.
    """
    template = load_template()
    head = template.head
    centre = np.array(head.TransformContinuousIndexToPhysicalPoint(
        [(n - 1) / 2 for n in head.GetSize()]))  # fmt: skip
    place = _placement(pose, centre)
    target = np.array(place.TransformPoint(tuple(float(v) for v in centre)))
    o = np.array(grid.orientation())
    row_dir, col_dir = o[:3], o[3:]
    normal = np.cross(row_dir, col_dir)
    first = (
        target
        - row_dir * grid.pixel_mm * (grid.cols - 1) / 2
        - col_dir * grid.pixel_mm * (grid.rows - 1) / 2
        - normal * grid.slice_mm * (grid.slices - 1) / 2
    )
    affine = np.eye(4)
    affine[:3, 0] = row_dir * grid.pixel_mm
    affine[:3, 1] = col_dir * grid.pixel_mm
    affine[:3, 2] = normal * grid.slice_mm
    affine[:3, 3] = first
    reference = sitk.Image([grid.cols, grid.rows, grid.slices], sitk.sitkFloat32)
    reference.SetSpacing((grid.pixel_mm, grid.pixel_mm, grid.slice_mm))
    reference.SetOrigin(tuple(float(v) for v in first))
    reference.SetDirection(
        tuple(float(v) for v in np.column_stack([row_dir, col_dir, normal]).flatten())
    )
    back = place.GetInverse()  # scanner point -> template point, what Resample asks for

    def sample(image: sitk.Image, interpolator: int) -> npt.NDArray[np.float32]:
        moved = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), reference, back, interpolator,
                              0.0, sitk.sitkFloat32)  # fmt: skip
        array: npt.NDArray[np.float32] = sitk.GetArrayFromImage(moved)
        return array

    tissue = sample(head, sitk.sitkLinear) * _SCALE
    rng = np.random.default_rng(seed)
    noisy = np.abs(tissue + rng.normal(0.0, _NOISE, size=tissue.shape))
    voxels = np.clip(np.rint(noisy), 0, 4095).astype(np.uint16)
    face = sample(template.face, sitk.sitkLinear) >= 0.5
    brain = sample(template.brain, sitk.sitkNearestNeighbor) > 0
    return HeadPhantom(voxels, affine, face, brain, grid, pose, _NOISE)


def brain_subject(number: int = 0) -> Subject:
    """The ``number``-th generated subject whose exam is a brain (their PHI is planted)."""
    from pipeline.samples.exams import subject_region

    brains = [s for s in make_subjects(2 * number + 2) if subject_region(s) is BRAIN]
    return brains[number]


def head_datasets(
    subject: Subject,
    phantom: HeadPhantom,
    *,
    enhanced: bool = False,
    seed: int = 0,
    series_number: int = 30,
    description: str = "t1_mprage_head",
) -> list[Dataset]:
    """``phantom`` as a classic MR series (one image per slice) or one enhanced MR object.

    The header is the other samples' (Siemens private blocks, planted PHI),
    with the phantom's geometry: orientation, positions, spacing, patient
    position.
    """
    grid = phantom.grid
    protocol = dataclasses.replace(
        BRAIN.protocols[1], name=description, orientation=grid.orientation(),
        slice_thickness=grid.slice_mm,
        acquisition_type="3D" if grid.slice_mm == grid.pixel_mm else "2D",
    )  # fmt: skip
    region = dataclasses.replace(BRAIN, patient_position=grid.position.code)
    series = new_series(
        subject, seed=seed, study_uid=None, series_number=series_number,
        description=description, protocol=protocol, vendor=SIEMENS,
        kind="enhanced-head" if enhanced else "head", region=region,
    )  # fmt: skip
    positions = [[round(v, 4) for v in p] for p in phantom.positions()]
    normal = phantom.affine[:3, 2] / grid.slice_mm
    frames = [phantom.voxels[k].astype("<u2").tobytes() for k in range(grid.slices)]
    if enhanced:
        return [enhanced_instance(
            series, spacing=grid.pixel_mm, positions=positions, step=grid.slice_mm,
            rows=grid.rows, cols=grid.cols, frames=frames,
        )]  # fmt: skip
    uids = [sample_uid("image", series.series_uid, k) for k in range(grid.slices)]
    instances = []
    for k in range(grid.slices):
        ds = mr_instance(
            series, index=k, sop_uid=uids[k], referenced_uid=uids[(k + 1) % grid.slices],
            position=positions[k], location=round(float(np.dot(positions[k], normal)), 4),
            spacing=grid.pixel_mm, step=grid.slice_mm, rows=grid.rows, cols=grid.cols,
            pixels=frames[k], acquisition_number=1,
            acquired=series.start + timedelta(seconds=30 + k),
            image_type=("ORIGINAL", "PRIMARY", "M", "ND"), sequence_name=protocol.sequence_name,
        )  # fmt: skip
        add_siemens_private(ds, series, bvalue=None, direction=None)
        add_acme_block(ds, subject)
        instances.append(ds)
    return instances


def write_head_series(folder: Path, datasets: list[Dataset]) -> list[Path]:
    """Write ``datasets`` as ``folder/IM0001.dcm``...; the paths in slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, ds in enumerate(datasets):
        path = folder / f"IM{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
