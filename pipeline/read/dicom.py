"""Parse one DICOM file from its bytes, or say why it cannot be read.

Every step that reads DICOM (de-identification, the pixel scan, later the
leak check) goes through :func:`read_dicom`, so a truncated copy, a file
that is not DICOM or a damaged export is refused the same way everywhere,
with a reason that names the input by its opaque key only.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
import zlib

from pydicom import config, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from pipeline.errors import ImageWithoutPixels, TooLarge, UnreadableInput
from pipeline.read.image_pixel import expected_native_length
from pipeline.read.peek import peek_value, tag_object

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_UID_TEXT = re.compile(r"^[0-9]+(\.[0-9]+)*$")
# The largest a deflated dataset may inflate to unless the caller says otherwise.
DEFAULT_MAX_INFLATED = 512 << 20
_INFLATE_BLOCK = 1 << 20
_DEFLATED = DeflatedExplicitVRLittleEndian.encode()
_META_WINDOW = 65536  # a file meta group is a few hundred bytes
_FLOAT_PIXEL_DATA = frozenset({0x7FE00008, 0x7FE00009})  # Float / Double Float Pixel Data


def read_dicom(data: bytes, label: str, *, max_inflated: int = DEFAULT_MAX_INFLATED) -> Dataset:
    """Parse a DICOM file with or without the preamble, or raise UnreadableInput.

    pydicom's value warnings are silenced by :func:`quiet_pydicom`: they quote
    header values, which must not reach a log.

    Raises
    ------
    TooLarge
        A deflated dataset inflates to more than ``max_inflated`` bytes (a 1 MB
        file can inflate to 1 GiB, and pydicom would hold it twice).
    """
    if not data:
        raise UnreadableInput(f"{label}: empty file (0 bytes)")
    _check_inflated_size(data, label, max_inflated)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            forced = False
            try:
                ds = dcmread(io.BytesIO(data))
            except InvalidDicomError:
                # No 128-byte preamble: old exports and some PACS write bare datasets.
                forced = True
                ds = dcmread(io.BytesIO(data), force=True)
        except (InvalidDicomError, EOFError, ValueError, KeyError, OSError, OverflowError) as exc:
            raise UnreadableInput(
                f"{label}: not readable as DICOM ({type(exc).__name__})"
            ) from None
    # pydicom only warns when the file ends inside an element (and then keeps
    # what it has): that is a truncated copy, never something to release.
    if any("End of file" in str(w.message) or "delimiter" in str(w.message) for w in caught):
        raise UnreadableInput(
            f"{label}: truncated (the file ends inside an element); copy it again from its source"
        )
    if forced and not _UID_TEXT.match(str(ds.get("SOPClassUID", "")).strip("\0 ")):
        raise UnreadableInput(f"{label}: not DICOM (no preamble and no valid SOP Class UID)")
    return check_dataset(ds, label)


def check_dataset(ds: Dataset, label: str, *, values_whole: bool = False) -> Dataset:
    """What every parsed file must be before a step may use it (raises UnreadableInput).

    Shared by pydicom's reading above and the byte-stream reader
    (:mod:`pipeline.read.dicom_stream`): a file is refused the same way
    whichever reader parsed it.  ``values_whole``: the reader already refused
    any value cut short (the stream reader does), so that walk is skipped.
    """
    for element in () if values_whole else ds.elements():
        # pydicom keeps the bytes it could read: a value shorter than its
        # declared length means the file ends inside it.
        if (
            isinstance(element, RawDataElement)
            and element.length != 0xFFFFFFFF
            and isinstance(element.value, bytes)
            and len(element.value) < element.length
        ):
            raise UnreadableInput(
                f"{label}: truncated inside element {element.tag} "
                f"({len(element.value)} of {element.length} bytes); copy it again from its source"
            )
    sop_class = peek_value(ds, "SOPClassUID")
    sop_instance = peek_value(ds, "SOPInstanceUID")
    if sop_class is None or not _UID_TEXT.match(str(sop_class).strip("\0 ")):
        if is_dicomdir(ds):
            return ds
        raise UnreadableInput(f"{label}: not DICOM or damaged: no valid SOP Class UID")
    if sop_instance is None or not _UID_TEXT.match(str(sop_instance).strip("\0 ")):
        raise UnreadableInput(f"{label}: no valid SOP Instance UID")
    _check_pixel_length(ds, label)
    return ds


def _check_inflated_size(data: bytes, label: str, limit: int) -> None:
    """Inflate a deflated dataset once, counting, before pydicom inflates it whole."""
    if _DEFLATED not in data[:_META_WINDOW]:
        return  # the transfer syntax is named in the file meta, near the start
    stream = io.BytesIO(data)
    try:
        read_preamble(stream, False)
        meta = _read_file_meta_info(stream)
    except Exception:  # no preamble or a damaged meta: read_dicom says what is wrong
        return
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    size = 0
    try:
        pending = stream.read()
        while pending and size <= limit:
            # Bounded output per call: counting must not hold the bomb itself.
            size += len(inflater.decompress(pending, _INFLATE_BLOCK))
            pending = inflater.unconsumed_tail
        if size > limit:
            raise TooLarge(
                f"{label}: the deflated dataset inflates to more than {limit >> 20} MiB "
                f"({len(data) >> 10} KiB on disk); raise --max-inflated-mb if it is a real "
                "image, otherwise it is a decompression bomb"
            )
    except zlib.error:
        return  # damaged deflate stream: pydicom's own reading reports it


def quiet_pydicom() -> None:
    """Stop pydicom from warning or logging about values (its messages quote PHI)."""
    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?")
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)


_DIRECTORY_RECORDS = tag_object(0x00041220)


def is_dicomdir(ds: Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    if meta is not None and peek_value(meta, "MediaStorageSOPClassUID") == MEDIA_STORAGE_DIRECTORY:
        return True
    return _DIRECTORY_RECORDS in ds._dict  # "DirectoryRecordSequence" in ds, by the shared tag


def _check_pixel_length(ds: Dataset, label: str) -> None:
    """An image object must hold its pixels, and as many bytes of them as its header declares.

    Only image storage classes need Pixel Data (or Float / Double Float Pixel
    Data, as a parametric map has).  Other objects are well-formed without
    it, whatever else they carry: MR Spectroscopy its Spectroscopy Data,
    waveforms their Waveform Sequence, documents, reports, raw data and
    private classes their own content; whether they may be released is the
    SOP-class policy's decision (:func:`pipeline.dicom.deidentify.classify`).
    """
    if "PixelData" not in ds:
        if any(tag in ds for tag in _FLOAT_PIXEL_DATA):
            return
        sop_class = UID(str(peek_value(ds, "SOPClassUID")).strip("\0 "))
        if "Image Storage" not in sop_class.name:
            return
        raise ImageWithoutPixels(
            f"{label}: an image object ({sop_class.name}) with no Pixel Data element, so there "
            "is nothing to release. A copy cut short just before its pixels looks like this: "
            "compare it with its source; otherwise export it again with its pixel data"
        )
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and UID(syntax).is_compressed:
        return
    expected = expected_native_length(ds, label)
    actual = len(ds.get_item(0x7FE00010).value or b"")
    if actual < expected:
        raise UnreadableInput(
            f"{label}: pixel data is truncated ({actual} of {expected} bytes); "
            "copy the file again from its source"
        )
