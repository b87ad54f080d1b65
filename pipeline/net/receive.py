"""One received instance made durable in ``incoming/``, once per SOP Instance UID.

pynetdicom writes a C-STORE's dataset straight to a temp file as it arrives
(``STORE_RECV_CHUNKED_DATASET``), in the DICOM File Format with the accepted
context's transfer syntax: the bytes as they were sent, never decoded or
re-encoded.  :meth:`Receiver.store` then, in the association's own thread,

1. hashes the file and fsyncs it (its content hash is its name and its key);
2. walks every top-level element to the end of the file once, taking the
   SOP Instance and Class UIDs on the way (a file up to 8 MiB is read whole
   for it; in a larger one, large values and the fragments of encapsulated
   pixel data are seeked over, not read), so a stream cut short or garbage
   is refused with a failure status;

and hands it to the group commit, which, for every instance waiting at that
moment (several associations send at once: a PACS, several scanners), in
one catalog transaction

3. inserts the receipts (sending AE title, address, time, syntax) whose SOP
   Instance UID is new (the same instance sent again, in this or another
   transfer syntax, is answered success and stored once);
4. renames their files to ``incoming/<sha256>.dcm`` (the temp folder is on
   the same file system) and fsyncs ``incoming/`` once for the group;
5. commits;

and only then is each answered success.  A failure at any step leaves
nothing under a final name (a file renamed for a commit that failed is
removed again; the temp file is removed by pynetdicom), so a sender told
"failure" may send again.

The group commit has no thread of its own: the first C-STORE handler that
finds no commit under way leads one for everything queued (its own instance
included); the others wait for it, and one of those that arrived meanwhile
leads the next.  One association alone is never delayed (it leads every
commit); N at once share one folder fsync and one catalog commit.

The rename is made durable before the commit: a crash between them leaves a
complete file that discovery ingests and no row, so the same instance sent
again in another syntax would be stored a second time (two inputs of one
UID, which ingest handles as duplicates).  The other order would lose an
instance for good: a row without its file answers every resend "stored".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import hashlib
import logging
import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

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
_SOP_CLASS_UID = 0x00080016
_SOP_INSTANCE_UID = 0x00080018


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


@dataclass
class _Pending:
    """One checked, fsynced instance waiting for its group's commit."""

    path: Path
    receipt: Receipt
    peer: Peer
    outcome: ReceiveOutcome | None = None
    why: str = field(default="")


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
        # The group commit (see the module's docstring): instances waiting for the
        # next commit, and whether one is under way (its leader commits outside the lock).
        self._turn = threading.Condition()
        self._queue: list[_Pending] = []
        self._committing = False
        #: Group commits done (each made one or more instances durable and recorded).
        self.commits = 0

    @property
    def waiting(self) -> int:
        """How many instances wait for the next group commit (one is under way)."""
        with self._turn:
            return len(self._queue)

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
        receipt = Receipt(sop_uid, sha256, size, sop_class, syntax, peer.ae_title, peer.address,
                          dt.datetime.now(dt.UTC))  # fmt: skip
        pending = _Pending(path, receipt, peer)
        self._commit_with_group(pending)
        if pending.outcome is ReceiveOutcome.NOT_WRITTEN:
            LOG.error("could not store an instance from %s (content %s): %s; answered "
                      "'out of resources', the sender will retry", peer.ae_title,
                      short(sha256), pending.why)  # fmt: skip
            return Received(ReceiveOutcome.NOT_WRITTEN, StoreStatus.OUT_OF_RESOURCES, sha256)
        if pending.outcome is ReceiveOutcome.ALREADY_STORED:
            return Received(ReceiveOutcome.ALREADY_STORED, StoreStatus.SUCCESS, sha256)
        LOG.info("stored %s from %s", short(sha256), peer.ae_title)
        return Received(ReceiveOutcome.STORED, StoreStatus.SUCCESS, sha256)

    def _commit_with_group(self, pending: _Pending) -> None:
        """Return once ``pending``'s group is committed (or failed): lead it, or wait for it."""
        with self._turn:
            self._queue.append(pending)
            while pending.outcome is None and self._committing:
                self._turn.wait()
            if pending.outcome is not None:
                return
            self._committing = True
            group, self._queue = self._queue, []
        try:
            self._commit(group)
        finally:
            for waiting in group:  # whatever went wrong, nobody waits for ever
                if waiting.outcome is None:
                    waiting.outcome, waiting.why = ReceiveOutcome.NOT_WRITTEN, "interrupted"
            with self._turn:
                self._committing = False
                self._turn.notify_all()

    def _commit(self, group: Sequence[_Pending]) -> None:
        """Rename the group's new instances into ``incoming/``, fsync it, commit their receipts."""
        renamed: list[Path] = []

        def make_durable(new: Sequence[Receipt]) -> None:
            by_receipt = {id(p.receipt): p for p in group}
            for receipt in new:
                target = self.incoming / f"{receipt.sha256}.dcm"
                if not target.exists():  # else the same bytes are there (an earlier crash)
                    os.rename(by_receipt[id(receipt)].path, target)
                    renamed.append(target)
            _sync_folder(self.incoming)

        try:
            new = self.catalog.record_received([p.receipt for p in group], make_durable)
        except BaseException as exc:
            if renamed:  # not committed: no file of ours without its record
                _unlink_all(renamed, self.incoming)
            if not isinstance(exc, (OSError, StorageError, CatalogError)):
                raise
            for pending in group:
                pending.outcome, pending.why = ReceiveOutcome.NOT_WRITTEN, _why(exc)
            return
        self.commits += 1
        # Which receipt of a UID sent twice in one group was new: the first (the catalog's rule).
        first: set[int] = set()
        seen: set[str] = set()
        for pending in group:
            uid = pending.receipt.sop_instance_uid
            if uid in new and uid not in seen:
                first.add(id(pending))
            seen.add(uid)
        for pending in group:
            new_here = id(pending) in first
            pending.outcome = ReceiveOutcome.STORED if new_here else ReceiveOutcome.ALREADY_STORED


def _unlink_all(paths: Sequence[Path], folder: Path) -> None:
    """Remove files renamed for a commit that failed: no file of ours without its record."""
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            LOG.error("could not remove %s after a failed commit; remove it by hand",
                      short(path.stem))  # fmt: skip
    with contextlib.suppress(OSError):  # the files are gone; a failed fsync changes nothing
        _sync_folder(folder)


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

    One pass: the File Meta Information, then every top-level element
    walked to the end of the file (the two UIDs are taken on the way), values
    over 4 KiB seeked over (an uncompressed 100 MB pixel value is never read
    into memory), so a file cut short inside any element, or with bytes
    after its last element that are not one, is refused.  Encapsulated pixel
    data (undefined length) is walked fragment by fragment, each item's
    length seeked over, to its Sequence Delimitation Item
    (:func:`_skip_fragments`): a 100 MB JPEG 2000 value is never read
    either.  Sequences of undefined length (small) are read by pydicom's
    walk to find their end.  A deflated dataset (a zlib stream the walk
    cannot seek in) is read whole by pydicom instead.

    The walk is first tried without pydicom (:func:`_quick_walk`, files up
    to 8 MiB: the listener is CPU-bound); only its "whole" is taken, and
    whatever it is unsure of or refuses is walked again by pydicom, whose
    verdict stands.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fp:
            read_preamble(fp, False)
            meta = _read_file_meta_info(fp)
            syntax = UID(str(meta.TransferSyntaxUID))
            if syntax.is_deflated:
                return _read_deflated(path, syntax)
            start = fp.tell()
            uids = _quick_walk(fp, start, size, syntax)
            if uids is None:
                fp.seek(start)
                uids = _walk(fp, syntax, size)
    except (AttributeError, ValueError, KeyError, EOFError, OSError):
        return None
    except Exception:  # pydicom raises many kinds on garbage; none of them is ours
        return None
    if uids is None:
        return None
    sop_uid, sop_class = uids
    if not sop_uid or not sop_class:
        return None
    return sop_uid, sop_class, str(syntax)


def _read_deflated(path: Path, syntax: UID) -> tuple[str, str, str] | None:
    from pydicom import dcmread

    header = dcmread(path, stop_before_pixels=True)
    sop_uid, sop_class = str(header.SOPInstanceUID), str(header.SOPClassUID)
    return (sop_uid, sop_class, str(syntax)) if sop_uid and sop_class else None


def _uid(value: object) -> str:
    """A UI value as the bytes hold it, without its padding ('' when absent or not bytes)."""
    if not isinstance(value, bytes):
        return ""
    return value.rstrip(b"\x00 ").decode("ascii", "replace").strip()


def _implicit(fp: BinaryIO, labelled_implicit: bool) -> bool:
    """Whether the dataset at ``fp`` is written implicit VR: read from its first element.

    As pydicom does: some real files say explicit in their meta and are
    written implicit (and the other way round); the first element's VR
    position holds two capital letters exactly when it is explicit.
    """
    start = fp.tell()
    head = fp.read(6)
    fp.seek(start)
    if len(head) < 6:
        return labelled_implicit
    return not (0x40 < head[4] < 0x5B and 0x40 < head[5] < 0x5B)


def _walk(fp: BinaryIO, syntax: UID, size: int) -> tuple[str, str] | None:
    """Walk the dataset from ``fp``'s position to the end of the file; None: not whole.

    Whole: the last element (or the last encapsulated value's delimiter)
    ends exactly at the end of the file; a few bytes after it that are not an
    element (pydicom's walk stops silently on them) are refused too.
    Returns the top-level SOP Instance UID and SOP Class UID ('' if absent).
    """
    endian = "<" if syntax.is_little_endian else ">"
    implicit = _implicit(fp, syntax.is_implicit_VR)
    end = fp.tell()
    sop_uid = sop_class = ""
    while True:
        at_pixels = False

        def encapsulated(tag: int, vr: str | None, length: int) -> bool:
            nonlocal at_pixels
            at_pixels = tag == _PIXEL_DATA and length == _UNDEFINED
            return at_pixels

        length = 0
        for element in data_element_generator(
            fp, implicit, syntax.is_little_endian, stop_when=encapsulated, defer_size=_SKIP,
        ):  # fmt: skip
            length = getattr(element, "length", 0)
            tell = getattr(element, "value_tell", 0)
            if length != _UNDEFINED and tell + length > size:
                return None
            if element.tag == _SOP_INSTANCE_UID:
                sop_uid = _uid(element.value)
            elif element.tag == _SOP_CLASS_UID:
                sop_class = _uid(element.value)
            end = fp.tell()  # past the value (a deferred one is seeked over)
        if not at_pixels:
            break
        # stop_when left fp at the element's start: skip its header, then its items.
        if not _skip_pixel_header(fp) or not _skip_fragments(fp, endian, size):
            return None
        end, length = fp.tell(), 0
    if end != size:
        return None
    # pydicom reads an undefined-length value (a sequence) to the end of the file when
    # its delimiter is missing: a cut-off one ends without it.
    if length == _UNDEFINED and syntax.is_little_endian:
        fp.seek(size - len(_SEQUENCE_END))
        if fp.read(len(_SEQUENCE_END)) != _SEQUENCE_END:
            return None
    return sop_uid, sop_class


# VRs whose explicit header has 2 reserved bytes and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset(
    [b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"]
)
_ITEM_DELIMITER = 0xFFFEE00D
_QUICK_MAX = 8 << 20  # bytes: a file larger than this is walked by pydicom (seeking)


class _Unsure(Exception):
    """The quick walk met an encoding it does not follow: pydicom's walk decides."""


def _quick_walk(fp: BinaryIO, start: int, size: int, syntax: UID) -> tuple[str, str] | None:
    """The walk of :func:`_walk` on the file's bytes, without pydicom; None: not sure it is whole.

    For files up to :data:`_QUICK_MAX` only, read whole (a slice is ~130 KB):
    a larger one is walked by pydicom, which seeks over its values (mapping
    the file instead would bring its pages into our memory: the kernel maps
    large folios around each fragment header touched).  Undefined-length
    sequences and their items are followed to their delimiters; what this
    does not follow (a sequence in another encoding than its dataset, an
    undefined-length value that is neither a sequence nor pixel data, a VR
    that is not two capital letters) gives None.
    """
    if size <= start or size > _QUICK_MAX:
        return None
    implicit = _implicit(fp, syntax.is_implicit_VR)
    fp.seek(0)
    data = fp.read()
    if len(data) != size:
        return None
    walk = _Walk(data, size, implicit, "<" if syntax.is_little_endian else ">")
    try:
        if walk.dataset(start, top=True) != size:
            return None
    except (_Unsure, struct.error):
        return None
    return walk.sop_uid, walk.sop_class


class _Walk:
    """A dataset's element headers, walked in a file's bytes (see :func:`_quick_walk`)."""

    def __init__(self, view: bytes, size: int, implicit: bool, endian: str) -> None:
        self.view, self.size, self.implicit = view, size, implicit
        self.tag_length = struct.Struct(f"{endian}HHL")
        self.short_length = struct.Struct(f"{endian}H")
        self.long_length = struct.Struct(f"{endian}L")
        self.sop_uid = self.sop_class = ""

    def dataset(self, pos: int, *, top: bool) -> int:
        """Past the dataset at ``pos``: the end of file (top) or its Item Delimitation Item."""
        view, size = self.view, self.size
        while pos < size:
            if pos + 8 > size:
                raise _Unsure
            group, element, length = self.tag_length.unpack_from(view, pos)
            tag = group << 16 | element
            vr = b""
            if group == 0xFFFE:
                if top or tag != _ITEM_DELIMITER or length != 0:
                    raise _Unsure
                return pos + 8
            if self.implicit:
                pos += 8
            else:
                vr = view[pos + 4 : pos + 6]
                if not (0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B):
                    raise _Unsure
                if vr in _LONG_VRS:
                    length = self.long_length.unpack_from(view, pos + 8)[0]
                    pos += 12
                else:
                    length = self.short_length.unpack_from(view, pos + 6)[0]
                    pos += 8
            if length != _UNDEFINED:
                if pos + length > size:
                    raise _Unsure
                if top and tag in (_SOP_INSTANCE_UID, _SOP_CLASS_UID):
                    value = _uid(view[pos : pos + length])
                    if tag == _SOP_INSTANCE_UID:
                        self.sop_uid = value
                    else:
                        self.sop_class = value
                pos += length
            elif tag == _PIXEL_DATA:
                pos = self.items(pos, fragments=True)
            elif vr == b"SQ" or (self.implicit and not vr):
                pos = self.items(pos, fragments=False)
            else:
                raise _Unsure
        if not top:
            raise _Unsure  # the file ended inside a sequence item
        return pos

    def items(self, pos: int, *, fragments: bool) -> int:
        """Past the Sequence Delimitation Item of the items (or fragments) at ``pos``."""
        view, size = self.view, self.size
        while True:
            if pos + 8 > size:
                raise _Unsure
            group, element, length = self.tag_length.unpack_from(view, pos)
            tag = group << 16 | element
            pos += 8
            if tag == _SEQUENCE_DELIMITER:
                if length != 0:
                    raise _Unsure
                return pos
            if tag != _ITEM:
                raise _Unsure
            if length != _UNDEFINED:
                if pos + length > size:
                    raise _Unsure
                pos += length
            elif fragments:
                raise _Unsure
            else:
                pos = self.dataset(pos, top=False)


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
