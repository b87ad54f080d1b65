"""What the Image Pixel module says about the pixel data, shared by ``deid`` and ``scan``.

How many frames there are, and how many bytes of native pixel data Rows,
Columns, samples, bits and frames describe (a shorter element means a
truncated copy).
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from pipeline.errors import UnreadableInput
from pipeline.read.peek import peek_value


def number_of_frames(ds: Dataset) -> int:
    """NumberOfFrames, 1 when absent or unusable."""
    try:
        return max(1, int(peek_value(ds, "NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def expected_native_length(ds: Dataset, label: str) -> int:
    """Bytes of native pixel data that Rows, Columns, samples, bits and frames describe."""
    try:
        # peek: reading them leaves them raw, to be copied as they were read
        rows, cols = int(peek_value(ds, "Rows")), int(peek_value(ds, "Columns"))
        samples = int(peek_value(ds, "SamplesPerPixel", 1) or 1)
        bits = int(peek_value(ds, "BitsAllocated"))
    except (AttributeError, TypeError, ValueError):
        raise UnreadableInput(
            f"{label}: pixel data without a usable Image Pixel module (Rows, Columns, "
            "BitsAllocated); export the file again"
        ) from None
    expected = (rows * cols * samples * bits * number_of_frames(ds) + 7) // 8
    if str(peek_value(ds, "PhotometricInterpretation", "")).strip().upper() == "YBR_FULL_422":
        expected = expected * 2 // 3  # two chroma samples share each pair of pixels
    return expected
