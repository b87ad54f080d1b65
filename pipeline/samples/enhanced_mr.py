"""Multi-frame Enhanced MR Image Storage instances with PHI inside the functional groups.

Newer scanners export one multi-frame object per series, with dates and
references repeated in nested per-frame items.  A de-identifier that only
looks at the top level misses them, so the sample plants them there and is
built to pass dciodvfy, so that a failure after de-identification is the
de-identifier's.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID

from pipeline.samples.classic_mr import MR_IMAGE_STORAGE
from pipeline.samples.exams import _SIEMENS, _geometry, _region
from pipeline.samples.headers import (
    _add_acme_block,
    _add_equipment,
    _add_patient,
    _add_pixel_module,
    _add_series,
    _add_study,
    _code,
    _da,
    _ds,
    _dt,
    _item,
    _new_dataset,
    _new_series,
    _seq,
    _tm,
    _uid,
)
from pipeline.samples.phantom import _frame, _phantom
from pipeline.samples.subjects import Subject

__all__ = ["ENHANCED_MR_STORAGE", "enhanced_mr"]

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
    region = _region(subject)
    protocol = region.protocols[0]
    series_number = 20
    series = _new_series(
        subject,
        seed=seed,
        study_uid=study_uid,
        series_number=series_number,
        description=f"{protocol.name}_enhanced",
        protocol=protocol,
        vendor=_SIEMENS,
        kind="enhanced",
    )
    spacing, positions, _, step = _geometry(protocol, region, rows, cols, n_frames)
    acquired = series.start + timedelta(seconds=25)
    duration_ms = protocol.repetition_time * rows / protocol.echo_train_length
    created = acquired + timedelta(milliseconds=duration_ms * n_frames + 5000)
    sop_uid = _uid("image", series.series_uid, 0)
    ds = _new_dataset(ENHANCED_MR_STORAGE, sop_uid, created)
    frame_type = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.ImageType = frame_type
    _add_patient(ds, subject, series.patient_name)
    _add_study(ds, series)
    _add_series(ds, series, "MR")
    # Laterality goes into FrameLaterality; dciodvfy rejects the series-level one here.
    if "Laterality" in ds:
        del ds.Laterality
    ds.ProtocolName = protocol.name
    ds.PatientPosition = region.patient_position
    _add_equipment(ds, subject, _SIEMENS)
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""

    # Multi-frame Functional Groups, Enhanced MR Image, MR Image and Spectroscopy Instance
    ds.InstanceNumber = "1"
    ds.ContentDate = _da(created)
    ds.ContentTime = _tm(created)
    ds.NumberOfFrames = str(n_frames)
    ds.AcquisitionNumber = "1"
    ds.AcquisitionDateTime = _dt(acquired)
    ds.AcquisitionDuration = round(duration_ms * n_frames / 1000.0, 3)
    ds.ContentQualification = "PRODUCT"
    ds.ResonantNucleus = "1H"
    ds.KSpaceFiltering = "NONE"
    ds.MagneticFieldStrength = _ds(_SIEMENS.field_strength)
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.ImageComments = f"Pat. {subject.phi.patient_id}: enhanced export"
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ComplexImageComponent = "MAGNITUDE"
    ds.AcquisitionContrast = protocol.contrast
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.AcquisitionContextSequence = DicomSequence([])

    # MR Pulse Sequence
    ds.PulseSequenceName = protocol.sequence_name.lstrip("*")
    ds.MRAcquisitionType = protocol.acquisition_type
    ds.EchoPulseSequence = "SPIN"
    ds.MultipleSpinEcho = "NO"
    ds.MultiPlanarExcitation = "NO"
    ds.PhaseContrast = "NO"
    ds.TimeOfFlightContrast = "NO"
    ds.SteadyStatePulseSequence = "NONE"
    ds.EchoPlanarPulseSequence = "NO"
    ds.SaturationRecovery = "NO"
    ds.SpectrallySelectedSuppression = "FAT" if "FS" in protocol.scan_options else "NONE"
    ds.OversamplingPhase = "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.RectilinearPhaseEncodeReordering = "LINEAR"
    ds.SegmentedKSpaceTraversal = "PARTIAL"
    ds.NumberOfKSpaceTrajectories = 1

    # Multi-frame Dimension: one stack, frames ordered by position within it
    dimension_uid = _uid("dimension-organization", sop_uid)
    ds.DimensionOrganizationSequence = _seq(_item(DimensionOrganizationUID=dimension_uid))
    ds.DimensionOrganizationType = "3D"
    ds.DimensionIndexSequence = _seq(
        _item(
            DimensionOrganizationUID=dimension_uid,
            DimensionIndexPointer=0x00209056,
            FunctionalGroupPointer=0x00209111,
            DimensionDescriptionLabel="Stack ID",
        ),
        _item(
            DimensionOrganizationUID=dimension_uid,
            DimensionIndexPointer=0x00209057,
            FunctionalGroupPointer=0x00209111,
            DimensionDescriptionLabel="In-Stack Position Number",
        ),
    )

    localizer_uid = _uid("localizer", series.study_uid)
    localizer = _item(
        ReferencedSOPClassUID=MR_IMAGE_STORAGE,
        ReferencedSOPInstanceUID=localizer_uid,
        PurposeOfReferenceCodeSequence=_seq(_code("121311", "DCM", "Localizer")),
    )
    # A frame that references an image must also list it as evidence, by study and series.
    ds.ReferencedImageEvidenceSequence = _seq(
        _item(
            StudyInstanceUID=series.study_uid,
            ReferencedSeriesSequence=_seq(
                _item(
                    SeriesInstanceUID=_uid("localizer-series", series.study_uid),
                    ReferencedSOPSequence=_seq(
                        _item(
                            ReferencedSOPClassUID=MR_IMAGE_STORAGE,
                            ReferencedSOPInstanceUID=localizer_uid,
                        )
                    ),
                )
            ),
        )
    )
    shared = _item(
        ReferencedImageSequence=_seq(localizer),
        PixelMeasuresSequence=_seq(
            _item(
                PixelSpacing=[_ds(spacing), _ds(spacing)],
                SliceThickness=_ds(protocol.slice_thickness),
                SpacingBetweenSlices=_ds(step),
            )
        ),
        PlaneOrientationSequence=_seq(
            _item(ImageOrientationPatient=[_ds(v) for v in protocol.orientation])
        ),
        FrameAnatomySequence=_seq(
            _item(
                AnatomicRegionSequence=_seq(_code(*region.anatomy)),
                FrameLaterality=region.laterality or "U",
            )
        ),
        PixelValueTransformationSequence=_seq(
            _item(RescaleIntercept="0", RescaleSlope="1", RescaleType="US")
        ),
        MRImageFrameTypeSequence=_seq(
            _item(
                FrameType=frame_type,
                PixelPresentation="MONOCHROME",
                VolumetricProperties="VOLUME",
                VolumeBasedCalculationTechnique="NONE",
                ComplexImageComponent="MAGNITUDE",
                AcquisitionContrast=protocol.contrast,
            )
        ),
        MRTimingAndRelatedParametersSequence=_seq(
            _item(
                RepetitionTime=_ds(protocol.repetition_time),
                FlipAngle=_ds(protocol.flip_angle),
                EchoTrainLength=str(protocol.echo_train_length),
                RFEchoTrainLength=protocol.echo_train_length,
                GradientEchoTrainLength=0,
                SpecificAbsorptionRateSequence=_seq(
                    _item(
                        SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY",
                        SpecificAbsorptionRateValue=0.42,
                    )
                ),
                GradientOutputType="DB_DT",
                GradientOutput=12.5,
                OperatingModeSequence=_seq(
                    _item(OperatingModeType="STATIC FIELD", OperatingMode="IEC_NORMAL"),
                    _item(OperatingModeType="RF", OperatingMode="IEC_NORMAL"),
                    _item(OperatingModeType="GRADIENT", OperatingMode="IEC_NORMAL"),
                ),
            )
        ),
        MRFOVGeometrySequence=_seq(
            _item(
                InPlanePhaseEncodingDirection="ROW",
                MRAcquisitionFrequencyEncodingSteps=cols,
                MRAcquisitionPhaseEncodingStepsInPlane=rows,
                PercentSampling="100",
                PercentPhaseFieldOfView="100",
            )
        ),
        MREchoSequence=_seq(_item(EffectiveEchoTime=protocol.echo_time)),
        MRModifierSequence=_seq(
            _item(
                InversionRecovery="NO",
                FlowCompensation="NONE",
                T2Preparation="NO",
                SpectrallySelectedExcitation="NONE",
                SpatialPresaturation="NONE",
                PartialFourier="NO",
                ParallelAcquisition="NO",
            )
        ),
        MRImagingModifierSequence=_seq(
            _item(
                MagnetizationTransfer="NONE",
                BloodSignalNulling="NO",
                Tagging="NONE",
                TransmitterFrequency=_SIEMENS.frequency,
                PixelBandwidth="200",
            )
        ),
        MRReceiveCoilSequence=_seq(
            _item(
                ReceiveCoilName=_SIEMENS.coil,
                ReceiveCoilManufacturerName="SIEMENS",
                ReceiveCoilType="VOLUME",
                QuadratureReceiveCoil="NO",
            )
        ),
        MRTransmitCoilSequence=_seq(
            _item(
                TransmitCoilName="Body",
                TransmitCoilManufacturerName="SIEMENS",
                TransmitCoilType="BODY",
            )
        ),
        MRDiffusionSequence=_seq(_item(DiffusionBValue=0.0, DiffusionDirectionality="NONE")),
        MRAveragesSequence=_seq(_item(NumberOfAverages="1")),
    )
    ds.SharedFunctionalGroupsSequence = _seq(shared)

    per_frame = []
    for k in range(n_frames):
        frame_time = acquired + timedelta(milliseconds=duration_ms * k)
        content = _item(
            FrameAcquisitionNumber=1,
            FrameReferenceDateTime=_dt(frame_time),
            FrameAcquisitionDateTime=_dt(frame_time),
            FrameAcquisitionDuration=round(duration_ms, 3),
            DimensionIndexValues=[1, k + 1],
            StackID="1",
            InStackPositionNumber=k + 1,
        )
        per_frame.append(
            _item(
                FrameContentSequence=_seq(content),
                PlanePositionSequence=_seq(
                    _item(ImagePositionPatient=[_ds(v) for v in positions[k]])
                ),
            )
        )
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)

    _add_pixel_module(ds, rows, cols)
    phantom = _phantom(rows, cols, seed * 1000 + series_number)
    ds.PixelData = b"".join(
        _frame(phantom, protocol.contrast, np.pi * (k + 0.5) / n_frames) for k in range(n_frames)
    )
    _add_acme_block(ds, subject)
    return ds
