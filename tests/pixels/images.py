"""Test images with burned-in text: the drawing lives in pipeline.samples.burned_text."""

from __future__ import annotations

from pathlib import Path

from pipeline.samples.burned_text import burn, printed_name, text_mask, with_pixels

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "dicom"

__all__ = ["REFERENCE", "burn", "printed_name", "text_mask", "with_pixels"]
