"""One frame of a DICOM file as a PNG, windowed the way a person reads it.

The review page shows the original and the cleaned file side by side, frame
by frame, so this decodes one frame at a time: pydicom reads only that
frame's bytes from the file (native or encapsulated, any transfer syntax a
decoder is installed for: pylibjpeg's JPEG, RLE, deflate), and a long cine
is never held whole.

Display: the modality rescale (RescaleSlope/Intercept) first, then a window
(the caller's, else the file's WindowCenter/WindowWidth, per frame for
enhanced objects, else the 1st to 99th percentile of the frame), to 8 bits;
MONOCHROME1 inverted (low values white); YBR converted to RGB by pydicom;
PALETTE COLOR through its palette; 16-bit colour stretched to 8 bits.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import pixel_array

from pipeline.read.content import file_sha256
from pipeline.read.dicom import quiet_pydicom
from pipeline.read.image_pixel import number_of_frames
from pipeline.review.item import ReviewError

__all__ = ["Window", "frame_window", "render_frame"]

#: A display window as DICOM writes it: (centre, width), in rescaled units.
Window = tuple[float, float]
_PERCENTILES = (1.0, 99.0)


def render_frame(path: Path, frame: int, *, window: Window | None = None, key: str = "") -> bytes:
    """Frame ``frame`` (0-based) of the DICOM file at ``path`` as PNG bytes.

    Parameters
    ----------
    path : Path
        The original or the staged output (PHI: never put it in a message).
    frame : int
        Which frame.
    window : (centre, width), optional
        In rescaled units (Hounsfield for CT), as WindowCenter/WindowWidth;
        default: the file's, else robust percentiles of the frame.
    key : str, optional
        The item's short sha for errors (default: the file's own, computed
        only when there is an error to report).

    Raises
    ------
    ReviewError
        The file cannot be read or decoded, has no such frame, or an
        unusable window; the message names the item by its short sha only.
    """
    quiet_pydicom()
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:
        raise ReviewError(
            f"input {_key(path, key)}: cannot be read as DICOM ({type(exc).__name__}); "
            "it cannot be shown"
        ) from None
    if window is not None and not (np.isfinite(window).all() and window[1] > 0):
        raise ReviewError(
            f"input {_key(path, key)}: the window needs a finite centre and a width above 0"
        )
    count = number_of_frames(header)
    if not 0 <= frame < count:
        raise ReviewError(
            f"input {_key(path, key)}: there is no frame {frame} (frames 0 to {count - 1})"
            if count
            else f"input {_key(path, key)}: has no image to show"
        )
    try:
        pixels = pixel_array(path, index=frame if count > 1 else None)
        shown = _displayed(header, pixels, frame, window)
        buffer = io.BytesIO()
        Image.fromarray(shown).save(buffer, format="PNG", compress_level=3)
    except Exception as exc:
        # Decoders raise many types, and their messages may quote header values.
        raise ReviewError(
            f"input {_key(path, key)}: frame {frame} cannot be decoded ({type(exc).__name__}); "
            "the file may be corrupt or in a transfer syntax no installed decoder supports"
        ) from None
    return buffer.getvalue()


def frame_window(header: Dataset, frame: int) -> Window | None:
    """The file's display window for ``frame`` as (centre, width), or None.

    WindowCenter/WindowWidth at the top level, else in the frame's (or the
    shared) FrameVOILUTSequence of an enhanced object.
    """
    for source in (header, *_functional(header, frame, "FrameVOILUTSequence")):
        centre, width = _first(source.get("WindowCenter")), _first(source.get("WindowWidth"))
        try:
            found = (float(centre), float(width))
        except (TypeError, ValueError):
            continue
        if np.isfinite(found).all() and found[1] > 0:
            return found
    return None


def _displayed(
    header: Dataset, pixels: npt.NDArray[Any], frame: int, window: Window | None
) -> npt.NDArray[np.uint8]:
    photometric = str(header.get("PhotometricInterpretation", "")).strip().upper()
    if photometric == "PALETTE COLOR" and pixels.ndim == 2:
        pixels = apply_color_lut(pixels, header)
    if pixels.ndim == 3:  # colour: RGB (pydicom converts YBR)
        if pixels.dtype == np.uint8:
            return np.ascontiguousarray(pixels)
        low, high = _robust(pixels.astype(np.float32))
        return _linear(pixels.astype(np.float32), low, high)
    values = _rescaled(header, frame, pixels.astype(np.float32))
    chosen = window or frame_window(header, frame)
    if chosen is not None:
        centre, width = chosen
        # PS3.3 C.11.2.1.2.1: the linear VOI function.
        low, high = centre - 0.5 - (width - 1) / 2, centre - 0.5 + (width - 1) / 2
    else:
        low, high = _robust(values)
    shown = _linear(values, low, high)
    if photometric == "MONOCHROME1":
        inverted: npt.NDArray[np.uint8] = (255 - shown).astype(np.uint8)
        return inverted
    return shown


def _rescaled(header: Dataset, frame: int, values: npt.NDArray[np.float32]) -> Any:
    for source in (header, *_functional(header, frame, "PixelValueTransformationSequence")):
        slope, intercept = source.get("RescaleSlope"), source.get("RescaleIntercept")
        if slope is None and intercept is None:
            continue
        try:
            factor = float(_first(slope) if slope is not None else 1) or 1.0
            offset = float(_first(intercept) if intercept is not None else 0)
        except (TypeError, ValueError):
            continue
        return values * np.float32(factor) + np.float32(offset)
    return values


def _robust(values: npt.NDArray[np.float32]) -> tuple[float, float]:
    if values.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(values, _PERCENTILES))
    if high <= low:
        low, high = float(values.min()), float(values.max())
    return low, high


def _linear(values: npt.NDArray[np.float32], low: float, high: float) -> npt.NDArray[np.uint8]:
    if high <= low:
        step: npt.NDArray[np.uint8] = np.where(values > low, 255, 0).astype(np.uint8)
        return step
    scaled = (values - np.float32(low)) * np.float32(255.0 / (high - low))
    out: npt.NDArray[np.uint8] = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return out


def _functional(header: Dataset, frame: int, keyword: str) -> list[Dataset]:
    """The ``keyword`` items for ``frame``: per-frame first, then shared."""
    found = []
    for groups in (
        header.get("PerFrameFunctionalGroupsSequence"),
        header.get("SharedFunctionalGroupsSequence"),
    ):
        if not groups:
            continue
        item = groups[frame] if len(groups) > 1 and frame < len(groups) else groups[0]
        sequence = item.get(keyword)
        if sequence:
            found.append(sequence[0])
    return found


def _first(value: object) -> Any:
    if isinstance(value, list | tuple | MultiValue):
        return value[0] if len(value) else None
    return value


def _key(path: Path, key: str) -> str:
    if key:
        return key
    try:
        return file_sha256(path)[:12]
    except OSError:
        return "(unreadable file)"
