"""Functional-group items every generated enhanced MR object shares: image, DTI, spectroscopy.

PS3.3 C.8.13 and C.8.14 give enhanced MR images and spectra the same MR
timing, modifier and coil macros; the generators differ only in their
values, so the items are made here once.
"""

from __future__ import annotations

from pydicom.sequence import Sequence as DicomSequence

from pipeline.samples.headers import item, sequence

__all__ = ["coils", "fov_geometry", "imaging_modifiers", "modifiers", "timing"]


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
