"""One series as one volume: every frame, ordered along the slice normal, with its affine.

A classic series has one image per file; an enhanced object holds every
frame in one file, each with its own position (Per-Frame Functional Groups)
or one shared.  Either way a frame is placed by ``ImagePositionPatient``,
``ImageOrientationPatient`` and ``PixelSpacing``; frames are ordered by
their position along the normal (row direction × column direction), and the
step between neighbours must be one constant spacing.  What cannot be one
volume (gaps, two orientations, two frames at one place, sizes that differ)
is refused with a :class:`AssemblyProblem`: the caller sends the series to
review, it is never defaced by a guess.

The voxels are the *stored* values (no rescale): writing them back changes
exactly the voxels defacing changed and nothing else.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from pipeline.errors import CurationError

_ORIENTATION_TOLERANCE = 1e-3  # direction cosines
_SPACING_TOLERANCE = 0.02  # share of the spacing a step may differ by
_IN_PLANE_TOLERANCE_MM = 0.05  # a frame off the stack's axis by more is not stacked


class AssemblyProblem(enum.Enum):
    """Why a series cannot be one volume (stable codes, PHI-free)."""

    NO_PIXELS = "no-pixel-data"
    NO_GEOMETRY = "no-geometry"
    MIXED_ORIENTATION = "mixed-orientation"
    MIXED_SIZE = "mixed-size"
    COLOUR = "colour-image"
    DUPLICATE_POSITION = "duplicate-position"
    NOT_A_STACK = "frames-not-on-one-axis"
    GAPS = "uneven-slice-spacing"


class AssemblyError(CurationError):
    def __init__(self, problem: AssemblyProblem, detail: str) -> None:
        self.problem = problem
        super().__init__(f"{problem.value}: {detail}")


@dataclass(frozen=True)
class FrameRef:
    """Where one slice of the volume lives: the dataset's place in the series and its frame."""

    dataset: int
    frame: int  # 0 for a single-frame image


@dataclass(frozen=True)
class Volume:
    """Stored values ``(slices, rows, cols)`` and the index -> patient (LPS, mm) affine.

    The affine maps ``(col, row, slice, 1)`` to patient coordinates, the
    order ITK and DICOM use (x along a row, y down the columns, z along the
    normal).
    """

    voxels: npt.NDArray[np.generic]
    affine: npt.NDArray[np.float64]
    frames: tuple[FrameRef, ...]

    @property
    def spacing(self) -> tuple[float, float, float]:
        x, y, z = (float(np.linalg.norm(self.affine[:3, i])) for i in range(3))
        return x, y, z

    @property
    def direction(self) -> npt.NDArray[np.float64]:
        scaled: npt.NDArray[np.float64] = self.affine[:3, :3] / np.array(self.spacing)
        return scaled

    @property
    def origin(self) -> npt.NDArray[np.float64]:
        return self.affine[:3, 3]

    def extent_mm(self) -> tuple[float, float, float]:
        """The bounding box of the voxel centres' corners along L-R, A-P, S-I."""
        n = self.voxels.shape
        corners = np.array(
            [[i, j, k, 1.0] for i in (0, n[2]) for j in (0, n[1]) for k in (0, n[0])]
        )
        points = corners @ self.affine.T
        size = points[:, :3].max(axis=0) - points[:, :3].min(axis=0)
        return float(size[0]), float(size[1]), float(size[2])


@dataclass(frozen=True)
class _Plane:
    ref: FrameRef
    position: npt.NDArray[np.float64]
    orientation: npt.NDArray[np.float64]
    spacing: tuple[float, float]


def frame_geometry(ds: Dataset, index: int) -> list[_Plane]:
    """Position, orientation and spacing of every frame of ``ds`` (the series' ``index``-th)."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    shared = _first(ds.get("SharedFunctionalGroupsSequence"))
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    planes = []
    for f in range(frames):
        groups = per_frame[f] if per_frame is not None and f < len(per_frame) else None
        position = _attribute(ds, groups, shared, "PlanePositionSequence", "ImagePositionPatient")
        orientation = _attribute(
            ds, groups, shared, "PlaneOrientationSequence", "ImageOrientationPatient"
        )
        spacing = _attribute(ds, groups, shared, "PixelMeasuresSequence", "PixelSpacing")
        if position is None or orientation is None or spacing is None:
            raise AssemblyError(
                AssemblyProblem.NO_GEOMETRY,
                f"frame {f + 1} of image {index + 1} has no position, orientation or spacing",
            )
        try:
            planes.append(
                _Plane(
                    FrameRef(index, f),
                    np.array([float(v) for v in position], dtype=np.float64),
                    np.array([float(v) for v in orientation], dtype=np.float64),
                    (float(spacing[0]), float(spacing[1])),
                )
            )
        except (TypeError, ValueError, IndexError):
            raise AssemblyError(
                AssemblyProblem.NO_GEOMETRY, f"frame {f + 1} of image {index + 1}: bad geometry"
            ) from None
        if planes[-1].position.shape != (3,) or planes[-1].orientation.shape != (6,):
            raise AssemblyError(
                AssemblyProblem.NO_GEOMETRY, f"frame {f + 1} of image {index + 1}: bad geometry"
            )
    return planes


def _first(sequence: object) -> Dataset | None:
    if sequence is None:
        return None
    items = list(sequence)  # type: ignore[call-overload]
    return items[0] if items else None


def _attribute(
    ds: Dataset, groups: Dataset | None, shared: Dataset | None, macro: str, keyword: str
) -> Any:
    for holder in (groups, shared):
        if holder is not None and macro in holder:
            item = _first(holder.get(macro))
            if item is not None and keyword in item:
                return item.get(keyword)
    return ds.get(keyword)


def stack_geometry(
    planes: Sequence[_Plane],
) -> tuple[list[_Plane], npt.NDArray[np.float64]]:
    """The planes in order along the normal and the affine; :class:`AssemblyError` if no stack."""
    if not planes:
        raise AssemblyError(AssemblyProblem.NO_PIXELS, "the series has no image")
    first = planes[0]
    for plane in planes[1:]:
        if np.abs(plane.orientation - first.orientation).max() > _ORIENTATION_TOLERANCE:
            raise AssemblyError(
                AssemblyProblem.MIXED_ORIENTATION, "the images do not share one orientation"
            )
        if np.abs(np.subtract(plane.spacing, first.spacing)).max() > 1e-4:
            raise AssemblyError(AssemblyProblem.MIXED_SIZE, "the images differ in pixel spacing")
    row_dir, col_dir = first.orientation[:3], first.orientation[3:]
    normal = np.cross(row_dir, col_dir)
    if not np.isclose(np.linalg.norm(normal), 1.0, atol=1e-3):
        raise AssemblyError(AssemblyProblem.NO_GEOMETRY, "ImageOrientationPatient is not unit")
    ordered = sorted(planes, key=lambda p: float(np.dot(p.position, normal)))
    along = np.array([float(np.dot(p.position, normal)) for p in ordered])
    if len(ordered) > 1:
        steps = np.diff(along)
        if steps.min() < 1e-3:
            raise AssemblyError(
                AssemblyProblem.DUPLICATE_POSITION,
                "two images at one position (echoes, phases or repeats in one series)",
            )
        step = float(np.median(steps))
        if np.abs(steps - step).max() > _SPACING_TOLERANCE * step:
            raise AssemblyError(
                AssemblyProblem.GAPS,
                f"slice steps from {steps.min():.2f} to {steps.max():.2f} mm: gaps or overlaps",
            )
        base = ordered[0].position
        for plane, distance in zip(ordered, along - along[0], strict=True):
            offset = plane.position - base - normal * distance
            if np.linalg.norm(offset) > _IN_PLANE_TOLERANCE_MM:
                raise AssemblyError(
                    AssemblyProblem.NOT_A_STACK, "the images are not stacked on one axis"
                )
    else:
        step = 1.0
    row_spacing, col_spacing = first.spacing  # PixelSpacing: between rows, between columns
    affine = np.eye(4)
    affine[:3, 0] = row_dir * col_spacing
    affine[:3, 1] = col_dir * row_spacing
    affine[:3, 2] = normal * step
    affine[:3, 3] = ordered[0].position
    return ordered, affine


def assemble(datasets: Sequence[Dataset]) -> Volume:
    """One volume from every frame of ``datasets`` (one series, decoded pixel data).

    Raises
    ------
    AssemblyError
        The frames do not make one regular volume; its ``problem`` says why.
    """
    planes: list[_Plane] = []
    shapes = set()
    for index, ds in enumerate(datasets):
        if "PixelData" not in ds:
            raise AssemblyError(AssemblyProblem.NO_PIXELS, f"image {index + 1} has no pixel data")
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise AssemblyError(AssemblyProblem.COLOUR, "colour images are not MR volumes")
        shapes.add((int(ds.Rows), int(ds.Columns)))
        planes += frame_geometry(ds, index)
    if len(shapes) > 1:
        raise AssemblyError(AssemblyProblem.MIXED_SIZE, "the images differ in rows or columns")
    ordered, affine = stack_geometry(planes)
    arrays = [_frames(ds) for ds in datasets]
    voxels = np.stack([arrays[p.ref.dataset][p.ref.frame] for p in ordered])
    return Volume(voxels, affine, tuple(p.ref for p in ordered))


def _frames(ds: Dataset) -> npt.NDArray[np.generic]:
    array = ds.pixel_array
    return array if int(ds.get("NumberOfFrames", 1) or 1) > 1 else array[np.newaxis]
