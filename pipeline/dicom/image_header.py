"""What an image's header says about its pixels, shared by ``deid`` and ``scan``.

Two questions both steps ask: how many bytes of native pixel data the Image
Pixel module describes (a shorter element means a truncated copy), and which
header signals say the pixels may carry burned-in text.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from pipeline.dicom.profile import SopPolicy
from pipeline.errors import UnreadableInput


def number_of_frames(ds: Dataset) -> int:
    """NumberOfFrames, 1 when absent or unusable."""
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def expected_native_length(ds: Dataset, label: str) -> int:
    """Bytes of native pixel data that Rows, Columns, samples, bits and frames describe."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        raise UnreadableInput(
            f"{label}: pixel data without a usable Image Pixel module (Rows, Columns, "
            "BitsAllocated); export the file again"
        ) from None
    expected = (rows * cols * samples * bits * number_of_frames(ds) + 7) // 8
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "YBR_FULL_422":
        expected = expected * 2 // 3  # two chroma samples share each pair of pixels
    return expected


def burned_in_signals(ds: Dataset, policy: SopPolicy) -> list[str]:
    """Why the header says the pixels may carry burned-in text (``sop_classes.yaml``)."""
    signals: list[str] = []
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        signals.append("BurnedInAnnotation YES")
    sop_class = str(ds.get("SOPClassUID", "")).strip("\0 ")
    if sop_class in policy.burned_in_sop_classes:
        signals.append(f"SOP class {policy.burned_in_sop_classes[sop_class]}")
    modality = str(ds.get("Modality", "")).strip().upper()
    if modality in policy.burned_in_modalities:
        signals.append(f"modality {modality}")
    image_type = {str(v).strip().upper() for v in (ds.get("ImageType") or [])}
    for required in policy.burned_in_image_types:
        if required <= image_type:
            signals.append("ImageType " + "\\".join(sorted(required)))
    if str(ds.get("ConversionType", "")).strip():
        signals.append("ConversionType present")
    return signals
