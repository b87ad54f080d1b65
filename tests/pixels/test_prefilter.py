"""The pre-filter must never cost recall: burned text passes, plain phantom slices are skipped."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from pipeline.pixels.frames import iter_images
from pipeline.pixels.prefilter import Box, needs_ocr
from pipeline.pixels.prepare import dark_text_map, text_map
from pipeline.samples import make_subjects, mr_series

from .images import burn, text_mask, with_pixels


def _map(ds: Dataset) -> np.ndarray:
    return text_map(next(iter(iter_images(ds, "input 0123456789ab"))))


@pytest.mark.parametrize("size", [64, 128, 256, 512])
def test_plain_phantom_slices_are_skipped(size: int) -> None:
    for index, subject in enumerate(make_subjects(4, seed=size)):
        series = mr_series(subject, n_slices=2, rows=size, cols=size, seed=index,
                           series_number=1 + index % 3)  # fmt: skip
        for ds in series:
            decision = needs_ocr(_map(ds))
            assert not decision.ocr, decision.reason


@pytest.fixture(scope="module")
def slices() -> dict[int, Dataset]:
    subject = make_subjects(2, seed=7)[1]
    return {size: mr_series(subject, n_slices=1, rows=size, cols=size)[0] for size in (256, 512)}


@pytest.mark.parametrize("height", [8, 12, 16, 24])
@pytest.mark.parametrize(
    "value", [600, 1200, 2300, 4095]
)  # faint ... saturated (window -100..2300)
def test_burned_text_passes_and_its_region_is_kept(
    slices: dict[int, Dataset], height: int, value: int
) -> None:
    for size, ds in slices.items():
        text = "MRN48213977" if height < 24 or size == 512 else "MRN482"
        corner_y = size - round(height * 1.6) - 4 if height % 8 == 0 else 3
        pixels = burn(ds.pixel_array, text, x=5, y=corner_y, height=height, value=value)
        decision = needs_ocr(_map(with_pixels(ds, pixels)))
        assert decision.ocr, (size, decision)
        # Every text pixel lies in a region the engine will be shown.
        drawn = text_mask(pixels.shape, text, x=5, y=corner_y, height=height) > 0.5
        shown = np.zeros(drawn.shape, dtype=bool)
        for x, y, w, h in decision.regions or [(0, 0, size, size)]:
            shown[y : y + h, x : x + w] = True
        assert shown[drawn].all(), (size, decision.regions)


def _dark_map(ds: Dataset) -> np.ndarray:
    return dark_text_map(next(iter(iter_images(ds, "input 0123456789ab"))))


@pytest.mark.parametrize("size", [128, 256, 512])
def test_plain_phantom_slices_are_skipped_in_the_dark_map_too(size: int) -> None:
    for index, subject in enumerate(make_subjects(4, seed=size + 1)):
        series = mr_series(subject, n_slices=2, rows=size, cols=size, seed=index,
                           series_number=1 + index % 3)  # fmt: skip
        for ds in series:
            decision = needs_ocr(_dark_map(ds))
            assert not decision.ocr, decision.reason


def _shown(regions: tuple[Box, ...] | None, drawn: np.ndarray) -> float:
    """The share of the text's pixels inside the regions a decision shows the engine."""
    shown = np.zeros(drawn.shape, dtype=bool)
    for rx, ry, w, h in regions or ():
        shown[ry : ry + h, rx : rx + w] = True
    return float(shown[drawn].mean())


@pytest.mark.parametrize("height", [10, 14])
@pytest.mark.parametrize("value", [300, 900])  # darker than the phantom's bright interior
def test_dark_text_over_bright_anatomy_is_found_in_the_dark_map(
    slices: dict[int, Dataset], height: int, value: int
) -> None:
    """A long line of dark text: the dark map finds it (the bright map, seeing the
    bright gaps between the letters, often does too)."""
    for size, ds in slices.items():
        text = "MRN48213977"
        x, y = size // 2 - 50, size // 2 - 10
        pixels = burn(ds.pixel_array, text, x=x, y=y, height=height, value=value)
        decision = needs_ocr(_dark_map(with_pixels(ds, pixels)))
        assert decision.ocr and decision.regions, (size, decision)
        drawn = text_mask(pixels.shape, text, x=x, y=y, height=height) > 0.5
        assert _shown(decision.regions, drawn) > 0.95, (size, decision.regions)


@pytest.mark.parametrize("text", ["12 34", "HFS"])
@pytest.mark.parametrize("height", [10, 14])
@pytest.mark.parametrize("value", [300, 900])
def test_short_dark_text_over_bright_anatomy_is_found_in_the_dark_map_only(
    slices: dict[int, Dataset], text: str, height: int, value: int
) -> None:
    """What the dark map is for: short dark labels the bright map does not see at all."""
    for size, ds in slices.items():
        x, y = size // 2 - 50, size // 2 - 10
        pixels = burn(ds.pixel_array, text, x=x, y=y, height=height, value=value)
        burned = with_pixels(ds, pixels)
        drawn = text_mask(pixels.shape, text, x=x, y=y, height=height) > 0.5
        bright = needs_ocr(_map(burned))
        assert not bright.ocr or _shown(bright.regions, drawn) == 0.0, (size, bright)
        dark = needs_ocr(_dark_map(burned))
        assert dark.ocr and _shown(dark.regions, drawn) > 0.95, (size, dark)
