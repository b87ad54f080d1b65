"""Carry research values out of vendor private elements before those go.

Some scanners keep diffusion parameters only in private elements, which the
profile removes.  Where the standard has an attribute for the value, it is
copied there first, so the release keeps what a diffusion study needs:

* Siemens: ``(0019,"SIEMENS MR HEADER",0C/0E)`` or, failing that, the
  ``B_value`` and ``DiffusionGradientDirection`` of the CSA image header
  ``(0029,"SIEMENS CSA HEADER",10)``;
* GE: ``(0043,"GEMS_PARM_01",39)`` (the b-value, often offset by 10**9) and
  ``(0019,"GEMS_ACQU_01",BB/BC/BD)`` (the gradient direction).
"""

from __future__ import annotations

import math
import struct
import warnings

from pydicom.dataset import Dataset

from pipeline.dicom.engine import private_creators
from pipeline.read.peek import peek

DIFFUSION_B_VALUE = 0x00189087
DIFFUSION_GRADIENT_ORIENTATION = 0x00189089
DIFFUSION_DIRECTIONALITY = 0x00189075
_VENDOR_GROUPS = frozenset({0x0019, 0x0029, 0x0043})


def _private_value(
    ds: Dataset, creators: dict[int, str], group: int, creator: str, offset: int
) -> object | None:
    """The value of ``(group,"creator",offset)``, or None."""
    for key, name in creators.items():
        if key >> 8 == group and name == creator:
            element = (group << 16) | ((key & 0xFF) << 8) | offset
            found = peek(ds, element)  # not decoded in place: a kept element stays as read
            return None if found is None else found.value
    return None


def _floats(value: object) -> list[float]:
    if value is None:
        return []
    if isinstance(value, bytes):
        return []
    if isinstance(value, str | int | float):
        value = [value]
    out: list[float] = []
    try:
        for item in value:  # type: ignore[attr-defined]
            out.append(float(item))
    except (TypeError, ValueError):
        return []
    return [v for v in out if math.isfinite(v)]


def _siemens(ds: Dataset, creators: dict[int, str]) -> tuple[float | None, list[float]]:
    bvals = _floats(_private_value(ds, creators, 0x0019, "SIEMENS MR HEADER", 0x0C))
    direction = _floats(_private_value(ds, creators, 0x0019, "SIEMENS MR HEADER", 0x0E))
    if bvals:
        return bvals[0], direction
    data = _private_value(ds, creators, 0x0029, "SIEMENS CSA HEADER", 0x10)
    if not isinstance(data, bytes) or not _csa_has_items(data, b"B_value"):
        return None, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel warns about its experimental DICOM readers
        from nibabel.nicom import csareader  # imported on first use: most files never need it
    try:
        tags = csareader.read(data)["tags"]  # type: ignore[no-untyped-call]
    except Exception:
        return None, []
    bvals = _floats(tags.get("B_value", {}).get("items"))
    direction = _floats(tags.get("DiffusionGradientDirection", {}).get("items"))
    return (bvals[0] if bvals else None), direction


def _csa_has_items(data: bytes, name: bytes) -> bool:
    """Whether a CSA2 (SV10) header holds ``name`` with at least one non-empty item.

    Most images are not diffusion-weighted; this look at the raw bytes spares
    them a full parse.  Layout after the 64-byte name: vm, vr[4], syngodt,
    nitems, xx (int32 each), then per item four int32 (the second is the
    length) and the data.
    """
    start = data.find(name + b"\0")
    if not data.startswith(b"SV10") or start < 0 or start + 100 > len(data):
        return not data.startswith(b"SV10")  # another CSA version: let nibabel decide
    (nitems,) = struct.unpack_from("<i", data, start + 76)
    if nitems <= 0:
        return False
    (length,) = struct.unpack_from("<i", data, start + 84 + 4)
    return bool(length > 0)


def _ge(ds: Dataset, creators: dict[int, str]) -> tuple[float | None, list[float]]:
    values = _floats(_private_value(ds, creators, 0x0043, "GEMS_PARM_01", 0x39))
    if not values:
        return None, []
    b = values[0]
    while b >= 1e9:  # GE adds 10**9 (sometimes more than once) to flag b-value units
        b -= 1e9
    direction = [
        v
        for off in (0xBB, 0xBC, 0xBD)
        for v in _floats(_private_value(ds, creators, 0x0019, "GEMS_ACQU_01", off))[:1]
    ]
    return b, direction if len(direction) == 3 else []


def carry_diffusion(ds: Dataset) -> list[str]:
    """Copy vendor diffusion values to standard attributes; return what was set."""
    if DIFFUSION_B_VALUE in ds:
        return []
    tags = [int(t) for t in ds.keys() if t >> 16 in _VENDOR_GROUPS]
    if not tags:
        return []
    creators = private_creators(ds, tags)
    b, direction = _siemens(ds, creators)
    if b is None:
        b, direction = _ge(ds, creators)
    if b is None:
        return []
    carried = ["DiffusionBValue"]
    ds.add_new(DIFFUSION_B_VALUE, "FD", float(b))
    if len(direction) == 3 and any(direction) and DIFFUSION_GRADIENT_ORIENTATION not in ds:
        ds.add_new(DIFFUSION_GRADIENT_ORIENTATION, "FD", [float(v) for v in direction])
        carried.append("DiffusionGradientOrientation")
    if DIFFUSION_DIRECTIONALITY not in ds:
        directionality = "NONE" if b == 0 else ("DIRECTIONAL" if len(carried) == 2 else "ISOTROPIC")
        ds.add_new(DIFFUSION_DIRECTIONALITY, "CS", directionality)
        carried.append("DiffusionDirectionality")
    return carried
