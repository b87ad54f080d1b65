"""What a released file says about its acquisition, read from the file itself.

The manifest's acquisition columns come from the bytes that are released,
never from a record made earlier: a DICOM header read with pydicom (pixels
not read), the ISMRMRD XML header (``dataset/xml``) of a raw file, and a
fastMRI file's attributes and embedded ISMRMRD header.  These files are
already de-identified, so what is read here carries no PHI; it is read all
the same only for the few technical values the manifest names.

Where a file holds several different values for one column (a multi-echo
series' echo times, an enhanced object whose frames differ) the column is
left empty rather than filled with one of them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import h5py
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from pipeline.read.dicom import quiet_pydicom
from pipeline.release.areas import DataArea
from pipeline.release.errors import UnreadableReleasedFile

ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"
_NS = {"m": ISMRMRD_NAMESPACE}
# Raw data is MR by construction; DICOM says its own modality.
RAW_MODALITY = "MR"


@dataclass(frozen=True)
class AcquisitionFacts:
    """The manifest's acquisition columns of one file; ``None`` where none applies."""

    modality: str | None = None
    acquisition: str | None = None
    field_strength_t: float | None = None
    tr_ms: float | None = None
    te_ms: float | None = None
    ti_ms: float | None = None
    flip_angle_deg: float | None = None
    matrix_rows: int | None = None
    matrix_columns: int | None = None
    coils: int | None = None


def read_facts(path: Path, area: DataArea, label: str) -> AcquisitionFacts:
    """The acquisition facts of the released file at ``path`` in ``area``.

    Parameters
    ----------
    label : str
        How an error names the file (its path inside the version).

    Raises
    ------
    UnreadableReleasedFile
        The file is not what its area says (not DICOM, not HDF5, no ISMRMRD header).
    """
    try:
        if area is DataArea.DICOM:
            return dicom_facts(path)
        if area is DataArea.RAW:
            return ismrmrd_facts(path)
        return fastmri_facts(path)
    except (OSError, InvalidDicomError, ET.ParseError, KeyError, ValueError, TypeError) as exc:
        # An h5py/pydicom message may quote the path: name the kind of failure only.
        raise UnreadableReleasedFile(label, f"{area.value} file: {type(exc).__name__}") from None


# DICOM ------------------------------------------------------------------------------------------


def dicom_facts(path: Path) -> AcquisitionFacts:
    """Header values of a DICOM file; an enhanced object's from its functional groups."""
    quiet_pydicom()
    ds = dcmread(path, stop_before_pixels=True)
    return AcquisitionFacts(
        modality=_text(ds, "Modality"),
        acquisition=_text(ds, "ProtocolName") or _text(ds, "SeriesDescription"),
        field_strength_t=_number(ds, "MagneticFieldStrength"),
        tr_ms=_first_known(
            _number(ds, "RepetitionTime"),
            _functional(ds, "MRTimingAndRelatedParametersSequence", "RepetitionTime"),
        ),
        te_ms=_first_known(
            _number(ds, "EchoTime"), _functional(ds, "MREchoSequence", "EffectiveEchoTime")
        ),
        ti_ms=_first_known(
            _number(ds, "InversionTime"),
            _functional(ds, "MRModifierSequence", "InversionTimes"),
        ),
        flip_angle_deg=_first_known(
            _number(ds, "FlipAngle"),
            _functional(ds, "MRTimingAndRelatedParametersSequence", "FlipAngle"),
        ),
        matrix_rows=_integer(ds, "Rows"),
        matrix_columns=_integer(ds, "Columns"),
    )


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if isinstance(value, MultiValue):
        value = "\\".join(str(v) for v in value)
    text = str(value).strip() if value is not None else ""
    return text or None


def _number(ds: Dataset, keyword: str) -> float | None:
    return _one(_floats(ds.get(keyword)))


def _integer(ds: Dataset, keyword: str) -> int | None:
    value = _number(ds, keyword)
    return int(value) if value is not None and value.is_integer() else None


def _floats(value: Any) -> Iterator[float]:
    """The numbers in one element's value (none for an empty one)."""
    values = value if isinstance(value, MultiValue | list | tuple) else [value]
    for item in values:
        if item is None or (isinstance(item, str) and not item.strip()):
            continue
        yield float(item)


def _one(values: Iterable[float]) -> float | None:
    """The value when all are equal, else ``None`` (several different values, or none)."""
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def _first_known(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def _functional(ds: Dataset, macro: str, keyword: str) -> float | None:
    """A value of an enhanced object's functional group macro: shared, or one for every frame."""
    for item in ds.get("SharedFunctionalGroupsSequence") or ():
        for entry in item.get(macro) or ():
            if keyword in entry:
                return _one(_floats(entry.get(keyword)))
    frames = ds.get("PerFrameFunctionalGroupsSequence") or ()
    found: list[float] = []
    for frame in frames:
        for entry in frame.get(macro) or ():
            found.extend(_floats(entry.get(keyword)))
    return _one(found)


# ISMRMRD and fastMRI ----------------------------------------------------------------------------


def ismrmrd_facts(path: Path) -> AcquisitionFacts:
    """Values of an ISMRMRD file's XML header (``dataset/xml``)."""
    with h5py.File(path, "r") as handle:
        header = _xml_bytes(handle["dataset/xml"][()])
    return _header_facts(ET.fromstring(header))


def fastmri_facts(path: Path) -> AcquisitionFacts:
    """A fastMRI file's ``acquisition`` attribute, kspace coil axis and embedded ISMRMRD header."""
    with h5py.File(path, "r") as handle:
        header = _xml_bytes(handle["ismrmrd_header"][()])
        acquisition = handle.attrs.get("acquisition")
        kspace = handle["kspace"]
        coils = int(kspace.shape[1]) if kspace.ndim == 4 else None
    facts = _header_facts(ET.fromstring(header))
    label = acquisition.decode() if isinstance(acquisition, bytes) else acquisition
    return replace(
        facts,
        acquisition=(str(label).strip() or None) if label is not None else facts.acquisition,
        coils=coils,
    )


def _xml_bytes(value: Any) -> bytes:
    """The header as h5py returns it: bytes, a str, or a one-element array of either."""
    if hasattr(value, "shape") and getattr(value, "shape", ()) != ():
        value = value.ravel()[0]
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    raise TypeError(f"an ISMRMRD header is text, not {type(value).__name__}")


def _header_facts(root: ET.Element) -> AcquisitionFacts:
    matrix = root.find("m:encoding/m:encodedSpace/m:matrixSize", _NS)
    return AcquisitionFacts(
        modality=RAW_MODALITY,
        acquisition=_xml_text(root, "m:measurementInformation/m:protocolName")
        or _xml_text(root, "m:measurementInformation/m:sequenceName"),
        field_strength_t=_one(
            _xml_floats(root, "m:acquisitionSystemInformation/m:systemFieldStrength_T")
        ),
        tr_ms=_one(_xml_floats(root, "m:sequenceParameters/m:TR")),
        te_ms=_one(_xml_floats(root, "m:sequenceParameters/m:TE")),
        ti_ms=_one(_xml_floats(root, "m:sequenceParameters/m:TI")),
        flip_angle_deg=_one(_xml_floats(root, "m:sequenceParameters/m:flipAngle_deg")),
        matrix_rows=_xml_integer(matrix, "m:y"),
        matrix_columns=_xml_integer(matrix, "m:x"),
        coils=_xml_integer(root, "m:acquisitionSystemInformation/m:receiverChannels"),
    )


def _xml_text(root: ET.Element, path: str) -> str | None:
    element = root.find(path, _NS)
    text = (element.text or "").strip() if element is not None else ""
    return text or None


def _xml_floats(root: ET.Element, path: str) -> list[float]:
    return [float(e.text) for e in root.findall(path, _NS) if e.text and e.text.strip()]


def _xml_integer(root: ET.Element | None, path: str) -> int | None:
    if root is None:
        return None
    text = _xml_text(root, path)
    return int(text) if text is not None else None
