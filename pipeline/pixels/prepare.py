"""Make a decoded image readable for OCR: 8-bit, text brought out, dark on light.

OCR engines are trained on dark print on white paper at 20-40 px per line.
Medical images are the opposite: 12 or 16 bits, mostly dark, with small
bright text in a corner or over anatomy.  The steps, in order:

1. **Display** (:func:`display`): window to 8 bits with the header's
   WindowCenter/Width (the window the text was drawn to be read in), else
   by percentiles; MONOCHROME1 inverted; colour reduced to one channel that
   keeps coloured text bright.
2. **Polarity**: if the background (the image's edge) is bright, as in a
   screenshot of a report, invert, so text is bright on dark from here on.
3. **White top-hat** (:func:`white_top_hat`): the image minus its grey
   opening, of the windowed image and (for more than 8 bits) of the full
   stored range, whichever responds more: a window that saturates bright
   anatomy also hides text burned at the top value over it.  Strokes thinner than the structuring element survive; anatomy,
   gradients and shading boxes (wider than any stroke) are removed, so thin
   text over anatomy stands out.
4. **Contrast stretch**: the strongest responses to white, with a floor on
   the range so that noise is not blown up into speckle that an engine would
   read as letters.

The result of 1-4 is :func:`text_map` (bright text on dark, the input of
:mod:`.prefilter`); :func:`prepare` inverts it (dark on light);
:func:`enlarge` upscales small images and pads them, and maps boxes back.

Dark text over bright anatomy is removed by the white top-hat (what is
left is the bright anatomy between its letters); :func:`dark_text_map` is
the map of the other polarity, counted only where the surround is bright,
and the scan runs the pre-filter on both.  Text at the very value of the
anatomy under it (white on saturated white) is in neither: there is nothing
to see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter

from pipeline.pixels.frames import ImageKind, SourceImage

__all__ = [
    "Enlarged",
    "bright_surround",
    "dark_text_map",
    "display",
    "enlarge",
    "prepare",
    "text_map",
    "top_hat_size",
    "white_top_hat",
]

Grey = npt.NDArray[np.uint8]

# The structuring element must be wider than the thickest stroke to keep: 15 px
# keeps strokes up to 14 px (text up to ~70 px high) at typical image sizes.
TOP_HAT_SIZE = 15
# Below this response range (of 255) the stretch stops adding gain: a plain
# slice's noise stays faint instead of becoming letter-like speckle.
MIN_STRETCH_RANGE = 96.0
# Dark strokes count only on a surround at least this bright (of 255).
DARK_TEXT_BACKGROUND = 96


def display(image: SourceImage) -> Grey:
    """The image as a person would see it, in 8 bits, one channel.

    Parameters
    ----------
    image : SourceImage
        A decoded frame, overlay plane or icon.

    Returns
    -------
    numpy.ndarray of uint8
        Overlays as 0/255.  Grey images through the header window when there
        is one (text is drawn to be legible in it), else linear from the 0.5th
        to the 99.5th percentile (small bright text saturates, which is what
        OCR wants); 8-bit images as stored.  MONOCHROME1 inverted.  Colour
        images reduced to the channel maximum on a dark background (yellow
        or blue text stays bright) and the channel minimum on a bright one.
    """
    pixels = image.pixels
    if image.kind is ImageKind.OVERLAY:
        return np.where(pixels > 0, 255, 0).astype(np.uint8)
    if image.is_colour:
        values = pixels.astype(np.float32)
        luminance = values @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        bright = _background(luminance) > _midpoint(luminance)
        grey = values.min(axis=2) if bright else values.max(axis=2)
        if pixels.dtype.itemsize > 1:
            return _linear(grey, *_percentiles(grey))
        eight: Grey = grey.astype(np.uint8)
        return eight
    values = pixels.astype(np.float32)
    if image.window is not None:
        out = _linear(values, *image.window)
    elif pixels.dtype.itemsize == 1:
        out = values.astype(np.uint8) if _extent(values)[1] > 1 else _linear(values, 0, 1)
    else:
        out = _linear(values, *_percentiles(values))
    return (255 - out).astype(np.uint8) if image.monochrome1 else out


def text_views(image: SourceImage) -> list[Grey]:
    """The 8-bit views both text maps work on, text-polarity normalised.

    The header window, and for more than 8 bits also the full stored range:
    the window saturates bright anatomy, and text burned at the top value
    over it with it; over the full range the two still differ.  A view with
    a bright page (judged by its edge) is inverted, per view: anatomy that
    fills the window can still leave the full range dark.  The scan computes
    these once per image for :func:`text_map` and :func:`dark_text_map`.
    """
    views = [display(image)]
    if not image.is_colour and image.pixels.dtype.itemsize > 1:
        values = image.pixels.astype(np.float32)
        full = _linear(values, *_extent(values))
        views.append((255 - full).astype(np.uint8) if image.monochrome1 else full)
    return [255 - view if _background(view) > 127.0 else view for view in views]


def text_map(
    image: SourceImage, *, size: int | None = None, views: list[Grey] | None = None
) -> Grey:
    """Bright text on a dark background, anatomy and shading removed.

    Parameters
    ----------
    image : SourceImage
        A decoded image.
    size : int, optional
        Top-hat structuring element (odd, pixels); by default
        :func:`top_hat_size`.

    Returns
    -------
    numpy.ndarray of uint8
        Same shape as the image.  Overlays are returned as drawn.
    """
    if image.kind is ImageKind.OVERLAY:
        return display(image)
    if views is None:
        views = text_views(image)
    if size is None:
        size = top_hat_size(views[0].shape)
    response = np.maximum.reduce([white_top_hat(view, size) for view in views]).astype(np.float32)
    return _stretch(response)


def dark_text_map(
    image: SourceImage, *, size: int | None = None, views: list[Grey] | None = None
) -> Grey:
    """Dark text over bright anatomy, brought out as bright strokes on dark.

    :func:`text_map` looks for strokes brighter than their surround; text
    drawn darker than the anatomy under it (a grey annotation over a bright
    organ, or text at a mid value over anatomy brighter still) shows there
    as the bright gaps between its letters, which no letter test accepts.
    This map is the other polarity: how much darker than their closing
    (:func:`white_top_hat` of the inverted view) thin strokes are, counted
    only where the wide surround is bright (:func:`bright_surround`), so
    the dark gaps between bright letters on a dark background do not count.
    The scan runs the pre-filter on both maps and reads the regions of each.

    Returns
    -------
    numpy.ndarray of uint8
        Same shape as the image; all zero for overlays and where nothing is
        bright enough to carry dark text.
    """
    if image.kind is ImageKind.OVERLAY:
        return np.zeros(image.pixels.shape[:2], dtype=np.uint8)
    if views is None:
        views = text_views(image)
    if size is None:
        size = top_hat_size(views[0].shape)
    hats = []
    for view in views:
        surround = bright_surround(view, size)
        hat = white_top_hat((255 - view).astype(np.uint8), size)
        # Stretched per view: faint dark text in the full range is not to be
        # outshone by strong responses in the window (gaps between bright
        # letters where they touch saturated anatomy).
        hats.append(_stretch(np.where(surround, hat, 0).astype(np.float32)))
    combined: Grey = np.maximum.reduce(hats)
    return combined


def bright_surround(
    view: Grey, size: int, *, level: int = DARK_TEXT_BACKGROUND
) -> npt.NDArray[np.bool_]:
    """Where the median around a pixel (about three structuring elements across) is >= ``level``.

    A median, not a mean or a closing: a block of bright letters on a dark
    background covers less than half of its area, so its median stays dark,
    while dark letters over a bright organ leave the organ's median bright.
    Computed as the median of 3 x 3 neighbouring blocks' medians, blocks
    ``size`` pixels wide (about 1 ms for 256 x 256).
    """
    height, width = view.shape
    if view.size == 0:
        return np.zeros(view.shape, dtype=bool)
    block = max(2, size)
    rows, cols = -(-height // block), -(-width // block)
    padded = np.pad(view, ((0, rows * block - height), (0, cols * block - width)), mode="edge")
    medians = np.median(padded.reshape(rows, block, cols, block), axis=(1, 3))
    around = np.pad(medians, 1, mode="edge")
    neighbours = [around[i : i + rows, j : j + cols] for i in range(3) for j in range(3)]
    bright = np.median(np.stack(neighbours), axis=0) >= level
    full = np.repeat(np.repeat(bright, block, axis=0), block, axis=1)
    out: npt.NDArray[np.bool_] = full[:height, :width]
    return out


def _stretch(response: npt.NDArray[np.float32]) -> Grey:
    """The strongest responses to white, with a floor on the range (see the module)."""
    top = float(np.percentile(response, 99.9)) if response.size else 0.0
    top = max(top, float(response.max(initial=0)) * 0.5, MIN_STRETCH_RANGE)
    stretched: Grey = np.clip(response * (255.0 / top), 0, 255).astype(np.uint8)
    return stretched


def top_hat_size(shape: tuple[int, ...]) -> int:
    """The structuring element for an image of ``shape``: odd, wider than its text's strokes.

    Text scales with the image (a 64 px icon cannot hold 20 px letters), and
    so must the element: one too wide for a small image keeps its anatomy.
    """
    longest = max(shape[:2]) if shape else 0
    if longest >= 1024:
        return (longest // 64) | 1
    return min(TOP_HAT_SIZE, max(5, (longest // 16) | 1))


def prepare(image: SourceImage, *, size: int | None = None) -> Grey:
    """The OCR input at the image's own size: dark text on white."""
    return (255 - text_map(image, size=size)).astype(np.uint8)


def white_top_hat(image: Grey, size: int) -> Grey:
    """``image`` minus its grey opening by a ``size`` × ``size`` square.

    A square opening is separable (rows, then columns) and each running
    minimum or maximum is built from windows doubling in length, so the cost
    grows with log(size), not size²: about 10 ms for 512 × 512.
    """
    size = max(1, int(size) | 1)
    eroded = _running(_running(image, size, 0, np.minimum, 255), size, 1, np.minimum, 255)
    opened = _running(_running(eroded, size, 0, np.maximum, 0), size, 1, np.maximum, 0)
    result: Grey = (image.astype(np.int16) - opened).clip(0, 255).astype(np.uint8)
    return result


def _running(image: npt.NDArray[Any], size: int, axis: int, op: Any, fill: int) -> npt.NDArray[Any]:
    """Centred running ``op`` (minimum or maximum) of length ``size`` along ``axis``.

    The border is padded with ``fill``, the neutral value of ``op``, so edges
    behave as if the image continued with nothing there.
    """
    if size <= 1 or image.shape[axis] == 0:
        return image
    half = size // 2
    pad = [(0, 0)] * image.ndim
    pad[axis] = (half, half)
    padded = np.pad(image, pad, constant_values=fill)
    n = image.shape[axis]

    def part(array: npt.NDArray[Any], start: int, stop: int) -> npt.NDArray[Any]:
        index = [slice(None)] * array.ndim
        index[axis] = slice(start, stop)
        return array[tuple(index)]

    span = 1
    acc = padded
    while span * 2 <= size:
        length = acc.shape[axis]
        acc = op(part(acc, 0, length - span), part(acc, span, length))
        span *= 2
    # acc[i] covers padded[i : i + span]; two overlapping spans cover the window.
    first = part(acc, 0, n)
    second = part(acc, size - span, size - span + n)
    return op(first, second)  # type: ignore[no-any-return]


def _background(shown: npt.NDArray[Any]) -> float:
    """The grey level around the image's edge: air for a scan, paper for a report.

    The whole image's median would be anatomy when it fills the field of
    view, and saturated anatomy would then be taken for a bright page.
    """
    height, width = shown.shape
    band = max(1, min(height, width) // 16)
    edge = np.concatenate(
        [
            shown[:band].ravel(),
            shown[-band:].ravel(),
            shown[:, :band].ravel(),
            shown[:, -band:].ravel(),
        ]
    )
    return float(np.median(edge))


def _extent(values: npt.NDArray[Any]) -> tuple[float, float]:
    """(minimum, maximum), or (0, 0) for an empty array."""
    if values.size == 0:
        return (0.0, 0.0)
    return (float(values.min()), float(values.max()))


def _midpoint(values: npt.NDArray[np.float32]) -> float:
    low, high = _extent(values)
    return (low + high) / 2.0


def _percentiles(values: npt.NDArray[np.float32]) -> tuple[float, float]:
    low, high = (float(v) for v in np.percentile(values, (0.5, 99.5)))
    if high <= low:
        low, high = _extent(values)
    return low, high


def _linear(values: npt.NDArray[np.float32], low: float, high: float) -> Grey:
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - np.float32(low)) * np.float32(255.0 / (high - low))
    result: Grey = np.clip(scaled, 0, 255).astype(np.uint8)
    return result


# ---------------------------------------------------------------------------
# Size for the OCR engine
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Enlarged:
    """An OCR input scaled by ``scale`` and padded by ``margin`` white pixels on each side."""

    pixels: Grey
    scale: int
    margin: int
    height: int  # of the original image
    width: int

    def to_original(
        self, left: int, top: int, width: int, height: int
    ) -> tuple[int, int, int, int]:
        """Map a box in :attr:`pixels` back to the original image, clipped to it.

        Returns
        -------
        tuple of int
            ``(x, y, w, h)``; the box grows outward to whole pixels, so it
            always covers what the engine saw.
        """
        x0 = max(0, (left - self.margin) // self.scale)
        y0 = max(0, (top - self.margin) // self.scale)
        x1 = min(self.width, -(-(left + width - self.margin) // self.scale))
        y1 = min(self.height, -(-(top + height - self.margin) // self.scale))
        return (x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def enlarge(prepared: Grey, *, scale: int = 2, margin: int = 16, blur: float = 1.0) -> Enlarged:
    """Upscale an OCR input by ``scale`` and pad it with white.

    Scanner overlays use bitmap fonts 7-9 px high; tesseract reads text best
    at 20-40 px and misses single-pixel strokes.  Enlarging replicates
    pixels, then blurs slightly: the letters keep their shape and gain the
    grey edges the engine was trained on.  The white margin keeps text that
    touches the image border from being cut by the engine's page
    segmentation.
    """
    height, width = prepared.shape
    scale = max(1, int(scale))
    picture = Image.fromarray(prepared)
    if scale > 1:
        picture = picture.resize((width * scale, height * scale), Image.Resampling.NEAREST)
        if blur > 0:
            picture = picture.filter(ImageFilter.GaussianBlur(blur * scale / 2))
    canvas = np.full((height * scale + 2 * margin, width * scale + 2 * margin), 255, dtype=np.uint8)
    canvas[margin : margin + height * scale, margin : margin + width * scale] = np.asarray(picture)
    return Enlarged(canvas, scale, margin, height, width)
