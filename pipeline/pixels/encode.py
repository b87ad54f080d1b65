"""Storing cleaned pixels losslessly, with an Image Pixel module that describes them.

pydicom cannot encode JPEG Baseline or JPEG Lossless, and this machine has
no JPEG-LS or JPEG 2000 encoder installed (``pydicom.pixels.encoders``: only
RLE Lossless is available without plugins).  A cleaned file is therefore
written natively, in Explicit VR Little Endian when its source was
compressed (or big endian), otherwise in its own transfer syntax.  Native
data is understood by every reader and is exactly what was decoded: no
value changes on the way out.

Decoded values of a lossy source (JPEG Baseline ultrasound) are what the
decoder made of them: the cleaned output stores *those* values losslessly;
it cannot restore what the lossy compression removed, and it keeps
``LossyImageCompression`` "01" (added when the source syntax was lossy and
the header did not say so), as PS3.3 C.7.6.1.1.5 requires once an image has
been lossy compressed.

Colour images are decoded to RGB (YBR_FULL, YBR_FULL_422, YBR_ICT, YBR_RCT
included), so the output says RGB, three samples, PlanarConfiguration 0,
8 or 16 bits as decoded.  Single-bit images are packed again.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pack_bits
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
)

from pipeline.errors import UnreadableInput
from pipeline.pixels.blank import CleanedPixels

__all__ = ["LOSSY_SYNTAXES", "output_syntax", "store_native", "store_pixels"]

# Syntaxes whose pixel data may have lost information when it was compressed.
LOSSY_SYNTAXES = frozenset(
    [JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless, JPEG2000, HTJ2K]
)
_LOSSY_METHOD = {
    JPEGBaseline8Bit: "ISO_10918_1",
    JPEGExtended12Bit: "ISO_10918_1",
    JPEGLSNearLossless: "ISO_14495_1",
    JPEG2000: "ISO_15444_1",
    HTJ2K: "ISO_15444_15",
}
# Elements that only describe encapsulated data.
_ENCAPSULATION_ONLY = (0x7FE00001, 0x7FE00002)  # ExtendedOffsetTable(Lengths)


def output_syntax(source: UID) -> UID:
    """The syntax a cleaned file is written in: its own when native little endian."""
    if source.is_encapsulated or not source.is_little_endian or source.is_deflated:
        return ExplicitVRLittleEndian
    return source


def store_pixels(ds: Dataset, cleaned: CleanedPixels, source: UID) -> UID:
    """Put ``cleaned`` into ``ds`` as native Pixel Data; return the syntax to write in.

    Parameters
    ----------
    ds : pydicom.Dataset
        The de-identified dataset; its Image Pixel module is made to match.
    cleaned : CleanedPixels
        From :func:`pipeline.pixels.blank.blank_pixels`.
    source : UID
        The input's transfer syntax.

    Returns
    -------
    UID
        Explicit VR Little Endian for a compressed or big endian source,
        otherwise ``source``.
    """
    frames = cleaned.frames
    if frames.ndim == 4:
        bits = frames.dtype.itemsize * 8
        stored = min(int(ds.get("BitsStored", bits) or bits), bits)
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated = bits
        ds.BitsStored = stored
        ds.HighBit = stored - 1
        ds.PixelRepresentation = 0
    else:
        ds.PhotometricInterpretation = cleaned.photometric
        if "PlanarConfiguration" in ds:
            del ds.PlanarConfiguration
    return store_native(ds, frames, source)


def store_native(ds: Dataset, frames: np.ndarray, source: UID) -> UID:
    """Put decoded ``frames`` into ``ds`` as native Pixel Data; return the syntax to write in.

    The one place pixels go back into a data set, for cleaned pixels and for
    defaced voxels alike: the values are stored exactly as given (little
    endian, single bits packed again), elements that only describe
    encapsulated data go, and a lossy source keeps saying so.

    Raises
    ------
    UnreadableInput
        ``BitsAllocated`` does not match the decoded values' width.
    """
    allocated = int(ds.BitsAllocated)
    if allocated not in (1, frames.dtype.itemsize * 8):
        raise UnreadableInput(
            f"BitsAllocated {allocated} does not match the decoded {frames.dtype} values; "
            "export the file again"
        )
    if allocated == 1:
        data = pack_bits(frames.reshape(-1))
    else:
        little = frames.astype(frames.dtype.newbyteorder("<"), copy=False)
        data = np.ascontiguousarray(little).tobytes()
        if len(data) % 2:
            data += b"\0"
    for tag in _ENCAPSULATION_ONLY:
        if tag in ds:
            del ds[tag]
    ds.PixelData = data
    element = ds["PixelData"]
    element.VR = "OW" if allocated > 8 else "OB"
    element.is_undefined_length = False
    if source in LOSSY_SYNTAXES or str(ds.get("LossyImageCompression", "")).strip() == "01":
        ds.LossyImageCompression = "01"
        if "LossyImageCompressionMethod" not in ds and source in _LOSSY_METHOD:
            ds.LossyImageCompressionMethod = _LOSSY_METHOD[source]
    return output_syntax(source)


def remove_overlays_and_icons(ds: Dataset) -> int:
    """Delete every overlay group (6000-601E) and IconImageSequence; return how many elements.

    Called on a cleaned file: its overlay planes were removed or masked out of
    the pixel data, so a description left behind would point at nothing (or,
    for a bit the output no longer uses, at image data).
    """
    tags = [t for t in ds.keys() if 0x6000 <= t >> 16 <= 0x601E and not (t >> 16) & 1]
    if "IconImageSequence" in ds:
        tags.append(ds["IconImageSequence"].tag)
    for tag in tags:
        del ds[tag]
    return len(tags)
