"""Test images with burned-in text: the drawing lives in pipeline.samples.burned_text."""

from __future__ import annotations

from pipeline.samples.burned_text import burn, printed_name, text_mask, with_pixels
from tests.reference import ROOT

REFERENCE = ROOT / "dicom"

__all__ = ["REFERENCE", "burn", "printed_name", "text_mask", "with_pixels"]
