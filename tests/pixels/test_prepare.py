"""Preparing images for OCR: the top-hat, polarity, the two windows, enlarging and mapping back."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.pixels.frames import ImageKind, SourceImage
from pipeline.pixels.prepare import display, enlarge, prepare, text_map, white_top_hat

from .images import text_mask


def _brute_top_hat(image: np.ndarray, size: int) -> np.ndarray:
    half = size // 2
    rows, cols = image.shape
    eroded = np.empty_like(image)
    for r in range(rows):
        for c in range(cols):
            eroded[r, c] = image[
                max(0, r - half) : r + half + 1, max(0, c - half) : c + half + 1
            ].min()
    opened = np.empty_like(image)
    for r in range(rows):
        for c in range(cols):
            opened[r, c] = eroded[
                max(0, r - half) : r + half + 1, max(0, c - half) : c + half + 1
            ].max()
    return image - opened


@pytest.mark.parametrize("size", [1, 3, 5, 9, 15])
def test_top_hat_matches_the_definition(size: int) -> None:
    image = np.random.default_rng(size).integers(0, 256, (23, 31)).astype(np.uint8)
    assert np.array_equal(white_top_hat(image, size), _brute_top_hat(image, size))


def _grey(pixels: np.ndarray, window: tuple[float, float] | None = None) -> SourceImage:
    return SourceImage(ImageKind.FRAME, pixels, window=window)


def test_text_stays_and_anatomy_goes() -> None:
    """Thin bright strokes survive the top-hat; a large bright blob (anatomy) does not."""
    y, x = np.mgrid[0:200, 0:200]
    pixels = np.where((y - 120) ** 2 + (x - 100) ** 2 < 60**2, 1500, 40).astype(np.uint16)
    text = text_mask(pixels.shape, "ID 4711", x=8, y=6, height=12) > 0.5
    pixels[text] = 3000
    mapped = text_map(_grey(pixels))
    assert mapped[text].mean() > 200
    disc = (y - 120) ** 2 + (x - 100) ** 2 < 50**2
    assert mapped[disc].mean() < 5


def test_text_over_saturated_anatomy_is_kept() -> None:
    """A window that saturates anatomy also hides text burned at the top value over it."""
    pixels = np.full((120, 160), 2600, dtype=np.uint16)
    text = text_mask(pixels.shape, "DOE", x=40, y=50, height=14) > 0.5
    pixels[text] = 4095
    assert display(_grey(pixels, window=(-100.0, 2300.0)))[text].min() == 255  # invisible
    assert text_map(_grey(pixels, window=(-100.0, 2300.0)))[text].mean() > 150


def test_bright_page_is_inverted_so_text_ends_dark_on_light() -> None:
    page = np.full((100, 300), 250, dtype=np.uint8)
    text = text_mask(page.shape, "Report for DOE", x=10, y=40, height=14) > 0.5
    page[text] = 10
    prepared = prepare(_grey(page))
    assert prepared[text].mean() < 60
    assert np.median(prepared) == 255


def test_coloured_text_on_black_stays_bright() -> None:
    rgb = np.zeros((60, 200, 3), dtype=np.uint8)
    text = text_mask(rgb.shape[:2], "SMITH", x=5, y=20, height=14) > 0.5
    rgb[text] = (30, 60, 255)  # blue: dark by luminance
    shown = display(SourceImage(ImageKind.FRAME, rgb))
    assert shown[text].min() > 200


def test_overlay_is_shown_as_drawn() -> None:
    plane = np.zeros((10, 10), dtype=np.uint8)
    plane[2:4, 3:8] = 1
    assert set(np.unique(text_map(SourceImage(ImageKind.OVERLAY, plane)))) == {0, 255}


def test_enlarged_boxes_map_back_to_original_pixels() -> None:
    prepared = np.full((50, 80), 255, dtype=np.uint8)
    enlarged = enlarge(prepared, scale=2, margin=16)
    assert enlarged.pixels.shape == (50 * 2 + 32, 80 * 2 + 32)
    # Original box (10, 20, 30, 8) -> enlarged (36, 56, 60, 16).
    assert enlarged.to_original(36, 56, 60, 16) == (10, 20, 30, 8)
    # A box in the margin is clipped to the image.
    assert enlarged.to_original(0, 0, 10, 10) == (0, 0, 0, 0)
