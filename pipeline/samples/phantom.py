"""Pixel data for the MR samples: a head-like phantom mixed by contrast and b-value.

Tests look at pixels (burned-in text detection, compression, converters), so
frames must be smooth anatomy-like images rather than noise or flat fields.
The tissue maps are computed once per series and each frame is a cheap mix
of them, so thousands of 256×256 slices take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "Phantom",
    "contrast_frame",
    "diffusion_frame",
    "head_phantom",
]

_Image = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Phantom:
    """Tissue maps of a head-like phantom; frames are mixes of them, so each is cheap."""

    body: _Image
    fluid: _Image
    fibre: _Image


def _ellipse(y: _Image, x: _Image, cy: float, cx: float, ry: float, rx: float) -> _Image:
    """A filled ellipse with a soft edge, so images have no aliasing staircase."""
    r = np.sqrt(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2)
    result: _Image = 0.5 - 0.5 * np.tanh((r - 1.0) * 20.0)
    return result


def head_phantom(rows: int, cols: int, seed: int) -> Phantom:
    """Head, fluid and fibre maps, jittered and noised by ``seed`` so that series differ."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1.0 : 1.0 : rows * 1j, -1.0 : 1.0 : cols * 1j]
    jitter = rng.uniform(-0.04, 0.04, size=8)
    skull = _ellipse(y, x, 0.0, 0.0, 0.92 + jitter[0], 0.74 + jitter[1])
    brain = _ellipse(y, x, 0.02, 0.0, 0.84 + jitter[0], 0.66 + jitter[1])
    bias = 1.0 + 0.15 * x - 0.1 * y**2
    body = (0.35 * skull + 0.65 * brain) * bias
    fluid = (
        _ellipse(y, x, -0.05 + jitter[2], -0.17, 0.28, 0.09)
        + _ellipse(y, x, -0.05 + jitter[3], 0.17, 0.28, 0.09)
        + _ellipse(y, x, 0.45, jitter[4], 0.06, 0.06)
    ) * brain
    fibre = _ellipse(y, x, -0.45 + jitter[5], 0.0, 0.10, 0.40) * brain
    noise = rng.normal(0.0, 0.012, size=(rows, cols))
    return Phantom(body=body + noise, fluid=fluid, fibre=fibre)


def contrast_frame(
    phantom: Phantom, contrast: str, position: float, scale: float = 2600.0
) -> bytes:
    """A 12-bit frame: tissue weights by contrast, anatomy drifting with slice position."""
    fluid_weight = {"T1": -0.55, "T2": 0.9, "FLAIR": -0.6, "PROTON_DENSITY": 0.3}.get(contrast, 0.5)
    image = phantom.body + fluid_weight * phantom.fluid * (0.6 + 0.4 * np.cos(position))
    image = image + 0.25 * phantom.fibre * np.sin(position)
    return bytes(np.clip(image * scale, 0, 4095).astype("<u2").tobytes())


def diffusion_frame(phantom: Phantom, bvalue: int, direction: tuple[float, float, float]) -> bytes:
    """Signal decay ``S0·exp(-b·ADC)`` with an anisotropic tract along x."""
    adc_tissue = 0.0008
    adc_fluid = 0.003
    adc_fibre = 0.0003 + 0.0015 * direction[0] ** 2
    tissue = np.clip(phantom.body - phantom.fluid - phantom.fibre, 0.0, None)
    image = (
        tissue * np.exp(-bvalue * adc_tissue)
        + 1.2 * phantom.fluid * np.exp(-bvalue * adc_fluid)
        + phantom.fibre * np.exp(-bvalue * adc_fibre)
    )
    return bytes(np.clip(image * 2200.0, 0, 4095).astype("<u2").tobytes())
