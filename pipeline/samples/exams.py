"""What a synthetic exam scans: body region, protocols, scanner and slice geometry.

Converters and validators look at sequence parameters, orientation and
vendor, so the samples copy plausible Siemens and GE values rather than
inventing round numbers.  Subjects alternate between a brain and a left knee
exam so that laterality and two sets of protocols are always exercised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.samples.subjects import Subject

__all__ = [
    "BRAIN",
    "DIFFUSION",
    "GE",
    "SIEMENS",
    "Protocol",
    "Region",
    "Vendor",
    "slice_geometry",
    "subject_region",
]


@dataclass(frozen=True)
class Protocol:
    """One scanner protocol: the sequence parameters every image of its series repeats."""

    name: str
    contrast: str
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    scan_options: tuple[str, ...]
    acquisition_type: str
    repetition_time: float
    echo_time: float
    inversion_time: float | None
    flip_angle: float
    echo_train_length: int
    sequence_name: str
    orientation: tuple[float, float, float, float, float, float]
    slice_thickness: float
    field_of_view_mm: float


_AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
_SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
_CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


@dataclass(frozen=True)
class Region:
    """A body region the samples scan, with where it sits in the scanner and its protocols."""

    body_part: str
    description: str
    laterality: str
    patient_position: str
    anatomy: tuple[str, str, str]
    centre: tuple[float, float, float]
    protocols: tuple[Protocol, ...]


BRAIN = Region(
    body_part="BRAIN",
    description="MRI BRAIN",
    laterality="",
    patient_position="HFS",
    anatomy=("12738006", "SCT", "Brain"),
    centre=(0.0, -18.0, 25.0),
    protocols=(
        Protocol("t2_tse_tra", "T2", ("SE",), ("SK", "SP", "OSP"), ("PFP",), "2D",
                  6000.0, 96.0, None, 150.0, 17, "*tse2d1_17", _AXIAL, 4.0, 220.0),
        Protocol("t1_mprage_sag", "T1", ("GR", "IR"), ("SK", "SP", "MP"), ("PFP",), "3D",
                  2300.0, 2.98, 900.0, 9.0, 1, "*tfl3d1_16ns", _SAGITTAL, 1.0, 256.0),
        Protocol("t2_tirm_tra_dark-fluid", "FLAIR", ("SE", "IR"), ("SK", "SP", "MP", "OSP"),
                  ("FS",), "2D", 9000.0, 81.0, 2500.0, 150.0, 16, "*tir2d1_16", _AXIAL,
                  5.0, 230.0),
    ),
)  # fmt: skip
_KNEE = Region(
    body_part="KNEE",
    description="MRI KNEE LEFT",
    laterality="L",
    patient_position="FFS",
    anatomy=("72696002", "SCT", "Knee"),
    centre=(80.0, 10.0, -480.0),
    protocols=(
        Protocol("pd_tse_fs_sag", "PROTON_DENSITY", ("SE",), ("SK", "SP", "OSP"), ("FS", "PFP"),
                  "2D", 3200.0, 33.0, None, 150.0, 7, "*tse2d1_7", _SAGITTAL, 3.0, 160.0),
        Protocol("t1_tse_cor", "T1", ("SE",), ("SK", "SP", "OSP"), ("PFP",), "2D",
                  650.0, 12.0, None, 150.0, 3, "*tse2d1_3", _CORONAL, 3.0, 160.0),
        Protocol("t2_tse_tra", "T2", ("SE",), ("SK", "SP", "OSP"), ("PFP",), "2D",
                  4500.0, 76.0, None, 150.0, 13, "*tse2d1_13", _AXIAL, 3.5, 150.0),
    ),
)  # fmt: skip
DIFFUSION = Protocol("ep2d_diff_3scan_trace", "DIFFUSION", ("EP",), ("SK", "SP"), ("PFP", "FS"),
                       "2D", 5200.0, 89.0, None, 90.0, 1, "*ep_b0", _AXIAL, 5.0, 230.0)  # fmt: skip


def subject_region(subject: Subject) -> Region:
    """Brain or left knee, by the parity of the MRN's last character (alternates in make_subjects)."""
    return BRAIN if ord(subject.phi.patient_id[-1:] or "0") % 2 == 0 else _KNEE


@dataclass(frozen=True)
class Vendor:
    """The scanner model an instance claims to come from (Equipment and MR Image values)."""

    manufacturer: str
    model: str
    software: str
    field_strength: float
    frequency: float
    coil: str


SIEMENS = Vendor("SIEMENS", "Prisma_fit", "syngo MR E11", 3.0, 123.251615, "HeadNeck_20")
GE = Vendor("GE MEDICAL SYSTEMS", "DISCOVERY MR750", "27\\LX\\MR Software release:DV26.0_R03",
              3.0, 127.766345, "8HRBRAIN")  # fmt: skip


def slice_geometry(
    protocol: Protocol, region: Region, rows: int, cols: int, n_positions: int
) -> tuple[float, list[list[float]], list[float], float]:
    """Pixel spacing, per-slice positions and locations, and the slice spacing.

    Positions step along the slice normal (row direction × column direction)
    and are centred on the region, as a planned scan is.
    """
    o = np.array(protocol.orientation)
    row_dir, col_dir = o[:3], o[3:]
    normal = np.cross(row_dir, col_dir)
    spacing = round(protocol.field_of_view_mm / max(rows, cols), 6)
    step = protocol.slice_thickness * (1.0 if protocol.acquisition_type == "3D" else 1.2)
    centre = np.array(region.centre)
    first = (
        centre
        - row_dir * spacing * cols / 2
        - col_dir * spacing * rows / 2
        - normal * step * (n_positions - 1) / 2
    )
    positions = [
        [round(float(v), 4) for v in first + normal * step * k] for k in range(n_positions)
    ]
    locations = [round(float(np.dot(p, normal)), 4) for p in positions]
    return spacing, positions, locations, step
