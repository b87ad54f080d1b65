"""Multi-frame Enhanced MR Image Storage instances with PHI inside the functional groups.

Newer scanners export one multi-frame object per series, with dates and
references repeated in nested per-frame items.  A de-identifier that only
looks at the top level misses them, so the sample plants them there and is
built to pass dciodvfy, so that a failure after de-identification is the
de-identifier's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID

from pipeline.samples.classic_mr import MR_IMAGE_STORAGE
from pipeline.samples.exams import SIEMENS, slice_geometry, subject_region
from pipeline.samples.headers import (
    Series,
    add_acme_block,
    add_pixel_module,
    code_item,
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
from pipeline.samples.phantom import contrast_frame, head_phantom
from pipeline.samples.subjects import Subject

__all__ = ["ENHANCED_MR_STORAGE", "enhanced_instance", "enhanced_mr"]

ENHANCED_MR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4.1")


def enhanced_mr(
    subject: Subject,
    *,
    n_frames: int = 3,
    rows: int = 32,
    cols: int = 32,
    seed: int = 0,
    study_uid: str | None = None,
) -> Dataset:
    """A multi-frame Enhanced MR Image Storage instance, PHI included.

    Identifying values sit at the top level as in a classic image, and
    dates also inside every per-frame item (FrameAcquisitionDateTime,
    FrameReferenceDateTime), so date shifting must reach into functional groups.

    Parameters
    ----------
    subject : Subject
        Whose PHI to plant.
    n_frames, rows, cols : int, optional
        One stack of ``n_frames`` parallel slices.
    seed : int, optional
        Drives UIDs and the phantom.
    study_uid : str, optional
        Put the instance into an existing study.

    Returns
    -------
    pydicom.Dataset
        With ``file_meta``; dciodvfy reports no errors for it.
    """
    region = subject_region(subject)
    protocol = region.protocols[0]
    series_number = 20
    series = new_series(
        subject,
        seed=seed,
        study_uid=study_uid,
        series_number=series_number,
        description=f"{protocol.name}_enhanced",
        protocol=protocol,
        vendor=SIEMENS,
        kind="enhanced",
    )
    spacing, positions, _, step = slice_geometry(protocol, region, rows, cols, n_frames)
    phantom = head_phantom(rows, cols, seed * 1000 + series_number)
    frames = [
        contrast_frame(phantom, protocol.contrast, np.pi * (k + 0.5) / n_frames)
        for k in range(n_frames)
    ]
    return enhanced_instance(
        series, spacing=spacing, positions=positions, step=step, rows=rows, cols=cols,
        frames=frames,
    )  # fmt: skip


def enhanced_instance(
    series: Series,
    *,
    spacing: float,
    positions: Sequence[Sequence[float]],
    step: float,
    rows: int,
    cols: int,
    frames: Sequence[bytes],
) -> Dataset:
    """One Enhanced MR object of ``series``: one stack of parallel frames at ``positions``.

    ``frames`` are the frames' stored values (12 bit in 16, little endian);
    the series' protocol gives the orientation and sequence, its region the
    patient position and anatomy.
    """
    subject, protocol, region = series.subject, series.protocol, series.region
    n_frames = len(frames)
    acquired = series.start + timedelta(seconds=25)
    duration_ms = protocol.repetition_time * rows / protocol.echo_train_length
    created = acquired + timedelta(milliseconds=duration_ms * n_frames + 5000)
    sop_uid = sample_uid("image", series.series_uid, 0)
    ds = new_dataset(ENHANCED_MR_STORAGE, sop_uid, created)
    frame_type = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.ImageType = frame_type
    add_enhanced_series(
        ds, series, SIEMENS, protocol_name=protocol.name, patient_position=region.patient_position
    )

    # Multi-frame Functional Groups, Enhanced MR Image, MR Image and Spectroscopy Instance
    add_enhanced_instance(
        ds, SIEMENS, created=created, acquired=acquired, frames=n_frames,
        duration=round(duration_ms * n_frames / 1000.0, 3),
        comments=f"Pat. {subject.phi.patient_id}: enhanced export",
        component="MAGNITUDE", contrast=protocol.contrast,
    )  # fmt: skip
    add_monochrome_image(ds)

    # MR Pulse Sequence
    add_pulse_sequence(ds, protocol.sequence_name.lstrip("*"), protocol.acquisition_type)
    ds.EchoPlanarPulseSequence = "NO"
    ds.SaturationRecovery = "NO"
    ds.SpectrallySelectedSuppression = "FAT" if "FS" in protocol.scan_options else "NONE"
    ds.OversamplingPhase = "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.RectilinearPhaseEncodeReordering = "LINEAR"
    ds.SegmentedKSpaceTraversal = "PARTIAL"
    ds.NumberOfKSpaceTrajectories = 1

    # Multi-frame Dimension: one stack, frames ordered by position within it
    dimension_uid = sample_uid("dimension-organization", sop_uid)
    ds.DimensionOrganizationSequence = sequence(item(DimensionOrganizationUID=dimension_uid))
    ds.DimensionOrganizationType = "3D"
    ds.DimensionIndexSequence = sequence(
        item(
            DimensionOrganizationUID=dimension_uid,
            DimensionIndexPointer=0x00209056,
            FunctionalGroupPointer=0x00209111,
            DimensionDescriptionLabel="Stack ID",
        ),
        item(
            DimensionOrganizationUID=dimension_uid,
            DimensionIndexPointer=0x00209057,
            FunctionalGroupPointer=0x00209111,
            DimensionDescriptionLabel="In-Stack Position Number",
        ),
    )

    localizer_uid = sample_uid("localizer", series.study_uid)
    localizer = item(
        ReferencedSOPClassUID=MR_IMAGE_STORAGE,
        ReferencedSOPInstanceUID=localizer_uid,
        PurposeOfReferenceCodeSequence=sequence(code_item("121311", "DCM", "Localizer")),
    )
    # A frame that references an image must also list it as evidence, by study and series.
    ds.ReferencedImageEvidenceSequence = sequence(
        item(
            StudyInstanceUID=series.study_uid,
            ReferencedSeriesSequence=sequence(
                item(
                    SeriesInstanceUID=sample_uid("localizer-series", series.study_uid),
                    ReferencedSOPSequence=sequence(
                        item(
                            ReferencedSOPClassUID=MR_IMAGE_STORAGE,
                            ReferencedSOPInstanceUID=localizer_uid,
                        )
                    ),
                )
            ),
        )
    )
    shared = item(
        ReferencedImageSequence=sequence(localizer),
        PixelMeasuresSequence=sequence(
            item(
                PixelSpacing=[format_ds(spacing), format_ds(spacing)],
                SliceThickness=format_ds(protocol.slice_thickness),
                SpacingBetweenSlices=format_ds(step),
            )
        ),
        PlaneOrientationSequence=sequence(
            item(ImageOrientationPatient=[format_ds(v) for v in protocol.orientation])
        ),
        FrameAnatomySequence=sequence(
            item(
                AnatomicRegionSequence=sequence(code_item(*region.anatomy)),
                FrameLaterality=region.laterality or "U",
            )
        ),
        PixelValueTransformationSequence=sequence(
            item(RescaleIntercept="0", RescaleSlope="1", RescaleType="US")
        ),
        MRImageFrameTypeSequence=sequence(
            item(
                FrameType=frame_type,
                PixelPresentation="MONOCHROME",
                VolumetricProperties="VOLUME",
                VolumeBasedCalculationTechnique="NONE",
                ComplexImageComponent="MAGNITUDE",
                AcquisitionContrast=protocol.contrast,
            )
        ),
        MRTimingAndRelatedParametersSequence=timing(
            format_ds(protocol.repetition_time),
            format_ds(protocol.flip_angle),
            echo_train=protocol.echo_train_length,
            gradient_echo_train=0,
            sar=0.42,
            gradient_output=12.5,
        ),
        MRFOVGeometrySequence=fov_geometry("ROW", rows, cols),
        MREchoSequence=sequence(item(EffectiveEchoTime=protocol.echo_time)),
        MRModifierSequence=modifiers(),
        MRImagingModifierSequence=imaging_modifiers(SIEMENS.frequency, "200"),
        **coils("SIEMENS", SIEMENS.coil),
        MRDiffusionSequence=sequence(item(DiffusionBValue=0.0, DiffusionDirectionality="NONE")),
        MRAveragesSequence=sequence(item(NumberOfAverages="1")),
    )
    ds.SharedFunctionalGroupsSequence = sequence(shared)

    per_frame = []
    for k in range(n_frames):
        frame_time = acquired + timedelta(milliseconds=duration_ms * k)
        content = item(
            FrameAcquisitionNumber=1,
            FrameReferenceDateTime=format_dt(frame_time),
            FrameAcquisitionDateTime=format_dt(frame_time),
            FrameAcquisitionDuration=round(duration_ms, 3),
            DimensionIndexValues=[1, k + 1],
            StackID="1",
            InStackPositionNumber=k + 1,
        )
        per_frame.append(
            item(
                FrameContentSequence=sequence(content),
                PlanePositionSequence=sequence(
                    item(ImagePositionPatient=[format_ds(v) for v in positions[k]])
                ),
            )
        )
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)

    add_pixel_module(ds, rows, cols)
    ds.PixelData = b"".join(frames)
    add_acme_block(ds, subject)
    return ds
