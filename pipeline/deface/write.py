"""Write defaced voxels back into the same series: pixel data only, and what says it was done.

Every element stays as it was (geometry, UIDs, dates, private data) except:
the Pixel Data (the same stored values wherever defacing changed nothing;
native, in the file's own transfer syntax, or Explicit VR Little Endian when
the file was compressed, stored by :func:`pipeline.pixels.encode.store_native`
as cleaned pixels are, a lossy source still saying so),
``RecognizableVisualFeatures`` NO (PS3.15 E.3.2: the Clean Recognizable Visual Features Option), and that option's
code added to the De-identification Method Code Sequence.  Nothing else is
claimed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.uid import UID

from pipeline.deface.volume import Volume
from pipeline.dicom.deidentify import add_method_code
from pipeline.dicom.profile import MethodCode
from pipeline.pixels.encode import store_native

CLEAN_RECOGNIZABLE_VISUAL_FEATURES = MethodCode(
    "113102", "Clean Recognizable Visual Features Option"
)


def write_back(
    datasets: Sequence[Dataset], volume: Volume, voxels: npt.NDArray[np.generic]
) -> None:
    """Put ``voxels`` (on ``volume``'s grid, from :func:`assemble` of ``datasets``) into them."""
    per_dataset: dict[int, dict[int, npt.NDArray[np.generic]]] = {}
    for k, ref in enumerate(volume.frames):
        per_dataset.setdefault(ref.dataset, {})[ref.frame] = voxels[k]
    for index, ds in enumerate(datasets):
        frames = per_dataset[index]
        stack = np.stack([frames[f] for f in range(len(frames))])
        _store(ds, stack if len(frames) > 1 else stack[0])
        mark_defaced(ds)


def mark_defaced(ds: Dataset) -> None:
    ds.RecognizableVisualFeatures = "NO"
    add_method_code(ds, CLEAN_RECOGNIZABLE_VISUAL_FEATURES)


def is_marked_defaced(ds: Dataset) -> bool:
    """Whether ``ds`` was written by :func:`write_back` (a rerun leaves it as it is)."""
    codes = ds.get("DeidentificationMethodCodeSequence") or []
    done = any(item.get("CodeValue") == CLEAN_RECOGNIZABLE_VISUAL_FEATURES.value for item in codes)
    return done and str(ds.get("RecognizableVisualFeatures", "")).strip().upper() == "NO"


def _store(ds: Dataset, array: npt.NDArray[np.generic]) -> None:
    source = UID(ds.file_meta.TransferSyntaxUID)
    target = store_native(ds, array, source)
    if target != source:
        ds.file_meta.TransferSyntaxUID = target
