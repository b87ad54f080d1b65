"""Rows of an ISMRMRD/HDF5 file, moved in blocks.

Readers (Siemens twix, existing ISMRMRD files) yield these blocks and the
writer puts each into the file with one h5py call: rows are already in the
compound dtypes that ISMRMRD's own HDF5 layer uses (``/dataset/data`` and
``/dataset/waveforms``), so nothing is converted twice and the C++ and Python
ISMRMRD readers see exactly what they would have written themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ismrmrd.hdf5 import (
    acquisition_dtype,
    acquisition_header_dtype,
    waveform_dtype,
    waveform_header_dtype,
)

# Re-exported so callers depend on this module, not on ismrmrd's internals.
ACQUISITION_DTYPE: np.dtype = (
    acquisition_dtype  # head, traj (vlen f4), data (vlen f4, re/im interleaved)
)
ACQUISITION_HEADER_DTYPE: np.dtype = acquisition_header_dtype
WAVEFORM_DTYPE: np.dtype = waveform_dtype  # head, data (vlen u4)
WAVEFORM_HEADER_DTYPE: np.dtype = waveform_header_dtype


@dataclass(frozen=True)
class AcquisitionBlock:
    """Consecutive acquisitions (readouts), shape ``(n,)`` of :data:`ACQUISITION_DTYPE`."""

    rows: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.shape[0])


@dataclass(frozen=True)
class WaveformBlock:
    """Consecutive waveforms (physiology), shape ``(n,)`` of :data:`WAVEFORM_DTYPE`."""

    rows: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.shape[0])
