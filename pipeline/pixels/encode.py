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

import struct
import sys
from collections.abc import Iterator

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
from pipeline.pixels.blank import CleanedFrames, CleanedPixels, Pixels

__all__ = [
    "LOSSY_SYNTAXES",
    "PixelStream",
    "output_syntax",
    "store_native",
    "store_pixels",
    "stream_native",
]

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
    _describe(ds, cleaned.frames[0], cleaned.photometric)
    return store_native(ds, cleaned.frames, source)


def _describe(ds: Dataset, frame: Pixels, photometric: str) -> None:
    """Make ``ds``'s Image Pixel module say what one decoded ``frame`` holds."""
    if frame.ndim == 3:
        bits = frame.dtype.itemsize * 8
        stored = min(int(ds.get("BitsStored", bits) or bits), bits)
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated = bits
        ds.BitsStored = stored
        ds.HighBit = stored - 1
        ds.PixelRepresentation = 0
    else:
        ds.PhotometricInterpretation = photometric
        if "PlanarConfiguration" in ds:
            del ds.PlanarConfiguration


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
    allocated = _allocated(ds, frames.dtype)
    if allocated == 1:
        data = pack_bits(frames.reshape(-1))
    else:
        little = frames.astype(frames.dtype.newbyteorder("<"), copy=False)
        data = np.ascontiguousarray(little).tobytes()
        if len(data) % 2:
            data += b"\0"
    ds.PixelData = data
    element = ds["PixelData"]
    element.VR = "OW" if allocated > 8 else "OB"
    element.is_undefined_length = False
    _mark_native(ds, source)
    return output_syntax(source)


def _allocated(ds: Dataset, dtype: np.dtype[np.generic]) -> int:
    allocated = int(ds.BitsAllocated)
    if allocated not in (1, dtype.itemsize * 8):
        raise UnreadableInput(
            f"BitsAllocated {allocated} does not match the decoded {dtype} values; "
            "export the file again"
        )
    return allocated


def _mark_native(ds: Dataset, source: UID) -> None:
    """What a data set whose pixels are stored natively again must say of them."""
    for tag in _ENCAPSULATION_ONLY:
        if tag in ds:
            del ds[tag]
    if source in LOSSY_SYNTAXES or str(ds.get("LossyImageCompression", "")).strip() == "01":
        ds.LossyImageCompression = "01"
        if "LossyImageCompressionMethod" not in ds and source in _LOSSY_METHOD:
            ds.LossyImageCompressionMethod = _LOSSY_METHOD[source]


_PIXEL_DATA = 0x7FE00010


class PixelStream:
    """Cleaned frames as the bytes of a Pixel Data element, to write after the rest of ``ds``.

    :func:`stream_native` has made ``ds`` what :func:`store_pixels` makes
    it, less its Pixel Data: ``ds.save_as`` writes every element before it,
    and :meth:`pieces` the element itself, its header and then each frame
    as it is decoded and blanked, so a long cine is never held decoded
    whole (nor as one Pixel Data value, nor as one output buffer).  The
    file's bytes are those :func:`store_pixels` and ``save_as`` write.
    """

    def __init__(
        self, first: Pixels, rest: Iterator[Pixels], count: int, vr: str, label: str
    ) -> None:
        self._first: Pixels | None = first
        self._rest, self._vr, self._label = rest, vr, label
        self.length = first.nbytes * count

    def pieces(self, implicit: bool) -> Iterator[bytes | memoryview]:
        """The element's header and value, little endian, in ``implicit`` or explicit VR."""
        padded = self.length + self.length % 2
        if implicit:
            yield struct.pack("<HHI", 0x7FE0, 0x0010, padded)
        else:
            yield struct.pack("<HH2sHI", 0x7FE0, 0x0010, self._vr.encode(), 0, padded)
        first, self._first = self._first, None
        assert first is not None, "pieces() is read once"
        yield _little(first)
        for frame in self._rest:
            if frame.shape != first.shape or frame.dtype != first.dtype:
                raise UnreadableInput(
                    f"{self._label}: the frames of the pixel data differ in size or type; "
                    "export the file again"
                )
            yield _little(frame)
        if self.length % 2:
            yield b"\0"


def _little(frame: Pixels) -> memoryview:
    if sys.byteorder != "little" or frame.dtype.byteorder == ">":
        frame = frame.astype(frame.dtype.newbyteorder("<"))
    contiguous: memoryview = np.ascontiguousarray(frame).data
    return contiguous.cast("B")


def stream_native(
    ds: Dataset, cleaned: CleanedFrames, source: UID
) -> tuple[UID, PixelStream] | None:
    """Ready ``ds`` to be written with ``cleaned`` streamed as its Pixel Data.

    Returns the syntax to write in and the stream; ``ds`` then holds no
    Pixel Data.  Decodes (and blanks) the first frame to learn the frames'
    size and type.  None, ``ds`` untouched, where only :func:`store_pixels`
    may store them: single-bit frames (packed across frame boundaries) or an
    element after Pixel Data.

    Raises
    ------
    UnreadableInput
        The pixel data cannot be decoded, or does not match its header.
    """
    if any(int(tag) > _PIXEL_DATA for tag in ds.keys()) or int(ds.get("BitsAllocated", 0)) == 1:
        return None
    frames = iter(cleaned)
    first = next(frames)
    _describe(ds, first, cleaned.photometric)
    allocated = _allocated(ds, first.dtype)
    if "PixelData" in ds:
        del ds.PixelData
    _mark_native(ds, source)
    vr = "OW" if allocated > 8 else "OB"
    return output_syntax(source), PixelStream(first, frames, cleaned.count, vr, cleaned.label)


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
