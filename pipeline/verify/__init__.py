"""The independent leak check: no identifying value of a run's inputs in its outputs.

Before anything is published, :func:`check_outputs` reads every output of a
run as a person would (decoded DICOM values, HDF5 datasets and attributes,
the ISMRMRD XML, Parquet and CSV cells, JSON and text, and the path it will
be published under) and reports each place where a value seen in the run's
inputs (:func:`collect_identifiers`) appears.  A hit says which output, what
kind of value and where, never the value.

This package does not import the code it checks (enforced by import-linter:
``pyproject.toml``): it reads inputs and outputs with pydicom, h5py, pyarrow
and the standard library, so a field the de-identification misses is not
also a field the check misses.
"""

from __future__ import annotations

from pipeline.verify.check import LeakHit, check_outputs
from pipeline.verify.identifiers import Identifier, IdentifierKind, Identifiers
from pipeline.verify.inputs import collect_identifiers, identifiers_of, identifiers_of_values

__all__ = [
    "Identifier",
    "IdentifierKind",
    "Identifiers",
    "LeakHit",
    "check_outputs",
    "collect_identifiers",
    "identifiers_of",
    "identifiers_of_values",
]
