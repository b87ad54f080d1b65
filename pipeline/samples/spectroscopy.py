"""MR spectroscopy objects: one DICOM MR Spectroscopy instance, one Siemens CSA Non-Image.

Neither has Pixel Data.  DICOM MR Spectroscopy Storage keeps its spectra in
Spectroscopy Data (5600,0020), complex floats, and its header carries the
same PHI as an image's; a release can include it once the header is
de-identified, the spectra untouched.  Siemens' older systems wrote
spectroscopy instead under their private "CSA Non-Image" SOP class, the data
in a private element and the parameters in CSA headers whose protocol text
names the patient; a pipeline must refuse that and say why.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID

from pipeline.samples.csa import encode_csa
from pipeline.samples.exams import BRAIN, DIFFUSION, slice_geometry
from pipeline.samples.headers import (
    add_acme_block,
    add_patient,
    add_private,
    add_series,
    add_study,
    code_item,
    format_da,
    format_ds,
    format_dt,
    format_tm,
    item,
    new_dataset,
    new_series,
    sample_uid,
    sequence,
)
from pipeline.samples.mr_groups import (
    add_enhanced_instance,
    add_enhanced_series,
    coils,
    modifiers,
    timing,
)
from pipeline.samples.other_objects import PRIVATE_SOP_CLASS
from pipeline.samples.philips import PHILIPS
from pipeline.samples.subjects import Subject

__all__ = ["MR_SPECTROSCOPY_STORAGE", "mr_spectroscopy", "siemens_csa_spectroscopy", "spectrum"]

MR_SPECTROSCOPY_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4.2")
_POINTS = 1024
_SPECTRAL_WIDTH = 2000.0  # Hz
_FREQUENCY = 127.7654  # MHz, 1H at 3 T


def spectrum(points: int = _POINTS, seed: int = 0) -> bytes:
    """A single-voxel brain FID (NAA, creatine, choline), complex float32, real/imaginary pairs."""
    rng = np.random.default_rng(seed)
    t = np.arange(points) / _SPECTRAL_WIDTH
    fid = np.zeros(points, dtype=np.complex128)
    for ppm, amplitude, t2 in ((2.01, 1.0, 0.12), (3.03, 0.7, 0.10), (3.21, 0.55, 0.09)):
        offset = (ppm - 4.7) * _FREQUENCY  # Hz from water
        fid += amplitude * np.exp(2j * np.pi * offset * t) * np.exp(-t / t2)
    fid += rng.normal(0.0, 0.01, points) + 1j * rng.normal(0.0, 0.01, points)
    pairs = np.empty(2 * points, dtype="<f4")
    pairs[0::2], pairs[1::2] = fid.real, fid.imag
    return pairs.tobytes()


def mr_spectroscopy(subject: Subject, *, seed: int = 0, study_uid: str | None = None) -> Dataset:
    """A Philips single-voxel MR Spectroscopy Storage instance (PRESS, 1H), PHI included.

    Returns
    -------
    pydicom.Dataset
        One frame of ``1×1`` voxels with 1024 complex points in Spectroscopy
        Data; no Pixel Data.  Patient, study and equipment carry the planted
        PHI as on an image, and ImageComments names the patient's ID.
    """
    series = new_series(
        subject,
        seed=seed,
        study_uid=study_uid,
        series_number=30,
        description="SV_PRESS_35",
        protocol=DIFFUSION,
        vendor=PHILIPS,
        kind="mr-spectroscopy",
        region=BRAIN,
    )
    acquired = series.start + timedelta(seconds=20)
    created = acquired + timedelta(seconds=140)
    sop_uid = sample_uid("spectroscopy", series.series_uid, 0)
    ds = new_dataset(MR_SPECTROSCOPY_STORAGE, sop_uid, created)
    add_enhanced_series(
        ds, series, PHILIPS, protocol_name=series.description,
        patient_position=BRAIN.patient_position,
    )  # fmt: skip

    # MR Spectroscopy
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SPECTROSCOPY", "NONE"]
    add_enhanced_instance(
        ds, PHILIPS, created=created, acquired=acquired, frames=1, duration=136.0,
        comments=f"Pat. {subject.phi.patient_id}: voxel in left basal ganglia",
        component="COMPLEX", contrast="UNKNOWN",
    )  # fmt: skip
    ds.TransmitterFrequency = [_FREQUENCY]
    ds.SpectralWidth = [_SPECTRAL_WIDTH]
    ds.ChemicalShiftReference = [4.7]
    ds.VolumeLocalizationTechnique = "PRESS"
    ds.VolumeLocalizationSequence = sequence(
        *(
            item(
                SlabThickness=20.0,
                SlabOrientation=list(axis),
                MidSlabPosition=[-12.0, 8.0, 14.0],
            )
            for axis in ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
        )
    )
    ds.Decoupling = "NO"
    ds.TimeDomainFiltering = "NONE"
    ds.NumberOfZeroFills = 0
    ds.BaselineCorrection = "NONE"
    ds.FrequencyCorrection = "NO"
    ds.FirstOrderPhaseCorrection = "NO"
    ds.WaterReferencedPhaseCorrection = "NO"
    ds.AcquisitionContextSequence = DicomSequence([])

    # MR Spectroscopy Pulse Sequence
    ds.PulseSequenceName = "PRESS"
    ds.MRSpectroscopyAcquisitionType = "SINGLE_VOXEL"
    ds.EchoPulseSequence = "SPIN"
    ds.MultipleSpinEcho = "NO"
    ds.MultiPlanarExcitation = "NO"
    ds.SteadyStatePulseSequence = "NONE"
    ds.EchoPlanarPulseSequence = "NO"
    ds.SpectrallySelectedSuppression = "WATER"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.RectilinearPhaseEncodeReordering = "LINEAR"
    ds.SegmentedKSpaceTraversal = "SINGLE"
    ds.NumberOfKSpaceTrajectories = 1

    # Multi-frame Functional Groups and Dimension
    dimension_uid = sample_uid("dimension-organization", sop_uid)
    ds.DimensionOrganizationSequence = sequence(item(DimensionOrganizationUID=dimension_uid))
    ds.DimensionIndexSequence = sequence(
        item(
            DimensionOrganizationUID=dimension_uid,
            DimensionIndexPointer=0x00209057,
            FunctionalGroupPointer=0x00209111,
            DimensionDescriptionLabel="In-Stack Position Number",
        )
    )
    _, positions, _, _ = slice_geometry(DIFFUSION, BRAIN, 1, 1, 1)
    ds.SharedFunctionalGroupsSequence = sequence(_shared())
    ds.PerFrameFunctionalGroupsSequence = sequence(
        item(
            FrameContentSequence=sequence(
                item(
                    FrameAcquisitionNumber=1,
                    FrameReferenceDateTime=format_dt(acquired),
                    FrameAcquisitionDateTime=format_dt(acquired),
                    FrameAcquisitionDuration=136000.0,
                    DimensionIndexValues=[1],
                    StackID="1",
                    InStackPositionNumber=1,
                )
            ),
            PlanePositionSequence=sequence(
                item(ImagePositionPatient=[format_ds(v) for v in positions[0]])
            ),
        )
    )

    # MR Spectroscopy Data: spectra, not pixels
    ds.Rows = 1
    ds.Columns = 1
    ds.DataPointRows = 1
    ds.DataPointColumns = _POINTS
    ds.DataRepresentation = "COMPLEX"
    ds.SignalDomainColumns = "TIME"
    ds.SpectroscopyData = spectrum(seed=seed)
    add_acme_block(ds, subject)
    return ds


def _shared() -> Dataset:
    return item(
        PixelMeasuresSequence=sequence(item(PixelSpacing=["20", "20"], SliceThickness="20")),
        PlaneOrientationSequence=sequence(
            item(ImageOrientationPatient=[format_ds(v) for v in DIFFUSION.orientation])
        ),
        FrameAnatomySequence=sequence(
            item(
                AnatomicRegionSequence=sequence(code_item("12738006", "SCT", "Brain")),
                FrameLaterality="U",
            )
        ),
        MRSpectroscopyFrameTypeSequence=sequence(
            item(
                FrameType=["ORIGINAL", "PRIMARY", "SPECTROSCOPY", "NONE"],
                VolumetricProperties="VOLUME",
                VolumeBasedCalculationTechnique="NONE",
                ComplexImageComponent="COMPLEX",
                AcquisitionContrast="UNKNOWN",
            )
        ),
        MRSpectroscopyFOVGeometrySequence=sequence(
            item(
                SpectroscopyAcquisitionDataColumns=_POINTS,
                SpectroscopyAcquisitionPhaseRows=1,
                SpectroscopyAcquisitionPhaseColumns=1,
                SpectroscopyAcquisitionOutOfPlanePhaseSteps=1,
                PercentSampling="100",
                PercentPhaseFieldOfView="100",
            )
        ),
        MRTimingAndRelatedParametersSequence=timing(
            "2000", "90", echo_train=1, gradient_echo_train=0, sar=0.6, gradient_output=10.0
        ),
        MREchoSequence=sequence(item(EffectiveEchoTime=35.0)),
        MRModifierSequence=modifiers(),
        **coils("Philips", PHILIPS.coil),
        MRAveragesSequence=sequence(item(NumberOfAverages="128")),
    )


def siemens_csa_spectroscopy(
    subject: Subject, *, seed: int = 0, study_uid: str | None = None
) -> Dataset:
    """A Siemens single-voxel spectrum under the private CSA Non-Image SOP class.

    What older syngo MR systems export for spectroscopy: no Pixel Data, the
    FID in ``(7FE1,"SIEMENS CSA NON-IMAGE",10)``, the parameters in the CSA
    image header and the protocol (whose text names the patient) in the CSA
    series header.

    Returns
    -------
    pydicom.Dataset
        SOP class ``1.3.12.2.1107.5.9.1``; a pipeline must refuse it.
    """
    series = new_series(
        subject,
        seed=seed,
        study_uid=study_uid,
        series_number=31,
        description="svs_se_30",
        protocol=DIFFUSION,
        vendor=PHILIPS,
        kind="siemens-csa-spectroscopy",
        region=BRAIN,
    )
    moment = series.start + timedelta(seconds=160)
    ds = new_dataset(
        PRIVATE_SOP_CLASS, sample_uid("csa-spectroscopy", series.series_uid, 0), moment
    )
    add_patient(ds, subject, series.patient_name)
    add_study(ds, series)
    add_series(ds, series, "MR")
    ds.Manufacturer = "SIEMENS"
    ds.InstitutionName = subject.phi.institution_name
    ds.StationName = subject.phi.station_name
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SPECTROSCOPY", "NONE"]
    ds.InstanceNumber = "1"
    ds.ContentDate = format_da(moment)
    ds.ContentTime = format_tm(moment)
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    add_private(
        ds,
        0x0029,
        "SIEMENS CSA HEADER",
        [
            (0x08, "CS", "SPEC NUM 4"),
            (0x10, "OB", encode_csa({"DataPointColumns": [str(_POINTS)],
                                     "ImagedNucleus": ["1H"],
                                     "PatientName": [series.patient_name]})),
            (0x20, "OB", encode_csa({"MrPhoenixProtocol": [
                f'tProtocolName = "svs_se_30 {subject.phi.patient_id}"']})),
        ],
    )  # fmt: skip
    add_private(ds, 0x7FE1, "SIEMENS CSA NON-IMAGE", [(0x10, "OB", spectrum(seed=seed))])
    return ds
