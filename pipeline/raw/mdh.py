"""Siemens measurement data headers (MDH) and their ISMRMRD acquisition headers.

A twix readout starts with an MDH: in VB17 files one 128-byte MDH per channel,
in VD/VE/XA files one 192-byte scan header followed by a 32-byte channel
header before each channel's samples.  The layouts here are numpy structured
dtypes so that a whole block of headers is read and mapped with array
operations instead of one Python object per readout (twixtools' ctypes
structures are the reference they are tested against).

The mapping to the ISMRMRD acquisition header follows siemens_to_ismrmrd's
``getAcquisition`` so that files converted here and there agree field by
field: same counters, same flags (including its choices, e.g. PATREFANDIMASCAN
wins over PATREFSCAN and RTFEEDBACK also marks navigation data), the
quaternion read in Siemens' (W, X, Y, Z) order with the phase and read
directions swapped as it does.
"""

from __future__ import annotations

import enum

import numpy as np

from pipeline.raw.blocks import ACQUISITION_HEADER_DTYPE

_COUNTER = [
    ("Lin", "<u2"),
    ("Ave", "<u2"),
    ("Sli", "<u2"),
    ("Par", "<u2"),
    ("Eco", "<u2"),
    ("Phs", "<u2"),
    ("Rep", "<u2"),
    ("Set", "<u2"),
    ("Seg", "<u2"),
    ("Ida", "<u2"),
    ("Idb", "<u2"),
    ("Idc", "<u2"),
    ("Idd", "<u2"),
    ("Ide", "<u2"),
]
COUNTER_DTYPE = np.dtype(_COUNTER)

#: VB17: one of these before every channel of every readout (128 bytes).
VB17_MDH_DTYPE = np.dtype(
    [
        ("FlagsAndDMALength", "<u4"),
        ("MeasUID", "<i4"),
        ("ScanCounter", "<u4"),
        ("TimeStamp", "<u4"),
        ("PMUTimeStamp", "<u4"),
        ("EvalInfoMask", "<u8"),
        ("SamplesInScan", "<u2"),
        ("UsedChannels", "<u2"),
        ("Counter", COUNTER_DTYPE),
        ("CutOffPre", "<u2"),
        ("CutOffPost", "<u2"),
        ("CenterCol", "<u2"),
        ("CoilSelect", "<u2"),
        ("ReadOutOffcentre", "<f4"),
        ("TimeSinceLastRF", "<u4"),
        ("CenterLin", "<u2"),
        ("CenterPar", "<u2"),
        ("IceProgramPara", "<u2", (4,)),
        ("FreePara", "<u2", (4,)),
        ("SlicePos", "<f4", (3,)),
        ("Quaternion", "<f4", (4,)),
        ("ChannelId", "<u2"),
        ("PTABPosNeg", "<u2"),
    ]
)

#: VD/VE/XA: one scan header per readout (192 bytes).
SCAN_HEADER_DTYPE = np.dtype(
    [
        ("FlagsAndDMALength", "<u4"),
        ("MeasUID", "<i4"),
        ("ScanCounter", "<u4"),
        ("TimeStamp", "<u4"),
        ("PMUTimeStamp", "<u4"),
        ("SystemType", "<u2"),
        ("PTABPosDelay", "<u2"),
        ("PTABPosX", "<i4"),
        ("PTABPosY", "<i4"),
        ("PTABPosZ", "<i4"),
        ("Reserved1", "<i4"),
        ("EvalInfoMask", "<u8"),
        ("SamplesInScan", "<u2"),
        ("UsedChannels", "<u2"),
        ("Counter", COUNTER_DTYPE),
        ("CutOffPre", "<u2"),
        ("CutOffPost", "<u2"),
        ("CenterCol", "<u2"),
        ("CoilSelect", "<u2"),
        ("ReadOutOffcentre", "<f4"),
        ("TimeSinceLastRF", "<u4"),
        ("CenterLin", "<u2"),
        ("CenterPar", "<u2"),
        ("SlicePos", "<f4", (3,)),
        ("Quaternion", "<f4", (4,)),
        ("IceProgramPara", "<u2", (24,)),
        ("ReservedPara", "<u2", (4,)),
        ("ApplicationCounter", "<u2"),
        ("ApplicationMask", "<u2"),
        ("CRC", "<u4"),
    ]
)

#: VD/VE/XA: one channel header before each channel's samples (32 bytes).
CHANNEL_HEADER_DTYPE = np.dtype(
    [
        ("TypeAndChannelLength", "<u4"),
        ("MeasUID", "<i4"),
        ("ScanCounter", "<u4"),
        ("Reserved1", "<i4"),
        ("SequenceTime", "<u4"),
        ("Unused2", "<u4"),
        ("ChannelId", "<u2"),
        ("Unused3", "<u2"),
        ("CRC", "<u4"),
    ]
)

DMA_LENGTH_MASK = 0x01FFFFFF  # the low 25 bits of FlagsAndDMALength


class EvalInfo(enum.IntEnum):
    """Bits of the MDH ``EvalInfoMask`` that the conversion looks at (twixtools' names)."""

    ACQEND = 0
    RTFEEDBACK = 1
    HPFEEDBACK = 2
    SYNCDATA = 5
    RAWDATACORRECTION = 10
    LASTSCANINMEAS = 11
    REFPHASESTABSCAN = 14
    PHASESTABSCAN = 15
    PHASCOR = 21
    PATREFSCAN = 22
    PATREFANDIMASCAN = 23
    REFLECT = 24
    NOISEADJSCAN = 25
    FIRSTSCANINSLICE = 28
    LASTSCANINSLICE = 29
    RETRO_ENDOFMEAS = 46
    RETRO_DUMMYSCAN = 51

    @property
    def mask(self) -> int:
        return 1 << int(self)


class AcqFlag(enum.IntEnum):
    """ISMRMRD acquisition flags (bit number + 1, as in ``ismrmrd.constants``)."""

    FIRST_IN_SLICE = 7
    LAST_IN_SLICE = 8
    LAST_IN_REPETITION = 14
    IS_NOISE_MEASUREMENT = 19
    IS_PARALLEL_CALIBRATION = 20
    IS_PARALLEL_CALIBRATION_AND_IMAGING = 21
    IS_REVERSE = 22
    IS_NAVIGATION_DATA = 23
    IS_PHASECORR_DATA = 24
    LAST_IN_MEASUREMENT = 25
    IS_HPFEEDBACK_DATA = 26
    IS_DUMMYSCAN_DATA = 27
    IS_RTFEEDBACK_DATA = 28
    IS_SURFACECOILCORRECTIONSCAN_DATA = 29
    IS_PHASE_STABILIZATION_REFERENCE = 30
    IS_PHASE_STABILIZATION = 31

    @property
    def mask(self) -> int:
        return 1 << (int(self) - 1)


# (Siemens bit, ISMRMRD flag) pairs set one for one, in siemens_to_ismrmrd's order.
# PATREFSCAN is handled apart: it only counts when PATREFANDIMASCAN is clear.
_FLAG_MAP: tuple[tuple[EvalInfo, AcqFlag], ...] = (
    (EvalInfo.NOISEADJSCAN, AcqFlag.IS_NOISE_MEASUREMENT),
    (EvalInfo.FIRSTSCANINSLICE, AcqFlag.FIRST_IN_SLICE),
    (EvalInfo.LASTSCANINSLICE, AcqFlag.LAST_IN_SLICE),
    (EvalInfo.LASTSCANINMEAS, AcqFlag.LAST_IN_REPETITION),
    (EvalInfo.PATREFANDIMASCAN, AcqFlag.IS_PARALLEL_CALIBRATION_AND_IMAGING),
    (EvalInfo.REFLECT, AcqFlag.IS_REVERSE),
    (EvalInfo.LASTSCANINMEAS, AcqFlag.LAST_IN_MEASUREMENT),
    (EvalInfo.PHASCOR, AcqFlag.IS_PHASECORR_DATA),
    (EvalInfo.RTFEEDBACK, AcqFlag.IS_NAVIGATION_DATA),
    (EvalInfo.RTFEEDBACK, AcqFlag.IS_RTFEEDBACK_DATA),
    (EvalInfo.HPFEEDBACK, AcqFlag.IS_HPFEEDBACK_DATA),
    (EvalInfo.RETRO_DUMMYSCAN, AcqFlag.IS_DUMMYSCAN_DATA),
    (EvalInfo.RAWDATACORRECTION, AcqFlag.IS_SURFACECOILCORRECTIONSCAN_DATA),
    (EvalInfo.SYNCDATA, AcqFlag.IS_DUMMYSCAN_DATA),
    (EvalInfo.RETRO_ENDOFMEAS, AcqFlag.LAST_IN_MEASUREMENT),
    (EvalInfo.REFPHASESTABSCAN, AcqFlag.IS_PHASE_STABILIZATION_REFERENCE),
    (EvalInfo.PHASESTABSCAN, AcqFlag.IS_PHASE_STABILIZATION),
)

ISMRMRD_HEADER_VERSION = 1  # ISMRMRD_VERSION_MAJOR, what the C library writes


def ismrmrd_flags(eval_info: np.ndarray) -> np.ndarray:
    """ISMRMRD ``flags`` for an array of Siemens ``EvalInfoMask`` values."""
    mask = eval_info.astype(np.uint64)
    out = np.zeros(mask.shape, dtype=np.uint64)
    for bit, flag in _FLAG_MAP:
        out |= np.where(mask & np.uint64(bit.mask), np.uint64(flag.mask), np.uint64(0))
    ref_only = (mask & np.uint64(EvalInfo.PATREFSCAN.mask)) != 0
    ref_only &= (mask & np.uint64(EvalInfo.PATREFANDIMASCAN.mask)) == 0
    out |= np.where(ref_only, np.uint64(AcqFlag.IS_PARALLEL_CALIBRATION.mask), np.uint64(0))
    return out


def quaternion_directions(quaternion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read, phase and slice direction cosines from Siemens quaternions, shape ``(n, 4)``.

    Siemens stores (W, X, Y, Z) and its rotation matrix has the columns
    phase, read, slice: siemens_to_ismrmrd passes (X, Y, Z, W) to ISMRMRD's
    ``quaternion_to_directions`` and receives phase where read would be.
    The formulas are ISMRMRD's (as in twixtools' ``quat.py``).
    """
    q = quaternion.astype(np.float32)
    a, b, c, d = q[:, 1], q[:, 2], q[:, 3], q[:, 0]
    one, two = np.float32(1.0), np.float32(2.0)
    first = np.stack(
        [one - two * (b * b + c * c), two * (a * b + c * d), two * (a * c - b * d)], axis=1
    )
    second = np.stack(
        [two * (a * b - c * d), one - two * (a * a + c * c), two * (b * c + a * d)], axis=1
    )
    third = np.stack(
        [two * (a * c + b * d), two * (b * c - a * d), one - two * (a * a + b * b)], axis=1
    )
    # ISMRMRD's (read, phase, slice) outputs are siemens_to_ismrmrd's (phase, read, slice).
    return second, first, third


def vb17_as_scan_headers(mdh: np.ndarray) -> np.ndarray:
    """VB17 MDHs (first channel of each readout) in the VD scan header layout.

    Only the patient table's Z position exists in VB17 (``PTABPosNeg``), and
    there are 4 ICE parameters plus 4 free ones: siemens_to_ismrmrd reads
    these 8 values as the first 8 ICE parameters, and so does this.
    """
    out = np.zeros(mdh.shape, dtype=SCAN_HEADER_DTYPE)
    for name in SCAN_HEADER_DTYPE.names or ():
        if name in (VB17_MDH_DTYPE.names or ()) and name != "IceProgramPara":
            out[name] = mdh[name]
    out["PTABPosZ"] = mdh["PTABPosNeg"]
    out["IceProgramPara"][:, :4] = mdh["IceProgramPara"]
    out["IceProgramPara"][:, 4:8] = mdh["FreePara"]
    return out


def acquisition_headers(
    scan: np.ndarray,
    channel_masks: np.ndarray,
    *,
    available_channels: int,
    sample_time_us: float,
    noise_sample_time_us: np.ndarray,
    measurement_uid: int | None = None,
) -> np.ndarray:
    """ISMRMRD acquisition headers for scan headers in :data:`SCAN_HEADER_DTYPE`.

    Parameters
    ----------
    scan
        Scan headers, shape ``(n,)``.
    channel_masks
        ``(n, 16)`` uint64: bit *k* set when channel ID *k* was recorded.
    available_channels
        The coil count of the system (``iMaxNoOfRxChannels``), as siemens_to_ismrmrd.
    sample_time_us
        Dwell time of imaging readouts (``sRXSPEC.alDwellTime[0]`` / 1000).
    noise_sample_time_us
        ``(n,)`` dwell time used where the readout is a noise scan: Siemens does
        not record it, siemens_to_ismrmrd derives it from the sample count.
    measurement_uid
        Replaces the MDH's MeasUID when given (VD files: the multi-raid entry's
        ID, as siemens_to_ismrmrd does when they disagree).
    """
    n = scan.shape[0]
    head = np.zeros(n, dtype=ACQUISITION_HEADER_DTYPE)
    head["version"] = ISMRMRD_HEADER_VERSION
    eval_info = scan["EvalInfoMask"]
    head["flags"] = ismrmrd_flags(eval_info)
    head["measurement_uid"] = (
        scan["MeasUID"].astype(np.int64).astype(np.uint32)
        if measurement_uid is None
        else measurement_uid
    )
    head["scan_counter"] = scan["ScanCounter"]
    head["acquisition_time_stamp"] = scan["TimeStamp"]
    head["physiology_time_stamp"][:, 0] = scan["PMUTimeStamp"]
    head["number_of_samples"] = scan["SamplesInScan"]
    head["available_channels"] = available_channels
    head["active_channels"] = scan["UsedChannels"]
    head["channel_mask"] = channel_masks
    head["discard_pre"] = scan["CutOffPre"]
    head["discard_post"] = scan["CutOffPost"]
    head["center_sample"] = scan["CenterCol"]
    noise = (eval_info & np.uint64(EvalInfo.NOISEADJSCAN.mask)) != 0
    head["sample_time_us"] = np.where(noise, noise_sample_time_us, np.float32(sample_time_us))
    head["position"] = scan["SlicePos"]
    read_dir, phase_dir, slice_dir = quaternion_directions(scan["Quaternion"])
    head["read_dir"] = read_dir
    head["phase_dir"] = phase_dir
    head["slice_dir"] = slice_dir
    head["patient_table_position"][:, 0] = scan["PTABPosX"]
    head["patient_table_position"][:, 1] = scan["PTABPosY"]
    head["patient_table_position"][:, 2] = scan["PTABPosZ"]
    counter = scan["Counter"]
    idx = head["idx"]
    idx["kspace_encode_step_1"] = counter["Lin"]
    idx["kspace_encode_step_2"] = counter["Par"]
    idx["average"] = counter["Ave"]
    idx["slice"] = counter["Sli"]
    idx["contrast"] = counter["Eco"]
    idx["phase"] = counter["Phs"]
    idx["repetition"] = counter["Rep"]
    idx["set"] = counter["Set"]
    idx["segment"] = counter["Seg"]
    for k, name in enumerate(("Ida", "Idb", "Idc", "Idd", "Ide")):
        idx["user"][:, k] = counter[name]
    idx["user"][:, 5] = scan["CenterLin"]
    idx["user"][:, 6] = scan["CenterPar"]
    head["idx"] = idx
    ice = scan["IceProgramPara"]
    head["user_int"][:, :7] = ice[:, :7]
    head["user_int"][:, 7] = scan["TimeSinceLastRF"].astype(np.int64).astype(np.int32)
    head["user_float"] = ice[:, 8:16]
    return head


def noise_dwell_time_us(
    samples: np.ndarray, *, vb: bool, xa: bool, protocol_name: str
) -> np.ndarray:
    """Dwell time of noise readouts, as siemens_to_ismrmrd's ``compute_noise_sample_in_us``."""
    n = np.maximum(samples.astype(np.float64), 1.0)
    if xa or protocol_name == "AdjCoilSens":
        return np.full(n.shape, 5.0, dtype=np.float32)
    if protocol_name == "AdjQuietCoilSens":
        return np.full(n.shape, 4.0, dtype=np.float32)
    if vb:
        return (1e6 / n / 130.0).astype(np.float32)
    return (np.floor(76800.0 / n) / 10.0).astype(np.float32)
