"""Small synthetic ISMRMRD/HDF5 files whose true image is known.

ISMRMRD's own generator (``ismrmrd_generate_cartesian_shepp_logan``) makes one
slice only; fastMRI volumes are 2D multi-slice, with noise scans, calibration
and phase-correction readouts, averages and partial Fourier.  This generator
makes such files, small enough for tests, together with the k-space and
images they were made from, so a reader can be checked against the truth
rather than against itself.

The k-space of each coil is the centred orthonormal 2D FFT of the slice image
times a coil sensitivity; the sensitivities are normalised so that
``sum |s|^2 == 1`` at every pixel, which makes the root-sum-of-squares of the
fully sampled coil images equal ``|image|``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from pipeline.raw.blocks import ACQUISITION_DTYPE, WAVEFORM_DTYPE

NOISE, CALIBRATION, REVERSE, PHASECORR = 1 << 18, 1 << 19, 1 << 21, 1 << 23


@dataclass(frozen=True)
class IsmrmrdSample:
    """How to make a sample; every default is a plain fully sampled 2D scan."""

    slices: int = 3
    coils: int = 4
    recon: tuple[int, int] = (16, 16)  # x (readout), y (phase)
    readout_oversampling: int = 2
    phase_oversampling: int = 8  # extra encoded phase lines beyond recon y
    step1_center: int | None = None  # None: encoded y // 2 (no partial Fourier)
    step1_maximum: int | None = None  # None: encoded y - 1
    noise_scans: int = 1
    calibration_lines: int = 0  # calibration-only readouts (flag 20), junk data
    phasecorr_lines: int = 0  # phase-correction readouts (flag 24), junk data
    averages: int = 1  # each line this often, with noise that cancels in the mean
    repetitions: int = 1  # later repetitions scaled, so keeping only the first shows
    reverse_odd_lines: bool = False  # odd lines stored reversed with flag 22
    asymmetric_echo: int = 0  # leading readout samples never acquired (partial echo)
    discard: tuple[int, int] = (0, 0)  # junk samples before/after (discard_pre/post)
    other_encoding_lines: int = 0  # per slice, junk readouts of encoding space 1
    partitions: int = 1  # > 1: a 3D slab (one slice) of this many kz partitions
    recon_partitions: int | None = None  # recon z; None: all partitions
    waveforms: int = 0
    acceleration: int = 1
    protocol_name: str | None = "CORPD_FBK"
    patient_id: str | None = "SUBJ-0001"
    seed: int = 0


@dataclass(frozen=True)
class IsmrmrdTruth:
    """What the sample file was made from."""

    encoded: tuple[int, int]
    # (slices or partitions, encoded x, encoded y) complex
    image: np.ndarray = field(repr=False)
    # (slices, coils, encoded x, encoded y), full; for a 3D slab the hybrid
    # k-space of each z position (what a 3D scan's partitions give once
    # inverse-transformed along kz)
    kspace: np.ndarray = field(repr=False)
    acquired: tuple[int, int]  # phase columns [first, last) that hold lines

    def expected_rss(self, recon: tuple[int, int]) -> np.ndarray:
        """``|image|`` centre-cropped: the RSS of fully sampled k-space."""
        ex, ey = self.encoded
        x0, y0 = (ex - recon[0]) // 2, (ey - recon[1]) // 2
        crop = self.image[:, x0 : x0 + recon[0], y0 : y0 + recon[1]]
        return np.asarray(np.abs(crop), dtype=np.float32)


def header_xml(spec: IsmrmrdSample, ex: int, ey: int) -> str:
    """A minimal ISMRMRD header (valid against ismrmrd.xsd) for ``spec``."""
    rx, ry = spec.recon
    ez = spec.partitions
    rz = spec.recon_partitions or ez
    center = ey // 2 if spec.step1_center is None else spec.step1_center
    maximum = ey - 1 if spec.step1_maximum is None else spec.step1_maximum
    subject = (
        f"<subjectInformation><patientID>{spec.patient_id}</patientID></subjectInformation>"
        if spec.patient_id is not None
        else ""
    )
    measurement = (
        "<measurementInformation><patientPosition>HFS</patientPosition>"
        f"<protocolName>{spec.protocol_name}</protocolName></measurementInformation>"
        if spec.protocol_name is not None
        else ""
    )
    parallel = (
        "<parallelImaging><accelerationFactor>"
        f"<kspace_encoding_step_1>{spec.acceleration}</kspace_encoding_step_1>"
        "<kspace_encoding_step_2>1</kspace_encoding_step_2></accelerationFactor>"
        "<calibrationMode>embedded</calibrationMode></parallelImaging>"
        if spec.acceleration > 1
        else ""
    )
    return (
        '<?xml version="1.0"?>\n'
        '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
        "<version>2</version>"
        f"{subject}{measurement}"
        f"<acquisitionSystemInformation><receiverChannels>{spec.coils}</receiverChannels>"
        "</acquisitionSystemInformation>"
        "<experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz>"
        "</experimentalConditions>"
        "<encoding>"
        f"<encodedSpace><matrixSize><x>{ex}</x><y>{ey}</y><z>{ez}</z></matrixSize>"
        f"<fieldOfView_mm><x>{2 * ex}</x><y>{2 * ey}</y><z>3</z></fieldOfView_mm></encodedSpace>"
        f"<reconSpace><matrixSize><x>{rx}</x><y>{ry}</y><z>{rz}</z></matrixSize>"
        f"<fieldOfView_mm><x>{2 * rx}</x><y>{2 * ry}</y><z>3</z></fieldOfView_mm></reconSpace>"
        "<encodingLimits>"
        f"<kspace_encoding_step_1><minimum>0</minimum><maximum>{maximum}</maximum>"
        f"<center>{center}</center></kspace_encoding_step_1>"
        f"<kspace_encoding_step_2><minimum>0</minimum><maximum>{ez - 1}</maximum>"
        f"<center>{ez // 2}</center></kspace_encoding_step_2>"
        f"<slice><minimum>0</minimum><maximum>{max(spec.slices - 1, 0)}</maximum><center>0</center></slice>"
        f"<average><minimum>0</minimum><maximum>{spec.averages - 1}</maximum><center>0</center></average>"
        f"<repetition><minimum>0</minimum><maximum>{spec.repetitions - 1}</maximum><center>0</center></repetition>"
        "</encodingLimits>"
        f"<trajectory>cartesian</trajectory>{parallel}"
        "</encoding></ismrmrdHeader>"
    )


def _images(spec: IsmrmrdSample, count: int, ex: int, ey: int) -> np.ndarray:
    """Ellipses of different size and phase per slice, inside the recon field of view."""
    x = (np.arange(ex) - ex / 2)[:, None] / (spec.recon[0] / 2)
    y = (np.arange(ey) - ey / 2)[None, :] / (spec.recon[1] / 2)
    out = np.zeros((count, ex, ey), dtype=np.complex128)
    for s in range(count):
        a, b = 0.8 - 0.3 * s / count, 0.6 + 0.2 * s / count  # stays > 0 for any count
        body = (x / a) ** 2 + (y / b) ** 2 <= 1
        spot = ((x - 0.2) / 0.2) ** 2 + ((y + 0.1 * s) / 0.15) ** 2 <= 1
        out[s] = (1.0 + 0.5 * s) * body + 0.7 * spot
        out[s] *= np.exp(1j * (0.3 * x + 0.2 * y + s))
    return out


def _sensitivities(coils: int, ex: int, ey: int) -> np.ndarray:
    """Smooth complex coil maps with ``sum |s|^2 == 1`` at every pixel."""
    x = np.linspace(-1, 1, ex)[:, None]
    y = np.linspace(-1, 1, ey)[None, :]
    maps = np.empty((coils, ex, ey), dtype=np.complex128)
    for c in range(coils):
        angle = 2 * np.pi * c / coils
        cx, cy = 1.5 * np.cos(angle), 1.5 * np.sin(angle)
        maps[c] = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 4) * np.exp(1j * angle)
    return np.asarray(maps / np.sqrt(np.sum(np.abs(maps) ** 2, axis=0)))


def _fftc(data: np.ndarray, axis: int) -> np.ndarray:
    """Centred orthonormal 1D FFT along ``axis``."""
    spectrum = np.fft.fft(np.fft.ifftshift(data, axes=axis), axis=axis, norm="ortho")
    return np.asarray(np.fft.fftshift(spectrum, axes=axis))


def fft2c(image: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2D FFT over the last two axes (fastMRI's ``fft2c``)."""
    axes = (-2, -1)
    spectrum = np.fft.fft2(np.fft.ifftshift(image, axes=axes), norm="ortho")
    return np.asarray(np.fft.fftshift(spectrum, axes=axes))


def write_ismrmrd_sample(path: Path, spec: IsmrmrdSample | None = None) -> IsmrmrdTruth:
    """Write an ISMRMRD/HDF5 file for ``spec`` and return what it was made from."""
    spec = spec or IsmrmrdSample()
    rng = np.random.default_rng(spec.seed)
    ex = spec.recon[0] * spec.readout_oversampling
    ey = spec.recon[1] + spec.phase_oversampling
    center = ey // 2 if spec.step1_center is None else spec.step1_center
    maximum = ey - 1 if spec.step1_maximum is None else spec.step1_maximum
    first = ey // 2 - center
    if spec.partitions > 1 and spec.slices != 1:
        raise ValueError("a 3D sample is one slab: slices must be 1")
    planes = spec.partitions if spec.partitions > 1 else spec.slices
    images = _images(spec, planes, ex, ey)
    kspace = fft2c(images[:, None] * _sensitivities(spec.coils, ex, ey)[None])
    # 3D: the acquired k-space is also Fourier-encoded along z (partitions).
    acquired = kspace if spec.partitions == 1 else _fftc(kspace, axis=0)
    # flags, step1, step2, slice, average, repetition, encoding space, samples
    rows: list[tuple[int, int, int, int, int, int, int, np.ndarray]] = []

    def junk(width: int = ex) -> np.ndarray:
        shape = (spec.coils, width)
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * 5

    # (slice, partition): 2D multi-slice, or one 3D slab of partitions.
    positions = (
        [(s, 0) for s in range(spec.slices)]
        if spec.partitions == 1
        else [(0, p) for p in range(spec.partitions)]
    )
    for _ in range(spec.noise_scans):
        rows.append((NOISE, 0, 0, 0, 0, 0, 0, junk() * 0.01))
    for rep in range(spec.repetitions):
        for s, p in positions:
            for _ in range(spec.phasecorr_lines):
                rows.append((PHASECORR, center, p, s, 0, rep, 0, junk()))
            for k in range(spec.calibration_lines):
                step1 = center - spec.calibration_lines // 2 + k
                rows.append((CALIBRATION, step1, p, s, 0, rep, 0, junk()))
            for k in range(spec.other_encoding_lines):
                rows.append((0, k, p, s, 0, rep, 1, junk()))
            for step1 in range(0, maximum + 1, spec.acceleration):
                line = acquired[s + p, :, spec.asymmetric_echo :, first + step1] * (1 + rep)
                for avg in range(spec.averages):
                    # Offsets that sum to zero over the averages: the mean is the line.
                    delta = 0.0 if spec.averages == 1 else (avg - (spec.averages - 1) / 2) * 0.1
                    rows.append((0, step1, p, s, avg, rep, 0, line + delta))
    pre, post = spec.discard
    table = np.zeros(len(rows), dtype=ACQUISITION_DTYPE)
    head = table["head"]
    for n, (flags, step1, step2, s, avg, rep, space, data) in enumerate(rows):
        centre = ex // 2
        if not flags and not space:  # an image line: shaped as the options say
            if spec.reverse_odd_lines and step1 % 2:
                flags |= REVERSE
                data = data[:, ::-1]
            centre = ex // 2 - spec.asymmetric_echo + pre
            data = np.concatenate([junk(pre), data, junk(post)], axis=1)
            head["discard_pre"][n], head["discard_post"][n] = pre, post
        head["version"][n] = 1
        head["flags"][n] = flags
        head["scan_counter"][n] = n
        head["number_of_samples"][n] = data.shape[1]
        head["available_channels"][n] = spec.coils
        head["active_channels"][n] = spec.coils
        head["center_sample"][n] = centre
        head["encoding_space_ref"][n] = space
        head["sample_time_us"][n] = 5.0
        head["read_dir"][n] = (1, 0, 0)
        head["phase_dir"][n] = (0, 1, 0)
        head["slice_dir"][n] = (0, 0, 1)
        head["position"][n] = (0, 0, 3.0 * s)
        head["idx"]["kspace_encode_step_1"][n] = step1
        head["idx"]["kspace_encode_step_2"][n] = step2
        head["idx"]["slice"][n] = s
        head["idx"]["average"][n] = avg
        head["idx"]["repetition"][n] = rep
        table["data"][n] = np.ascontiguousarray(data, dtype=np.complex64).view(np.float32).ravel()
        table["traj"][n] = np.zeros(0, dtype=np.float32)
    with h5py.File(path, "w") as handle:
        group = handle.create_group("dataset")
        xml = group.create_dataset("xml", (1,), dtype=h5py.special_dtype(vlen=bytes))
        xml[0] = header_xml(spec, ex, ey).encode()
        group.create_dataset("data", data=table, maxshape=(None,))
        if spec.waveforms:
            waves = np.zeros(spec.waveforms, dtype=WAVEFORM_DTYPE)
            for n in range(spec.waveforms):
                waves["head"]["number_of_samples"][n] = 10
                waves["head"]["channels"][n] = 1
                waves["head"]["waveform_id"][n] = 0
                waves["data"][n] = np.arange(10, dtype=np.uint32) + n
            group.create_dataset("waveforms", data=waves, maxshape=(None,))
    return IsmrmrdTruth((ex, ey), images, kspace.astype(np.complex64), (first, first + maximum + 1))
