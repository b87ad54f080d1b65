"""Which header signals say an image's pixels may carry burned-in text.

``deid`` holds such files back (or cleans them with ``--clean-pixels``) and
the pixel scan reads them whole; the signals are data, in ``sop_classes.yaml``.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from pipeline.dicom.profile import SopPolicy
from pipeline.read.peek import peek_value


def burned_in_signals(ds: Dataset, policy: SopPolicy) -> list[str]:
    """Why the header says the pixels may carry burned-in text (``sop_classes.yaml``)."""
    signals: list[str] = []
    if str(peek_value(ds, "BurnedInAnnotation", "")).strip().upper() == "YES":
        signals.append("BurnedInAnnotation YES")
    sop_class = str(peek_value(ds, "SOPClassUID", "")).strip("\0 ")
    if sop_class in policy.burned_in_sop_classes:
        signals.append(f"SOP class {policy.burned_in_sop_classes[sop_class]}")
    modality = str(peek_value(ds, "Modality", "")).strip().upper()
    if modality in policy.burned_in_modalities:
        signals.append(f"modality {modality}")
    image_type = {str(v).strip().upper() for v in (peek_value(ds, "ImageType") or [])}
    for required in policy.burned_in_image_types:
        if required <= image_type:
            signals.append("ImageType " + "\\".join(sorted(required)))
    if str(peek_value(ds, "ConversionType", "")).strip():
        signals.append("ConversionType present")
    return signals
