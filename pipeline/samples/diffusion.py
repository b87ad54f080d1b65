"""Diffusion series whose b-values and gradients exist only in vendor-private elements.

Neither Siemens nor GE writes the standard DiffusionBValue on these images:
Siemens keeps it in its MR header and the binary CSA header, GE in
``GEMS_PARM_01`` offset by 10⁹.  A pipeline that strips or mangles private
blocks silently loses the diffusion encoding, which these samples make
visible to tests and to dcm2niix.
"""

from __future__ import annotations

from datetime import timedelta

from pydicom.dataset import Dataset

from pipeline.samples.classic_mr import add_siemens_private, mr_instance
from pipeline.samples.exams import BRAIN, DIFFUSION, GE, SIEMENS, slice_geometry
from pipeline.samples.headers import add_acme_block, add_private, format_ds, new_series, sample_uid
from pipeline.samples.phantom import diffusion_frame, head_phantom
from pipeline.samples.subjects import Subject

__all__ = ["diffusion_series"]


_DIRECTIONS = (
    (1.0, 0.0, 0.0),
    (0.0, 1.0, 0.0),
    (0.0, 0.0, 1.0),
    (0.70710678, 0.70710678, 0.0),
    (0.70710678, 0.0, 0.70710678),
    (0.0, 0.70710678, 0.70710678),
)


def _ge_private(ds: Dataset, bvalue: int, direction: tuple[float, float, float]) -> None:
    """GE keeps b-value and gradient in its own blocks, the b-value offset by 10⁹."""
    add_private(
        ds,
        0x0009,
        "GEMS_IDEN_01",
        [(0x01, "LO", "GE_GENESIS_FF"), (0x02, "SH", "MRS1"), (0x04, "SH", "SIGNA")],
    )
    add_private(
        ds,
        0x0019,
        "GEMS_ACQU_01",
        [
            (0x9C, "LO", "epi2"),
            (0xBB, "DS", format_ds(direction[0])),
            (0xBC, "DS", format_ds(direction[1])),
            (0xBD, "DS", format_ds(direction[2])),
            (0xE0, "DS", "3"),
        ],
    )
    add_private(
        ds, 0x0043, "GEMS_PARM_01", [(0x39, "IS", [str(bvalue + 1_000_000_000), "8", "0", "0"])]
    )


def diffusion_series(
    subject: Subject,
    *,
    bvalues: tuple[int, ...] = (0, 1000, 1000, 1000),
    vendor: str = "SIEMENS",
    rows: int = 32,
    cols: int = 32,
    seed: int = 0,
    study_uid: str | None = None,
) -> list[Dataset]:
    """A single-slice diffusion series whose b-values live only in private elements.

    Parameters
    ----------
    subject : Subject
        Whose PHI to plant.
    bvalues : tuple of int, optional
        One image per entry, all at the same position; non-zero b-values
        cycle through x, y, z and oblique gradient directions.
    vendor : {"SIEMENS", "GE"}, optional
        ``"SIEMENS"``: ``(0019,"SIEMENS MR HEADER",0C/0D/0E)`` plus a binary
        CSA image header with ``B_value`` and ``DiffusionGradientDirection``.
        ``"GE"``: ``(0043,"GEMS_PARM_01",39)`` = [b + 10⁹, 8, 0, 0] and
        ``(0019,"GEMS_ACQU_01",BB/BC/BD)``.  Neither writes the standard
        DiffusionBValue, so a converter must read the private elements.
    rows, cols, seed, study_uid
        As for :func:`mr_series`.

    Returns
    -------
    list of pydicom.Dataset
        One instance per b-value, each its own acquisition number.
    """
    vendor = vendor.upper()
    if vendor not in ("SIEMENS", "GE"):
        raise ValueError(f"vendor must be 'SIEMENS' or 'GE', not {vendor!r}")
    series_number = 10
    # Diffusion is a neuro sequence: head first supine, axial brain, whatever the study.
    region = BRAIN
    series = new_series(
        subject,
        seed=seed,
        study_uid=study_uid,
        series_number=series_number,
        description=f"ep2d_diff_{len(bvalues)}dir" if vendor == "SIEMENS" else "DTI ASSET",
        protocol=DIFFUSION,
        vendor=SIEMENS if vendor == "SIEMENS" else GE,
        kind=f"diffusion-{vendor}",
        region=region,
    )
    spacing, positions, locations, step = slice_geometry(DIFFUSION, region, rows, cols, 1)
    uids = [sample_uid("image", series.series_uid, k) for k in range(len(bvalues))]
    phantom = head_phantom(rows, cols, seed * 1000 + series_number)
    instances = []
    n_directions = 0
    for k, bvalue in enumerate(bvalues):
        direction: tuple[float, float, float] | None = None
        if bvalue > 0:
            direction = _DIRECTIONS[n_directions % len(_DIRECTIONS)]
            n_directions += 1
        # One volume per TR, so converters that estimate TR from times agree with the header.
        acquired = series.start + timedelta(milliseconds=30_000 + DIFFUSION.repetition_time * k)
        if vendor == "SIEMENS":
            image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE", "ND")
            sequence_name = f"*ep_b{bvalue}#{n_directions}" if direction else f"*ep_b{bvalue}"
        else:
            image_type = ("ORIGINAL", "PRIMARY", "OTHER")
            sequence_name = "epi2"
        ds = mr_instance(
            series,
            index=k,
            sop_uid=uids[k],
            referenced_uid=uids[0] if k else uids[-1],
            position=positions[0],
            location=locations[0],
            spacing=spacing,
            step=step,
            rows=rows,
            cols=cols,
            pixels=diffusion_frame(phantom, bvalue, direction or (0.0, 0.0, 0.0)),
            acquisition_number=k + 1,
            acquired=acquired,
            image_type=image_type,
            sequence_name=sequence_name,
        )
        if vendor == "SIEMENS":
            add_siemens_private(ds, series, bvalue=bvalue, direction=direction)
        else:
            _ge_private(ds, bvalue, direction or (0.0, 0.0, 0.0))
        add_acme_block(ds, subject)
        instances.append(ds)
    return instances
