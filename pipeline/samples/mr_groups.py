"""What every generated enhanced MR object shares: image, DTI, spectroscopy.

PS3.3 C.8.13 and C.8.14 give enhanced MR images and spectra the same
modules (patient to frame of reference, the multi-frame instance, the MR
pulse sequence) and the same MR timing, modifier and coil macros; the
generators differ only in their values, so they are made here once.
"""

from __future__ import annotations

from datetime import datetime

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from pipeline.samples.exams import Vendor
from pipeline.samples.headers import (
    Series,
    add_equipment,
    add_patient,
    add_series,
    add_study,
    format_da,
    format_ds,
    format_dt,
    format_tm,
    item,
    sequence,
)

__all__ = [
    "add_enhanced_instance",
    "add_enhanced_series",
    "add_monochrome_image",
    "add_pulse_sequence",
    "coils",
    "fov_geometry",
    "imaging_modifiers",
    "modifiers",
    "timing",
]


def add_enhanced_series(
    ds: Dataset, series: Series, vendor: Vendor, *, protocol_name: str, patient_position: str
) -> None:
    """Patient, study, MR series, equipment and frame of reference of an enhanced object.

    The series-level Laterality is left out: an enhanced object carries it
    per frame (FrameLaterality), and dciodvfy rejects it at the series level.
    """
    add_patient(ds, series.subject, series.patient_name)
    add_study(ds, series)
    add_series(ds, series, "MR")
    if "Laterality" in ds:
        del ds.Laterality
    ds.ProtocolName = protocol_name
    ds.PatientPosition = patient_position
    add_equipment(ds, series.subject, vendor)
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""


def add_enhanced_instance(
    ds: Dataset,
    vendor: Vendor,
    *,
    created: datetime,
    acquired: datetime,
    frames: int,
    duration: float,
    comments: str,
    component: str,
    contrast: str,
) -> None:
    """The multi-frame instance of an enhanced MR image or spectrum (one acquisition, 1H, IEC)."""
    ds.InstanceNumber = "1"
    ds.ContentDate = format_da(created)
    ds.ContentTime = format_tm(created)
    ds.NumberOfFrames = str(frames)
    ds.AcquisitionNumber = "1"
    ds.AcquisitionDateTime = format_dt(acquired)
    ds.AcquisitionDuration = duration
    ds.ContentQualification = "PRODUCT"
    ds.ResonantNucleus = "1H"
    ds.KSpaceFiltering = "NONE"
    ds.MagneticFieldStrength = format_ds(vendor.field_strength)
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.ImageComments = comments
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ComplexImageComponent = component
    ds.AcquisitionContrast = contrast


def add_monochrome_image(ds: Dataset) -> None:
    """An enhanced MR image's presentation: monochrome, identity LUT, no annotation, not lossy."""
    ds.PixelPresentation = "MONOCHROME"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.AcquisitionContextSequence = DicomSequence([])


def add_pulse_sequence(ds: Dataset, name: str, acquisition_type: str) -> None:
    """MR Pulse Sequence of a spin-echo acquisition; the caller adds what its sequence has more."""
    ds.PulseSequenceName = name
    ds.MRAcquisitionType = acquisition_type
    ds.EchoPulseSequence = "SPIN"
    ds.MultipleSpinEcho = "NO"
    ds.MultiPlanarExcitation = "NO"
    ds.PhaseContrast = "NO"
    ds.TimeOfFlightContrast = "NO"
    ds.SteadyStatePulseSequence = "NONE"


def timing(
    repetition_time: str,
    flip_angle: str,
    *,
    echo_train: int,
    gradient_echo_train: int,
    sar: float,
    gradient_output: float,
) -> DicomSequence:
    """MR Timing and Related Parameters (times and angle as DS strings), with its SAR and IEC
    operating modes (all normal)."""
    return sequence(
        item(
            RepetitionTime=repetition_time,
            FlipAngle=flip_angle,
            EchoTrainLength=str(echo_train),
            RFEchoTrainLength=echo_train,
            GradientEchoTrainLength=gradient_echo_train,
            SpecificAbsorptionRateSequence=sequence(
                item(
                    SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY",
                    SpecificAbsorptionRateValue=sar,
                )
            ),
            GradientOutputType="DB_DT",
            GradientOutput=gradient_output,
            OperatingModeSequence=sequence(
                item(OperatingModeType="STATIC FIELD", OperatingMode="IEC_NORMAL"),
                item(OperatingModeType="RF", OperatingMode="IEC_NORMAL"),
                item(OperatingModeType="GRADIENT", OperatingMode="IEC_NORMAL"),
            ),
        )
    )


def modifiers() -> DicomSequence:
    """MR Modifier: a plain acquisition (no inversion, saturation, partial or parallel)."""
    return sequence(
        item(
            InversionRecovery="NO",
            FlowCompensation="NONE",
            T2Preparation="NO",
            SpectrallySelectedExcitation="NONE",
            SpatialPresaturation="NONE",
            PartialFourier="NO",
            ParallelAcquisition="NO",
        )
    )


def imaging_modifiers(frequency: float, bandwidth: str) -> DicomSequence:
    return sequence(
        item(
            MagnetizationTransfer="NONE",
            BloodSignalNulling="NO",
            Tagging="NONE",
            TransmitterFrequency=frequency,
            PixelBandwidth=bandwidth,
        )
    )


def fov_geometry(direction: str, rows: int, cols: int) -> DicomSequence:
    return sequence(
        item(
            InPlanePhaseEncodingDirection=direction,
            MRAcquisitionFrequencyEncodingSteps=cols,
            MRAcquisitionPhaseEncodingStepsInPlane=rows,
            PercentSampling="100",
            PercentPhaseFieldOfView="100",
        )
    )


def coils(manufacturer: str, receive_coil: str) -> dict[str, DicomSequence]:
    """MR Receive Coil (a volume coil) and MR Transmit Coil (the body coil), by keyword."""
    return {
        "MRReceiveCoilSequence": sequence(
            item(
                ReceiveCoilName=receive_coil,
                ReceiveCoilManufacturerName=manufacturer,
                ReceiveCoilType="VOLUME",
                QuadratureReceiveCoil="NO",
            )
        ),
        "MRTransmitCoilSequence": sequence(
            item(
                TransmitCoilName="Body",
                TransmitCoilManufacturerName=manufacturer,
                TransmitCoilType="BODY",
            )
        ),
    }
