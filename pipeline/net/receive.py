"""One received instance made durable in ``incoming/``, once per SOP Instance UID.

pynetdicom writes a C-STORE's dataset straight to a temp file as it arrives
(``STORE_RECV_CHUNKED_DATASET``), in the DICOM File Format with the accepted
context's transfer syntax: the bytes as they were sent, never decoded or
re-encoded.  :meth:`Receiver.store` then

1. hashes the file and fsyncs it (its content hash is its name and its key);
2. reads its header with ``stop_before_pixels`` and walks every top-level
   element to the end of the file (large values, and the fragments of
   encapsulated pixel data, are seeked over, not read), so a stream cut
   short or garbage is refused with a failure status;
3. if the catalog has the SOP Instance UID already (the same instance sent
   again, in this or another transfer syntax), answers success and stores
   nothing;
4. renames the file to ``incoming/<sha256>.dcm`` (the temp folder is on the
   same file system) and fsyncs ``incoming/``;
5. records the receipt (sending AE title, address, time) in the catalog;

and only then answers success.  A failure at any step leaves nothing under
a final name (the temp file is removed by pynetdicom), so a sender told
"failure" may send again.

The rename comes before the catalog row: a crash between them leaves a
complete file that discovery ingests and no row, so the same instance sent
again in another syntax would be stored a second time (two inputs of one
UID, which ingest handles as duplicates).  The other order would lose an
instance for good: a row without its file answers every resend "stored".
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import logging
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble
from pydicom.uid import UID

from pipeline.catalog import Catalog, Receipt
from pipeline.catalog.errors import CatalogError, short
from pipeline.errors import StorageError
from pipeline.net.spool import describe, failure
from pipeline.net.status import StoreStatus

LOG = logging.getLogger("mricurate.listen")
_CHUNK = 1 << 20
_SKIP = 4096  # values larger than this are seeked over, not read, by the walk
_UNDEFINED = 0xFFFFFFFF
# The Sequence Delimitation Item (FFFE,E0DD), length 0, little endian: how an
# undefined-length value (encapsulated pixel data, a sequence) ends.
_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_PIXEL_DATA = 0x7FE00010
_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD


class ReceiveOutcome(enum.Enum):
    """What the listener did with one C-STORE."""

    STORED = "stored"  # new: durable in incoming/ and recorded
    ALREADY_STORED = "already-stored"  # its SOP Instance UID was stored before
    UNREADABLE = "unreadable"  # not a whole dataset we can parse
    MISMATCH = "mismatch"  # the dataset's UID is not the request's
    NOT_WRITTEN = "not-written"  # our disk or catalog failed: the sender retries


@dataclass(frozen=True)
class Received:
    """The answer to one C-STORE: what was done, the status sent, the file's content hash."""

    outcome: ReceiveOutcome
    status: StoreStatus
    sha256: str


@dataclass(frozen=True)
class Peer:
    """Who sent it: the calling AE title and the host address (not PHI: a machine)."""

    ae_title: str
    address: str


class Receiver:
    """Stores received instances of one workspace (thread-safe: one per listener).

    Parameters
    ----------
    incoming : Path
        The workspace's ``incoming/``.
    catalog : Catalog
        The workspace's catalog (receipts are recorded there).
    """

    def __init__(self, incoming: Path, catalog: Catalog) -> None:
        self.incoming = incoming
        self.catalog = catalog
        # Associations run in threads: the check for a UID and the rename that
        # stores it are one step, or two copies of one instance could both land.
        self._lock = threading.Lock()

    def store(self, path: Path, announced_uid: str, peer: Peer) -> Received:
        """Make the dataset file at ``path`` durable in ``incoming/``, or say why not."""
        unwritten = failure(path)
        if unwritten is not None:  # our disk, not the sender's data (pipeline.net.spool)
            LOG.error("could not write an instance from %s into %s: %s; answered 'out of "
                      "resources', the sender will retry: free room on that disk",
                      peer.ae_title, path.parent, describe(unwritten))  # fmt: skip
            return Received(ReceiveOutcome.NOT_WRITTEN, StoreStatus.OUT_OF_RESOURCES, "")
        try:
            sha256, size = _hash_and_sync(path)
        except OSError as exc:
            LOG.error("received an instance that could not be read back (%s)", exc.strerror)
            return Received(ReceiveOutcome.NOT_WRITTEN, StoreStatus.OUT_OF_RESOURCES, "")
        header = read_whole(path)
        if header is None:
            LOG.warning("refused an instance from %s: not a whole DICOM dataset "
                        "(content %s)", peer.ae_title, short(sha256))  # fmt: skip
            return Received(ReceiveOutcome.UNREADABLE, StoreStatus.CANNOT_UNDERSTAND, sha256)
        sop_uid, sop_class, syntax = header
        if sop_uid != announced_uid.strip():
            LOG.warning("refused an instance from %s: its SOP Instance UID is not the "
                        "request's (content %s)", peer.ae_title, short(sha256))  # fmt: skip
            return Received(ReceiveOutcome.MISMATCH, StoreStatus.DATASET_DOES_NOT_MATCH, sha256)
        target = self.incoming / f"{sha256}.dcm"
        with self._lock:
            try:
                if self.catalog.received(sop_uid) is not None:
                    return Received(ReceiveOutcome.ALREADY_STORED, StoreStatus.SUCCESS, sha256)
                created = not target.exists()
                if created:
                    os.rename(path, target)
                _sync_folder(self.incoming)
                try:
                    self.catalog.record_received(
                        Receipt(sop_uid, sha256, size, sop_class, syntax, peer.ae_title,
                                peer.address, dt.datetime.now(dt.UTC))
                    )  # fmt: skip
                except BaseException:
                    if created:
                        target.unlink(missing_ok=True)
                        _sync_folder(self.incoming)
                    raise
            except (OSError, StorageError, CatalogError) as exc:
                LOG.error("could not store an instance from %s (content %s): %s; answered "
                          "'out of resources', the sender will retry", peer.ae_title,
                          short(sha256), _why(exc))  # fmt: skip
                return Received(ReceiveOutcome.NOT_WRITTEN, StoreStatus.OUT_OF_RESOURCES, sha256)
        LOG.info("stored %s from %s", short(sha256), peer.ae_title)
        return Received(ReceiveOutcome.STORED, StoreStatus.SUCCESS, sha256)


def _why(exc: BaseException) -> str:
    """A reason without a path (a path in incoming/ is a content hash, but say less)."""
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__


def _hash_and_sync(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
        os.fsync(handle.fileno())
    return digest.hexdigest(), size


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_whole(path: Path) -> tuple[str, str, str] | None:
    """(SOP Instance UID, SOP Class UID, transfer syntax) of a whole dataset file, else None.

    The header is read with ``stop_before_pixels``; then every top-level
    element is walked to the end of the file, values over 4 KiB seeked over
    (an uncompressed 100 MB pixel value is never read into memory), so a file
    cut short inside any element, or with bytes after its last element that
    are not one, is refused.  Encapsulated pixel data (undefined length) is
    walked fragment by fragment, each item's length seeked over, to its
    Sequence Delimitation Item (:func:`_skip_fragments`): a 100 MB JPEG 2000
    value is never read either.  Sequences of undefined length (small) are
    read by pydicom's walk to find their end.
    """
    try:
        header = dcmread(path, stop_before_pixels=True)
        syntax = UID(str(header.file_meta.TransferSyntaxUID))
        sop_uid = str(header.SOPInstanceUID)
        sop_class = str(header.SOPClassUID)
        if not sop_uid or not sop_class:
            return None
        if syntax.is_deflated:  # a zlib stream: the walk cannot seek inside it
            return sop_uid, sop_class, str(syntax)
        size = path.stat().st_size
        with open(path, "rb") as fp:
            read_preamble(fp, False)
            _read_file_meta_info(fp)
            if not _walk(fp, syntax, size):
                return None
    except (InvalidDicomError, AttributeError, ValueError, KeyError, EOFError, OSError):
        return None
    except Exception:  # pydicom raises many kinds on garbage; none of them is ours
        return None
    return sop_uid, sop_class, str(syntax)


def _walk(fp: BinaryIO, syntax: UID, size: int) -> bool:
    """Walk the dataset from ``fp``'s position to the end of the file; False: not whole.

    Whole: the last element (or the last encapsulated value's delimiter)
    ends exactly at the end of the file; a few bytes after it that are not an
    element (pydicom's walk stops silently on them) are refused too.
    """
    endian = "<" if syntax.is_little_endian else ">"
    end = fp.tell()
    while True:
        at_pixels = False

        def encapsulated(tag: int, vr: str | None, length: int) -> bool:
            nonlocal at_pixels
            at_pixels = tag == _PIXEL_DATA and length == _UNDEFINED
            return at_pixels

        length = 0
        for element in data_element_generator(
            fp, syntax.is_implicit_VR, syntax.is_little_endian, stop_when=encapsulated,
            defer_size=_SKIP,
        ):  # fmt: skip
            length = getattr(element, "length", 0)
            tell = getattr(element, "value_tell", 0)
            if length != _UNDEFINED and tell + length > size:
                return False
            end = fp.tell()  # past the value (a deferred one is seeked over)
        if not at_pixels:
            break
        # stop_when left fp at the element's start: skip its header, then its items.
        if not _skip_pixel_header(fp) or not _skip_fragments(fp, endian, size):
            return False
        end, length = fp.tell(), 0
    if end != size:
        return False
    # pydicom reads an undefined-length value (a sequence) to the end of the file when
    # its delimiter is missing: a cut-off one ends without it.
    if length == _UNDEFINED and syntax.is_little_endian:
        fp.seek(size - len(_SEQUENCE_END))
        if fp.read(len(_SEQUENCE_END)) != _SEQUENCE_END:
            return False
    return True


def _skip_pixel_header(fp: BinaryIO) -> bool:
    """Past (7FE0,0010)'s tag, VR and length, explicit (12 bytes) or implicit (8).

    The encoding is read from the bytes, not the transfer syntax: pydicom
    reads a dataset whose syntax says explicit but is written implicit (some
    real files are), and so must this.
    """
    head = fp.read(8)
    if len(head) != 8:
        return False
    if head[4:8] == b"\xff\xff\xff\xff":
        return True  # implicit: tag, then the undefined length
    rest = fp.read(4)
    return head[4:6] in (b"OB", b"OW", b"UN") and rest == b"\xff\xff\xff\xff"


def _skip_fragments(fp: BinaryIO, endian: str, size: int) -> bool:
    """Seek over the items of an encapsulated value to its delimiter; False: cut or garbage.

    PS3.5 A.4: a Basic Offset Table item and fragment items, each (FFFE,E000)
    with a defined length, then the Sequence Delimitation Item (FFFE,E0DD)
    of length 0.
    """
    while True:
        head = fp.read(8)
        if len(head) != 8:
            return False
        group, element, length = struct.unpack(f"{endian}HHL", head)
        tag = group << 16 | element
        if tag == _SEQUENCE_DELIMITER:
            return bool(length == 0)
        if tag != _ITEM or length == _UNDEFINED or fp.tell() + length > size:
            return False
        fp.seek(length, os.SEEK_CUR)
