"""Text drawn into pixel data the way scanners and frame grabbers burn it in.

Used by the pixel-scan tests and by ``bench/ocr.py`` to make labelled images.
"""

from __future__ import annotations

import copy
import io
import unicodedata
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset

_UNDECOMPOSABLE = str.maketrans({"Ø": "O", "ø": "o", "Æ": "AE", "æ": "ae", "ß": "ss"})


def printed_name(patient_name: str) -> str:
    """``"SØRENSEN^Zoë^A"`` -> ``"SORENSEN ZOE A"``: a PN as a scanner overlay prints it."""
    decomposed = unicodedata.normalize("NFKD", patient_name.translate(_UNDECOMPOSABLE))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(part for part in plain.upper().split("^") if part)


def font_face(
    height: int, font: Path | None = None
) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A face whose capitals are about ``height`` px high.

    By default Pillow's built-in font (Pillow >= 10.1), which needs no system
    fonts; ``font`` names a TrueType file instead.
    """
    size = max(6, round(height * 1.35))
    return ImageFont.truetype(str(font), size) if font else ImageFont.load_default(size=size)


def text_size(text: str, height: int, font: Path | None = None) -> tuple[int, int]:
    """Width and height in pixels that ``text`` takes at ``height``."""
    _left, _top, right, bottom = font_face(height, font).getbbox(text)
    return int(right), int(bottom)


def text_mask(
    shape: tuple[int, ...], text: str, *, x: int, y: int, height: int, font: Path | None = None
) -> npt.NDArray[np.float64]:
    """Anti-aliased coverage (0-1) of ``text`` drawn at ``(x, y)``."""
    mask = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(mask).text((x, y), text, fill=255, font=font_face(height, font))
    return np.asarray(mask, dtype=np.float64) / 255.0


def burn(
    pixels: npt.NDArray[np.generic],
    text: str,
    *,
    x: int,
    y: int,
    height: int,
    value: float,
    font: Path | None = None,
) -> npt.NDArray[np.generic]:
    """``pixels`` with ``text`` blended in at stored value ``value`` (any integer dtype)."""
    alpha = text_mask(pixels.shape[:2], text, x=x, y=y, height=height, font=font)
    return blend(pixels, alpha, value)


def blend(
    pixels: npt.NDArray[np.generic], alpha: npt.NDArray[np.float64], value: float
) -> npt.NDArray[np.generic]:
    """``pixels`` with ``value`` blended in by the coverage ``alpha`` (0-1)."""
    if pixels.ndim == 3:
        alpha = alpha[..., None]
    blended = pixels.astype(np.float64) * (1.0 - alpha) + value * alpha
    return np.round(blended).astype(pixels.dtype)


def with_pixels(ds: Dataset, pixels: npt.NDArray[np.generic]) -> Dataset:
    """A copy of ``ds`` whose native pixel data is ``pixels``."""
    out = copy.deepcopy(ds)
    out.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
    return out


def as_jpeg_baseline(ds: Dataset, quality: int = 90) -> Dataset:
    """A copy of ``ds`` (8-bit RGB frames) as a JPEG Baseline ultrasound stores it.

    Each frame is encoded by Pillow (4:2:0 subsampling, YBR_FULL_422): the
    codec's blocks that a moving image touches change the static pixels
    beside it too, which a cine's scan must tell from text that moved.
    """
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    pixels = ds.pixel_array
    frames = pixels.reshape(int(ds.get("NumberOfFrames", 1) or 1), *pixels.shape[-3:])
    encoded = []
    for frame in frames:
        out = io.BytesIO()
        Image.fromarray(frame).save(out, format="JPEG", quality=quality)
        encoded.append(out.getvalue())
    out_ds = copy.deepcopy(ds)
    out_ds.PixelData = encapsulate(encoded)
    out_ds["PixelData"].VR = "OB"
    out_ds["PixelData"].is_undefined_length = True
    out_ds.PhotometricInterpretation = "YBR_FULL_422"
    out_ds.LossyImageCompression = "01"
    out_ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    return out_ds
