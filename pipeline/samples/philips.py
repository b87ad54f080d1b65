"""Philips diffusion series whose scaling and diffusion encoding live in private elements.

Philips stores pixels as integers and publishes two scalings: the public
Rescale Slope/Intercept give the value shown on the console, while the
private Scale Slope ``(2005,"Philips MR Imaging DD 001",0E)`` (with its
intercept, ``0D``) gives the floating-point value quantitative work needs,
``FP = (PV·RS + RI) / (RS·SS)``; dcm2niix writes FP.  Classic Philips images
also keep the b-value and gradient only privately (``(2001,"Philips Imaging
DD 001",03)``, ``(2005,"Philips MR Imaging DD 001",B0/B1/B2)``).  A
de-identifier that drops private elements changes the voxels of the one and
loses the diffusion encoding of the other; these samples make that visible.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from pipeline.samples.classic_mr import mr_instance
from pipeline.samples.enhanced_mr import ENHANCED_MR_STORAGE
from pipeline.samples.exams import BRAIN, DIFFUSION, Vendor, slice_geometry
from pipeline.samples.headers import (
    Series,
    add_acme_block,
    add_pixel_module,
    add_private,
    format_ds,
    format_dt,
    item,
    new_dataset,
    new_series,
    sample_uid,
    sequence,
)
from pipeline.samples.mr_groups import (
    add_enhanced_instance,
    add_enhanced_series,
    add_monochrome_image,
    add_pulse_sequence,
    coils,
    fov_geometry,
    imaging_modifiers,
    modifiers,
    timing,
)
from pipeline.samples.phantom import diffusion_frame, head_phantom
from pipeline.samples.subjects import Subject

__all__ = ["PHILIPS", "philips_dti_series", "philips_enhanced_dti"]

PHILIPS = Vendor(
    "Philips Medical Systems", "Ingenia", "5.4.1\\5.4.1.0", 3.0, 127.7654, "dS Head 32"
)
IMAGING = "Philips Imaging DD 001"
MR_IMAGING = "Philips MR Imaging DD 001"
MR_IMAGING_5 = "Philips MR Imaging DD 005"
# Public rescale (display values) and private scale slope (floating-point values):
# deliberately unlike 1, so that losing either changes what a converter writes.
RESCALE_SLOPE = "1.41904761904762"
RESCALE_INTERCEPT = "0"
SCALE_SLOPE = 0.0185546875  # exact in FL, so the value read back is the value written
SCALE_INTERCEPT = 0.0

_DIRECTIONS = (
    (1.0, 0.0, 0.0),
    (0.0, 1.0, 0.0),
    (0.0, 0.0, 1.0),
    (0.70710677, 0.70710677, 0.0),
)


def _encodings(bvalues: tuple[int, ...]) -> list[tuple[int, tuple[float, float, float]]]:
    """(b, direction) per volume; a b=0 volume has no direction."""
    out, n = [], 0
    for b in bvalues:
        if b > 0:
            out.append((b, _DIRECTIONS[n % len(_DIRECTIONS)]))
            n += 1
        else:
            out.append((b, (0.0, 0.0, 0.0)))
    return out


def _series(subject: Subject, seed: int, study_uid: str | None, kind: str, number: int) -> Series:
    return new_series(
        subject,
        seed=seed,
        study_uid=study_uid,
        series_number=number,
        description="DTI_high_32" if kind == "classic" else "DTI_high_32_enhanced",
        protocol=DIFFUSION,
        vendor=PHILIPS,
        kind=f"philips-dti-{kind}",
        region=BRAIN,
    )


def philips_dti_series(
    subject: Subject,
    *,
    bvalues: tuple[int, ...] = (0, 1000, 1000, 1000),
    n_slices: int = 3,
    rows: int = 32,
    cols: int = 32,
    seed: int = 0,
    study_uid: str | None = None,
) -> list[Dataset]:
    """A classic (one file per slice) Philips DTI series, diffusion and scaling private only.

    Parameters
    ----------
    subject : Subject
        Whose PHI to plant (also in a private text element no rule keeps).
    bvalues : tuple of int, optional
        One volume of ``n_slices`` images per entry; non-zero b-values cycle
        through x, y, z and an oblique direction.
    n_slices, rows, cols, seed, study_uid
        Volume size, UIDs and phantom, as for :func:`mr_series`.

    Returns
    -------
    list of pydicom.Dataset
        MR Image Storage instances, volume by volume.  None carries the
        standard DiffusionBValue: only ``(2001,"Philips Imaging DD 001",03)``
        and ``(2005,"Philips MR Imaging DD 001",B0/B1/B2)`` say it, and the
        floating-point scaling is ``(2005,"Philips MR Imaging DD 001",0D/0E)``.
    """
    series = _series(subject, seed, study_uid, "classic", 11)
    spacing, positions, locations, step = slice_geometry(DIFFUSION, BRAIN, rows, cols, n_slices)
    phantom = head_phantom(rows, cols, seed * 1000 + 11)
    encodings = _encodings(bvalues)
    uids = [sample_uid("image", series.series_uid, k) for k in range(len(encodings) * n_slices)]
    instances = []
    for volume, (bvalue, direction) in enumerate(encodings):
        acquired = series.start + timedelta(seconds=30, milliseconds=5200 * volume)
        for z in range(n_slices):
            index = volume * n_slices + z
            ds = mr_instance(
                series,
                index=index,
                sop_uid=uids[index],
                referenced_uid=uids[z],
                position=positions[z],
                location=locations[z],
                spacing=spacing,
                step=step,
                rows=rows,
                cols=cols,
                pixels=diffusion_frame(phantom, bvalue, direction),
                acquisition_number=1,
                acquired=acquired,
                image_type=("ORIGINAL", "PRIMARY", "M_SE", "M", "SE"),
                sequence_name="",
            )
            ds.TemporalPositionIdentifier = str(volume + 1)
            ds.RescaleIntercept = RESCALE_INTERCEPT
            ds.RescaleSlope = RESCALE_SLOPE
            ds.RescaleType = "normalized"
            _classic_private(ds, subject, bvalue, direction, z + 1, n_slices)
            add_acme_block(ds, subject)
            instances.append(ds)
    return instances


def _classic_private(
    ds: Dataset,
    subject: Subject,
    bvalue: int,
    direction: tuple[float, float, float],
    slice_number: int,
    n_slices: int,
) -> None:
    add_private(
        ds,
        0x2001,
        IMAGING,
        [
            (0x03, "FL", float(bvalue)),
            (0x04, "CS", "O" if bvalue else "N"),
            (0x0A, "IS", str(slice_number)),
            (0x0B, "CS", "TRANSVERSAL"),
            (0x13, "SL", 35),
            (0x18, "SL", n_slices),
            # Not safe: the technique text an operator edited, naming the patient.
            (0x20, "LO", f"DwiSE {subject.phi.patient_id}"),
            (0x22, "FL", 12.5),
        ],
    )
    add_private(
        ds,
        0x2005,
        MR_IMAGING,
        [
            (0x0D, "FL", SCALE_INTERCEPT),
            (0x0E, "FL", SCALE_SLOPE),
            (0xB0, "FL", direction[0]),
            (0xB1, "FL", direction[1]),
            (0xB2, "FL", direction[2]),
        ],
    )


def philips_enhanced_dti(
    subject: Subject,
    *,
    bvalues: tuple[int, ...] = (0, 1000, 1000, 1000),
    n_slices: int = 3,
    rows: int = 32,
    cols: int = 32,
    seed: int = 0,
    study_uid: str | None = None,
) -> Dataset:
    """An Enhanced MR Philips DTI: one file, scale slope and intercept per frame, privately.

    The b-values and directions are standard (MR Diffusion Sequence per
    frame); the floating-point scaling is not: each frame's item holds the
    Philips private per-frame sequence ``(2005,"Philips MR Imaging DD 005",0F)``
    with the scale slope and intercept inside, next to a private text naming
    the patient.

    Returns
    -------
    pydicom.Dataset
        ``len(bvalues) * n_slices`` frames, volume by volume.
    """
    series = _series(subject, seed, study_uid, "enhanced", 12)
    spacing, positions, _, step = slice_geometry(DIFFUSION, BRAIN, rows, cols, n_slices)
    phantom = head_phantom(rows, cols, seed * 1000 + 12)
    encodings = _encodings(bvalues)
    acquired = series.start + timedelta(seconds=25)
    created = acquired + timedelta(seconds=90)
    sop_uid = sample_uid("image", series.series_uid, 0)
    ds = new_dataset(ENHANCED_MR_STORAGE, sop_uid, created)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"]
    add_enhanced_series(
        ds, series, PHILIPS, protocol_name=series.description,
        patient_position=BRAIN.patient_position,
    )  # fmt: skip
    add_enhanced_instance(
        ds, PHILIPS, created=created, acquired=acquired, frames=len(encodings) * n_slices,
        duration=60.0, comments=f"Pat. {subject.phi.patient_id}: DTI for tractography",
        component="MAGNITUDE", contrast="DIFFUSION",
    )  # fmt: skip
    add_monochrome_image(ds)
    add_pulse_sequence(ds, "DwiSE", "2D")
    ds.EchoPlanarPulseSequence = "YES"
    ds.SaturationRecovery = "NO"
    ds.SpectrallySelectedSuppression = "FAT"
    ds.OversamplingPhase = "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.RectilinearPhaseEncodeReordering = "LINEAR"
    ds.SegmentedKSpaceTraversal = "SINGLE"
    ds.NumberOfKSpaceTrajectories = 1

    dimension_uid = sample_uid("dimension-organization", sop_uid)
    ds.DimensionOrganizationSequence = sequence(item(DimensionOrganizationUID=dimension_uid))
    ds.DimensionIndexSequence = sequence(
        *(
            item(
                DimensionOrganizationUID=dimension_uid,
                DimensionIndexPointer=pointer,
                FunctionalGroupPointer=0x00209111,
                DimensionDescriptionLabel=label,
            )
            for pointer, label in (
                (0x00209056, "Stack ID"),
                (0x00209057, "In-Stack Position Number"),
                (0x00209128, "Temporal Position Index"),
            )
        )
    )
    ds.SharedFunctionalGroupsSequence = sequence(_shared(spacing, step, rows, cols))
    frames, pixels = [], []
    for volume, (bvalue, direction) in enumerate(encodings):
        frame = diffusion_frame(phantom, bvalue, direction)
        for z in range(n_slices):
            moment = acquired + timedelta(milliseconds=5200 * volume + 100 * z)
            frames.append(_per_frame(subject, moment, volume, z, positions[z], bvalue, direction))
            pixels.append(frame)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(frames)
    add_pixel_module(ds, rows, cols)
    ds.PixelData = b"".join(pixels)
    add_acme_block(ds, subject)
    return ds


def _shared(spacing: float, step: float, rows: int, cols: int) -> Dataset:
    return item(
        PixelMeasuresSequence=sequence(
            item(
                PixelSpacing=[format_ds(spacing), format_ds(spacing)],
                SliceThickness=format_ds(DIFFUSION.slice_thickness),
                SpacingBetweenSlices=format_ds(step),
            )
        ),
        PlaneOrientationSequence=sequence(
            item(ImageOrientationPatient=[format_ds(v) for v in DIFFUSION.orientation])
        ),
        FrameAnatomySequence=sequence(
            item(
                AnatomicRegionSequence=sequence(
                    item(CodeValue="12738006", CodingSchemeDesignator="SCT", CodeMeaning="Brain")
                ),
                FrameLaterality="U",
            )
        ),
        PixelValueTransformationSequence=sequence(
            item(RescaleIntercept=RESCALE_INTERCEPT, RescaleSlope=RESCALE_SLOPE, RescaleType="US")
        ),
        MRImageFrameTypeSequence=sequence(
            item(
                FrameType=["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"],
                PixelPresentation="MONOCHROME",
                VolumetricProperties="VOLUME",
                VolumeBasedCalculationTechnique="NONE",
                ComplexImageComponent="MAGNITUDE",
                AcquisitionContrast="DIFFUSION",
            )
        ),
        MRTimingAndRelatedParametersSequence=timing(
            format_ds(DIFFUSION.repetition_time),
            format_ds(DIFFUSION.flip_angle),
            echo_train=1,
            gradient_echo_train=35,
            sar=0.3,
            gradient_output=20.0,
        ),
        MRFOVGeometrySequence=fov_geometry("COLUMN", rows, cols),
        MREchoSequence=sequence(item(EffectiveEchoTime=DIFFUSION.echo_time)),
        MRModifierSequence=modifiers(),
        MRImagingModifierSequence=imaging_modifiers(PHILIPS.frequency, "2000"),
        **coils("Philips", PHILIPS.coil),
        MRAveragesSequence=sequence(item(NumberOfAverages="1")),
    )


def _per_frame(
    subject: Subject,
    moment: datetime,
    volume: int,
    z: int,
    position: list[float],
    bvalue: int,
    direction: tuple[float, float, float],
) -> Dataset:
    diffusion = item(
        DiffusionBValue=float(bvalue),
        DiffusionDirectionality="DIRECTIONAL" if bvalue else "NONE",
    )
    if bvalue:
        diffusion.DiffusionGradientDirectionSequence = sequence(
            item(DiffusionGradientOrientation=[float(v) for v in direction])
        )
    frame = item(
        FrameContentSequence=sequence(
            item(
                FrameAcquisitionNumber=1,
                FrameReferenceDateTime=format_dt(moment),
                FrameAcquisitionDateTime=format_dt(moment),
                FrameAcquisitionDuration=100.0,
                DimensionIndexValues=[1, z + 1, volume + 1],
                StackID="1",
                InStackPositionNumber=z + 1,
                TemporalPositionIndex=volume + 1,
            )
        ),
        PlanePositionSequence=sequence(item(ImagePositionPatient=[format_ds(v) for v in position])),
        MRDiffusionSequence=sequence(diffusion),
    )
    # Philips' private per-frame sequence: the floating-point scaling, and a
    # private text no rule keeps.
    private = Dataset()
    add_private(private, 0x2001, IMAGING, [(0x20, "LO", f"DwiSE {subject.phi.patient_id}")])
    add_private(
        private, 0x2005, MR_IMAGING, [(0x0D, "FL", SCALE_INTERCEPT), (0x0E, "FL", SCALE_SLOPE)]
    )
    add_private(frame, 0x2005, MR_IMAGING_5, [(0x0F, "SQ", DicomSequence([private]))])
    return frame
