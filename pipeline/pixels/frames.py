"""Every image a DICOM file carries, decoded to numpy arrays.

Burned-in text hides in more places than the frames of Pixel Data: overlay
planes stored in (60xx,3000), overlay planes hidden in the unused high bits of
the pixel data (older GE and Philips files), and the small icon an archive
keeps in IconImageSequence.  :func:`iter_images` yields all of them, one 2-D
(or RGB) array each, so the scan treats them alike.

Decoding is the file boundary of the scan: a corrupt or truncated codestream,
a header that contradicts the data, or a transfer syntax with no installed
decoder all become :class:`~pipeline.errors.UnreadableInput` naming the input
by its opaque key, so the caller records the reason and goes on.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.multival import MultiValue
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import iter_pixels
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
)

from pipeline.errors import UnreadableInput
from pipeline.read.image_pixel import expected_native_length, number_of_frames

__all__ = ["ImageKind", "SourceImage", "iter_images"]

Pixels = npt.NDArray[Any]

# The item tag (FFFE,E000) little endian: encapsulated pixel data starts with it.
_ITEM_TAG = b"\xfe\xff\x00\xe0"
_OVERLAY_GROUPS = range(0x6000, 0x6020, 2)
_JPEG_FAMILY = frozenset(
    [*JPEGTransferSyntaxes, *JPEGLSTransferSyntaxes, *JPEG2000TransferSyntaxes]
)


class ImageKind(enum.Enum):
    """Where an image came from; the cleaning step needs to know which to change."""

    FRAME = "frame"  # a frame of (7FE0,0010) Pixel Data
    OVERLAY = "overlay"  # an overlay plane, in (60xx,3000) or in unused pixel bits
    ICON = "icon"  # IconImageSequence


@dataclass(frozen=True, eq=False)
class SourceImage:
    """One decoded image of a file, with what :mod:`.prepare` needs to display it.

    Attributes
    ----------
    kind : ImageKind
        Frame, overlay plane or icon.
    pixels : numpy.ndarray
        Stored values for grey images (unused high bits cleared), RGB for
        colour (YBR converted, palettes applied), 0/1 ``uint8`` for overlays.
    index : int
        Frame number (0-based): of the pixel data for frames and high-bit
        overlays, of the overlay for (60xx,3000) overlays, of the icon item.
    group : int or None
        The overlay group (``0x6000``...), else None.
    bit : int or None
        For overlays kept in the pixel data: the bit that holds them.
    origin : tuple of int
        (row, column) of this image's top-left pixel in the frame it
        belongs to: OverlayOrigin - 1 for overlays, (0, 0) otherwise.
    window : tuple of float or None
        The header's display window as (low, high) stored values, for grey
        frames that have one (WindowCenter/Width through the rescale).
    monochrome1 : bool
        Grey values are shown inverted (low values white).
    multiframe : bool
        The file has more than one frame, so labels name the frame.
    same_as : int or None
        For a frame identical to an earlier one: that frame's index.  Its
        text is the earlier frame's, so it needs no second OCR.
    """

    kind: ImageKind
    pixels: Pixels
    index: int = 0
    group: int | None = None
    bit: int | None = None
    origin: tuple[int, int] = (0, 0)
    window: tuple[float, float] | None = None
    monochrome1: bool = False
    multiframe: bool = False
    same_as: int | None = None

    @property
    def label(self) -> str:
        """A short, PHI-free name: ``frame 3``, ``overlay 6000``, ``overlay 6010 frame 2``, ``icon``."""
        if self.kind is ImageKind.FRAME:
            return f"frame {self.index}"
        if self.kind is ImageKind.ICON:
            return "icon" if self.index == 0 else f"icon {self.index}"
        name = f"overlay {self.group or 0:04X}"
        return f"{name} frame {self.index}" if self.multiframe else name

    @property
    def is_colour(self) -> bool:
        return self.pixels.ndim == 3


def iter_images(
    ds: Dataset, label: str, *, overlays: bool = True, icons: bool = True
) -> Iterator[SourceImage]:
    """Yield every frame, overlay plane and icon image of ``ds``.

    Parameters
    ----------
    ds : pydicom.Dataset
        A dataset read by :func:`pipeline.dicom.deidentify.read_dicom`.
    label : str
        The opaque name of the input (``input <sha256 prefix>``) for errors.
    overlays, icons : bool, optional
        Also yield overlay planes and IconImageSequence images.

    Yields
    ------
    SourceImage
        Frames in order (a repeat of an earlier frame carries ``same_as``),
        each followed by the high-bit overlay planes of that frame; then
        (60xx,3000) overlay planes; then icons.

    Raises
    ------
    UnreadableInput
        The pixel data, an overlay or an icon cannot be decoded.
    """
    if "PixelData" in ds:
        planes = _high_bit_planes(ds) if overlays else []
        yield from _frames(ds, label, planes)
    if overlays:
        yield from _embedded_overlays(ds, label)
    if icons:
        for number, item in enumerate(ds.get("IconImageSequence") or []):
            if "PixelData" in item:
                yield from _icon(ds, item, number, label)


# ---------------------------------------------------------------------------
# Frames of Pixel Data
# ---------------------------------------------------------------------------


def _frames(
    ds: Dataset, label: str, planes: list[tuple[int, int, tuple[int, int]]]
) -> Iterator[SourceImage]:
    """Decode each frame once; derive the image and any high-bit overlay planes from it."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    frames = number_of_frames(ds)
    seen: dict[bytes, int] = {}
    keep_bits = bool(planes)
    for index, raw in enumerate(_decode(ds, label, keep_unused_bits=keep_bits)):
        digest = hashlib.blake2b(np.ascontiguousarray(raw).data, digest_size=16).digest()
        first = seen.setdefault(digest, index)
        image = _clear_unused_bits(ds, raw) if keep_bits else raw
        if photometric == "PALETTE COLOR" and image.ndim == 2:
            image = _palette(ds, image, label)
        yield SourceImage(
            kind=ImageKind.FRAME,
            pixels=image,
            index=index,
            window=None if image.ndim == 3 else _window(ds, index),
            monochrome1=photometric == "MONOCHROME1",
            multiframe=frames > 1,
            same_as=first if first != index else None,
        )
        for group, bit, origin in planes:
            plane = ((raw.astype(np.uint64) >> np.uint64(bit)) & np.uint64(1)).astype(np.uint8)
            yield SourceImage(
                kind=ImageKind.OVERLAY,
                pixels=plane,
                index=index,
                group=group,
                bit=bit,
                origin=origin,
                multiframe=frames > 1,
            )


def _syntax(ds: Dataset) -> UID:
    """The transfer syntax, guessed from how the dataset was read when the meta has none."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return UID(str(meta.TransferSyntaxUID))
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little in (True, None) else ExplicitVRBigEndian


def _decode(ds: Dataset, label: str, *, keep_unused_bits: bool) -> Iterator[Pixels]:
    """Yield decoded frames, turning every decoding failure into :class:`UnreadableInput`."""
    syntax = _syntax(ds)
    meta = getattr(ds, "file_meta", None)
    if meta is None or not meta.get("TransferSyntaxUID"):
        # pydicom decodes by the meta's syntax; a bare dataset (no preamble,
        # no meta) was read by guessing, so record the guess for the decoder.
        if meta is None:
            ds.file_meta = meta = FileMetaDataset()
        meta.TransferSyntaxUID = syntax
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise UnreadableInput(
            f"{label}: pixel data in transfer syntax {_syntax_name(syntax)}, which no decoder "
            "supports; export the file again uncompressed or in a common syntax"
        ) from None
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise UnreadableInput(
            f"{label}: cannot decode {_syntax_name(syntax)} pixel data: no decoder is installed "
            f"({needs}); install one and scan again"
        )
    if not syntax.is_encapsulated:
        _check_native_length(ds, label)
    elif syntax in _JPEG_FAMILY:
        _check_codestreams(ds, syntax, label)
    try:
        if keep_unused_bits:
            yield from iter_pixels(ds, correct_unused_bits=False)
        else:
            yield from iter_pixels(ds)
    except UnreadableInput:
        raise
    except Exception as exc:
        # pydicom and its plugins raise many types (ValueError, RuntimeError,
        # struct.error, ...); their messages may quote header values, so only
        # the type is kept.
        raise UnreadableInput(
            f"{label}: the {_syntax_name(syntax)} pixel data cannot be decoded "
            f"({type(exc).__name__}): corrupt, truncated, not described by the Image Pixel "
            "module, or a variant no installed decoder supports; copy the file again from its "
            "source or export it again"
        ) from None


def _syntax_name(syntax: UID) -> str:
    return syntax.name if syntax.is_valid else "unknown syntax"


def _check_codestreams(ds: Dataset, syntax: UID, label: str) -> None:
    """Every JPEG, JPEG-LS and JPEG 2000 frame must end with its end marker (FFD9).

    The decoders return whatever they decoded of a codestream that was cut
    short, without an error: the rest of the image would silently not be
    scanned.  Encoders may pad after the marker, so the last bytes are searched.
    """
    try:
        frames = list(generate_frames(ds.PixelData, number_of_frames=number_of_frames(ds)))
    except Exception as exc:
        raise UnreadableInput(
            f"{label}: the {_syntax_name(syntax)} pixel data is not a valid sequence of "
            f"fragments ({type(exc).__name__}); copy the file again from its source"
        ) from None
    for index, frame in enumerate(frames):
        if b"\xff\xd9" not in bytes(frame[-16:]):
            raise UnreadableInput(
                f"{label}: frame {index} of the {_syntax_name(syntax)} pixel data ends without "
                "its end-of-image marker: truncated or corrupt; copy the file again from its "
                "source"
            )


def _check_native_length(ds: Dataset, label: str) -> None:
    """Native pixel data must be as long as the Image Pixel module says, give or take padding.

    pydicom quietly decodes the first bytes of data that is longer than
    declared, so a wrong BitsAllocated would be scanned as noise and pass.
    """
    bits = int(ds.get("BitsAllocated", 0) or 0)
    if bits not in (1, 8, 16, 32, 64):
        raise UnreadableInput(
            f"{label}: BitsAllocated {bits} is not valid for native pixel data (1, 8, 16, 32 "
            "or 64); the header is damaged, export the file again"
        )
    expected = expected_native_length(ds, label)
    frames = number_of_frames(ds)
    actual = len(ds.PixelData or b"")
    # Trailing padding is harmless; a whole frame or more beyond the declared
    # size means the header describes other pixels than the file holds.
    if actual < expected or actual - expected >= max(2, expected // frames):
        raise UnreadableInput(
            f"{label}: pixel data holds {actual} bytes but Rows, Columns, SamplesPerPixel, "
            f"BitsAllocated and NumberOfFrames describe {expected}: the header does not match "
            "the pixels; export the file again"
        )


def _clear_unused_bits(ds: Dataset, raw: Pixels) -> Pixels:
    """The image values alone, when the frame was decoded with its overlay bits kept.

    Same result as pydicom's own correction: unsigned values are masked,
    signed values sign-extended from BitsStored.
    """
    bits_stored = int(ds.get("BitsStored", 0) or 0)
    width = raw.dtype.itemsize * 8
    if raw.dtype.kind not in "iu" or not 0 < bits_stored < width:
        return raw
    shift = width - bits_stored
    if raw.dtype.kind == "u":
        mask = (1 << bits_stored) - 1
        masked: Pixels = np.bitwise_and(raw, raw.dtype.type(mask))
        return masked
    shifted = np.left_shift(raw, shift)
    corrected: Pixels = np.right_shift(shifted, shift)
    return corrected


def _high_bit_planes(ds: Dataset) -> list[tuple[int, int, tuple[int, int]]]:
    """Overlay groups without OverlayData whose plane is an unused bit of the pixel data.

    Returns (group, bit, origin) for each; a bit inside the stored image
    values would extract anatomy, not an overlay, and is ignored.
    """
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return []
    try:
        allocated = int(ds.BitsAllocated)
        high = int(ds.get("HighBit", int(ds.get("BitsStored", allocated)) - 1))
    except (AttributeError, TypeError, ValueError):
        return []
    planes = []
    for group in _OVERLAY_GROUPS:
        if (group << 16 | 0x3000) in ds or (group << 16 | 0x0102) not in ds:
            continue
        try:
            bit = int(ds[group << 16 | 0x0102].value)
        except (TypeError, ValueError):
            continue
        if high < bit < allocated:
            planes.append((group, bit, _origin(ds, group)))
    return planes


def _origin(ds: Dataset, group: int) -> tuple[int, int]:
    element = ds.get(group << 16 | 0x0050)
    try:
        row, col = (int(v) for v in element.value)
    except (AttributeError, TypeError, ValueError):
        return (0, 0)
    return (row - 1, col - 1)


def _palette(ds: Dataset, image: Pixels, label: str) -> Pixels:
    try:
        rgb: Pixels = apply_color_lut(image, ds)
    except Exception as exc:
        raise UnreadableInput(
            f"{label}: PALETTE COLOR image whose palette cannot be applied "
            f"({type(exc).__name__}); export the file again as RGB"
        ) from None
    return rgb


def _window(ds: Dataset, index: int) -> tuple[float, float] | None:
    """The header window as (low, high) stored values, or None.

    WindowCenter/Width apply to rescaled values, so they are taken back
    through RescaleSlope/Intercept.  Enhanced objects keep both per frame in
    functional groups.
    """
    voi = _functional(ds, index, "FrameVOILUTSequence")
    rescale = _functional(ds, index, "PixelValueTransformationSequence")
    centre_value = voi.get("WindowCenter")
    width_value = voi.get("WindowWidth")
    slope_value = rescale.get("RescaleSlope", 1)
    intercept_value = rescale.get("RescaleIntercept", 0)
    if "ModalityLUTSequence" in ds:
        return None  # a non-linear modality LUT: let percentiles decide
    try:
        centre = float(_first(centre_value))
        width = float(_first(width_value))
        slope = float(_first(slope_value) or 1)
        intercept = float(_first(intercept_value) or 0)
    except (TypeError, ValueError):
        return None
    if width <= 0 or slope == 0 or not np.isfinite([centre, width, slope, intercept]).all():
        return None
    low = (centre - 0.5 - (width - 1) / 2 - intercept) / slope
    high = (centre - 0.5 + (width - 1) / 2 - intercept) / slope
    return (min(low, high), max(low, high))


def _first(value: object) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple | MultiValue):
        return value[0] if len(value) else None
    return value


def _functional(ds: Dataset, index: int, keyword: str) -> Dataset:
    """The first item of ``keyword`` for frame ``index``: per-frame, shared, or the top level."""
    for groups in (
        ds.get("PerFrameFunctionalGroupsSequence"),
        ds.get("SharedFunctionalGroupsSequence"),
    ):
        if not groups:
            continue
        item = groups[index] if len(groups) > 1 and index < len(groups) else groups[0]
        sequence = item.get(keyword)
        if sequence:
            found: Dataset = sequence[0]
            return found
    return ds


# ---------------------------------------------------------------------------
# Overlay planes in (60xx,3000) and icon images
# ---------------------------------------------------------------------------


def _embedded_overlays(ds: Dataset, label: str) -> Iterator[SourceImage]:
    for group in _OVERLAY_GROUPS:
        if (group << 16 | 0x3000) not in ds:
            continue
        try:
            array = np.asarray(ds.overlay_array(group), dtype=np.uint8)
        except Exception as exc:
            raise UnreadableInput(
                f"{label}: overlay plane {group:04X} cannot be decoded ({type(exc).__name__}): "
                "its OverlayData is shorter than OverlayRows × OverlayColumns says; copy the "
                "file again from its source"
            ) from None
        planes = array if array.ndim == 3 else array[None, ...]
        first_frame = _int(ds.get(group << 16 | 0x0051), 1) - 1  # ImageFrameOrigin
        for number, plane in enumerate(planes):
            yield SourceImage(
                kind=ImageKind.OVERLAY,
                pixels=plane,
                index=first_frame + number,
                group=group,
                origin=_origin(ds, group),
                multiframe=len(planes) > 1 or number_of_frames(ds) > 1,
            )


def _int(element: Any, default: int) -> int:
    try:
        return int(element.value)
    except (AttributeError, TypeError, ValueError):
        return default


def _icon(parent: Dataset, item: Dataset, number: int, label: str) -> Iterator[SourceImage]:
    """Decode an IconImageSequence item as a dataset of its own.

    An icon is native unless its data is itself encapsulated (then it uses
    the file's compressed syntax); native icons in a compressed file are
    little endian, as the file's dataset is.
    """
    syntax = _syntax(parent)
    data = item.get("PixelData") or b""
    if syntax.is_encapsulated:
        syntax = syntax if bytes(data[:4]) == _ITEM_TAG else ExplicitVRLittleEndian
    icon = Dataset()
    icon.update({element.tag: element for element in item})
    icon.file_meta = FileMetaDataset()
    icon.file_meta.TransferSyntaxUID = syntax
    icon.set_original_encoding(
        syntax.is_implicit_VR, syntax.is_little_endian, parent.original_character_set
    )
    photometric = str(icon.get("PhotometricInterpretation", "")).strip().upper()
    for index, image in enumerate(_decode(icon, f"{label} (icon)", keep_unused_bits=False)):
        if photometric == "PALETTE COLOR" and image.ndim == 2:
            image = _palette(icon, image, label)
        yield SourceImage(
            kind=ImageKind.ICON,
            pixels=image,
            index=number + index,
            monochrome1=photometric == "MONOCHROME1",
        )
