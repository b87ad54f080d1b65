"""Deface one volume: register, warp the face back, check, and remove (or blur) it.

The quality check looks at the registered result before anything is
trusted (fractions of voxels, measured on the coarse registration grid and,
for what was removed, on the volume's own grid):

- ``brain_inside_head``: the template's brain region, warped into the
  volume's field of view, lies inside the subject's head;
- ``head_outside_template``: few of the subject's head voxels fall outside
  the warped template head (a misplaced template leaves many);
- ``template_outside_head``: little of the warped template head (where the
  volume sees it) falls outside the subject's head: a template turned or
  tipped wrongly sticks out (generated heads tipped by 60-90° onto an ear
  registered with half their face outside the mask, and passed the other
  measures as they stood: ``rules/deface/head.yaml`` says what was measured);
- ``brain_removed``: the removal touches (almost) none of the brain region;
- ``head_removed``: the removal takes a plausible share of the head.

A failure names the measure: the series goes to review, never out with its
face.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from pipeline.deface.register import coarse_grid, register, volume_image
from pipeline.deface.rules import DefaceAction, DefaceRules
from pipeline.deface.template import Template, load_template
from pipeline.deface.volume import Volume


class QualityProblem(enum.Enum):
    """Which measure of the quality check failed (stable codes)."""

    BRAIN_NOT_IN_VIEW = "brain-not-in-view"
    BRAIN_OUTSIDE_HEAD = "brain-outside-head"
    HEAD_OUTSIDE_TEMPLATE = "head-outside-template"
    TEMPLATE_OUTSIDE_HEAD = "template-outside-head"
    BRAIN_REMOVED = "brain-removed"
    TOO_MUCH_REMOVED = "too-much-removed"
    NO_HEAD = "no-head-found"


@dataclass(frozen=True)
class QualityReport:
    """The measures (PHI-free numbers) and what failed; ``passed`` when nothing did."""

    brain_inside_head: float
    head_outside_template: float
    brain_removed: float
    head_removed: float
    template_outside_head: float
    problems: tuple[QualityProblem, ...]

    @property
    def passed(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        measures = (
            f"brain inside head {self.brain_inside_head:.3f}, head outside template "
            f"{self.head_outside_template:.3f}, template outside head "
            f"{self.template_outside_head:.3f}, brain removed {self.brain_removed:.4f}, "
            f"head removed {self.head_removed:.3f}"
        )
        if self.passed:
            return measures
        return f"{', '.join(p.value for p in self.problems)} ({measures})"


@dataclass(frozen=True)
class Defaced:
    """A defaced volume: the new voxels, where the face was, and the check."""

    voxels: npt.NDArray[np.generic]  # same shape and dtype as the input's
    face: npt.NDArray[np.bool_]  # the warped face mask on the volume's grid
    brain: npt.NDArray[np.bool_]  # the warped brain region on the volume's grid
    quality: QualityReport
    changed: int  # voxels whose value changed


def deface_volume(volume: Volume, rules: DefaceRules, template: Template | None = None) -> Defaced:
    """Register ``template`` to ``volume`` and remove (or blur) the warped face.

    The returned voxels equal the input's everywhere outside ``face``; when
    the quality check fails they are still computed (for review), and the
    caller must not release them as defaced.

    Raises
    ------
    pipeline.deface.register.RegistrationFailed
        SimpleITK could not register at all.
    """
    template = template or load_template()
    image = volume_image(volume)
    fixed = coarse_grid(image, rules.registration.resolution_mm)
    transform = register(fixed, template, rules.registration)
    quality = _check(fixed, template, transform, rules)
    face = _warp(template.face, image, transform, sitk.sitkLinear) >= 0.5
    brain = _warp(template.brain, image, transform, sitk.sitkNearestNeighbor) > 0
    voxels = remove_face(volume, face, rules.action, rules.blur_sigma_mm)
    changed = int(np.count_nonzero(voxels != volume.voxels))
    removed_brain = float(np.count_nonzero(face & brain)) / max(1, int(np.count_nonzero(brain)))
    if removed_brain > rules.quality.max_brain_removed and (
        QualityProblem.BRAIN_REMOVED not in quality.problems
    ):
        quality = dataclasses.replace(
            quality, brain_removed=removed_brain,
            problems=(*quality.problems, QualityProblem.BRAIN_REMOVED),
        )  # fmt: skip
    return Defaced(voxels, face, brain, quality, changed)


def remove_face(
    volume: Volume, face: npt.NDArray[np.bool_], action: DefaceAction, blur_sigma_mm: float
) -> npt.NDArray[np.generic]:
    """``volume``'s voxels with those under ``face`` set to the background or blurred.

    Every voxel outside ``face`` keeps its stored value, bit for bit; the
    dtype is the volume's (a blurred value is rounded and clipped to it).
    """
    voxels = volume.voxels.copy()
    if action is DefaceAction.REMOVE:
        voxels[face] = volume.voxels.min()
        return voxels
    smooth = sitk.SmoothingRecursiveGaussian(volume_image(volume), blur_sigma_mm)
    values = sitk.GetArrayFromImage(smooth)[face]
    if voxels.dtype.kind in "iu":
        info = np.iinfo(voxels.dtype.str)
        values = np.clip(np.rint(values), info.min, info.max)
    voxels[face] = values.astype(voxels.dtype)
    return voxels


def _warp(
    mask: sitk.Image, grid: sitk.Image, transform: sitk.Transform, interpolator: int
) -> npt.NDArray[np.float32]:
    warped = sitk.Resample(
        sitk.Cast(mask, sitk.sitkFloat32), grid, transform, interpolator, 0.0, sitk.sitkFloat32
    )
    array: npt.NDArray[np.float32] = sitk.GetArrayFromImage(warped)
    return array


def head_mask(image: sitk.Image) -> npt.NDArray[np.bool_]:
    """The subject's head on ``image``'s grid: above Otsu's threshold, holes filled."""
    inside = sitk.BinaryFillhole(sitk.OtsuThreshold(image, 0, 1))
    array: npt.NDArray[np.bool_] = sitk.GetArrayFromImage(inside).astype(bool)
    return array


def _check(
    fixed: sitk.Image, template: Template, transform: sitk.Transform, rules: DefaceRules
) -> QualityReport:
    q = rules.quality
    head = head_mask(fixed)
    brain = _warp(template.brain, fixed, transform, sitk.sitkNearestNeighbor) > 0
    inside = _warp(template.inside, fixed, transform, sitk.sitkNearestNeighbor) > 0
    face = _warp(template.face, fixed, transform, sitk.sitkLinear) >= 0.5
    n_brain, n_head = int(brain.sum()), int(head.sum())
    problems: list[QualityProblem] = []
    if n_head == 0:
        return QualityReport(0.0, 1.0, 0.0, 0.0, 1.0, (QualityProblem.NO_HEAD,))
    if n_brain == 0:
        return QualityReport(0.0, 1.0, 0.0, 0.0, 1.0, (QualityProblem.BRAIN_NOT_IN_VIEW,))
    brain_inside = float((brain & head).sum()) / n_brain
    outside = float((head & ~inside).sum()) / n_head
    sticking_out = float((inside & ~head).sum()) / max(1, int(inside.sum()))
    brain_removed = float((face & brain).sum()) / n_brain
    head_removed = float((face & head).sum()) / n_head
    if brain_inside < q.min_brain_inside_head:
        problems.append(QualityProblem.BRAIN_OUTSIDE_HEAD)
    if outside > q.max_head_outside_template:
        problems.append(QualityProblem.HEAD_OUTSIDE_TEMPLATE)
    if sticking_out > q.max_template_outside_head:
        problems.append(QualityProblem.TEMPLATE_OUTSIDE_HEAD)
    if brain_removed > q.max_brain_removed:
        problems.append(QualityProblem.BRAIN_REMOVED)
    if head_removed > q.max_head_removed:
        problems.append(QualityProblem.TOO_MUCH_REMOVED)
    return QualityReport(
        brain_inside, outside, brain_removed, head_removed, sticking_out, tuple(problems)
    )
