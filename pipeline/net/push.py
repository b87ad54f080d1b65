"""C-STORE of a release's DICOM files to a node: ``mricurate push --to NODE``.

Only a published release is pushed: the files its ``SHA256SUMS`` lists under
``dicom/``, each checked against its hash and found, symlinks refused, inside
``release/<version>/dicom``, so nothing of ``incoming/``, ``quarantine/`` or
``private/`` can be sent whatever a folder holds.  Files are sent as they
are, in chunks read from disk (``STORE_SEND_CHUNKED_DATASET``): that cannot
re-encode, so each (SOP class, transfer syntax) pair of the files is
proposed as its own context with that one syntax, and a file whose exact
pair the node did not accept fails (it is never converted).

Each file's outcome and DIMSE status is appended to the catalog
(``push_attempts``); a rerun sends only the files that have no ``sent``
attempt for that node and version.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.filereader import read_file_meta_info
from pynetdicom import _config

from pipeline.catalog import Catalog, PushAttempt, PushOutcome
from pipeline.net.contexts import push_contexts
from pipeline.net.echo import DEFAULT_TIMEOUTS, Timeouts, client_ae, refusal
from pipeline.net.errors import NetworkError
from pipeline.net.status import is_success
from pipeline.release.checksums import SUMS_NAME
from pipeline.release.versions import latest_version, versions
from pipeline.workspace import NodeRole, PacsNode, Workspace

LOG = logging.getLogger("mricurate.push")
_AREA = "dicom"


@dataclass(frozen=True)
class ReleaseFile:
    """One DICOM file of a release: its path in the version, on disk, and its sha256."""

    relpath: str
    path: Path
    sha256: str
    sop_class: str
    transfer_syntax: str


@dataclass(frozen=True)
class PushReport:
    """What one push did (counts of files; no file is named)."""

    node: str
    version: str
    files: int
    sent: int
    already_sent: int
    failed: int


def release_dicom_files(workspace: Workspace, version: str) -> list[ReleaseFile]:
    """The DICOM files of release ``version``, each checked to be the release's own.

    Raises
    ------
    NetworkError
        No such version, or a listed file that is missing, changed, a symlink,
        or outside ``release/<version>/dicom``.
    """
    if version not in versions(workspace.release):
        known = ", ".join(versions(workspace.release)) or "none yet"
        raise NetworkError(f"no release {version!r} in {workspace.release} (published: {known})")
    root = workspace.release / version
    area = (root / _AREA).resolve()
    files = []
    for line in (root / SUMS_NAME).read_text(encoding="utf-8").splitlines():
        digest, _, relpath = line.partition("  ")
        if not relpath.startswith(f"{_AREA}/"):
            continue
        path = root / relpath
        real = path.resolve()
        if path.is_symlink() or not real.is_relative_to(area) or not real.is_file():
            raise NetworkError(
                f"release {version}: {relpath} is not a file of the release's {_AREA}/ "
                "folder; a release is never edited: publish a new version"
            )
        if _sha256(real) != digest:
            raise NetworkError(
                f"release {version}: {relpath} is not the file that was published "
                f"(its SHA-256 differs from {SUMS_NAME}); nothing was sent"
            )
        meta = read_file_meta_info(real)
        files.append(
            ReleaseFile(relpath, real, digest, str(meta.MediaStorageSOPClassUID),
                        str(meta.TransferSyntaxUID))
        )  # fmt: skip
    return files


def push_release(
    workspace: Workspace,
    catalog: Catalog,
    node: PacsNode,
    *,
    ae_title: str,
    version: str | None = None,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
) -> PushReport:
    """Send release ``version`` (default: the latest) to ``node``; what it took before is skipped.

    Raises
    ------
    NetworkError
        The node has no "store" role, there is no release, or the node cannot
        be reached (nothing is recorded: the next run tries every file again).
    """
    if NodeRole.STORE not in node.roles:
        raise NetworkError(
            f'{node.name} is not a node we push to: give it roles = ["store"] in '
            f"[pacs.{node.name}] of mricurate.toml"
        )
    version = version or latest_version(workspace.release)
    if version is None:
        raise NetworkError("there is no release to push yet: run `mricurate ingest` first")
    files = release_dicom_files(workspace, version)
    done = catalog.pushed(node.name, version)
    todo = [file for file in files if file.relpath not in done]
    sent = failed = 0
    _config.STORE_SEND_CHUNKED_DATASET = True
    for contexts in push_contexts((f.sop_class, f.transfer_syntax) for f in todo):
        pairs = {(str(c.abstract_syntax), c.transfer_syntax[0]) for c in contexts}
        group = [f for f in todo if (f.sop_class, f.transfer_syntax) in pairs]
        attempts = _send_group(node, ae_title, timeouts, contexts, group, version)
        catalog.record_push(attempts)
        sent += sum(a.outcome is PushOutcome.SENT for a in attempts)
        failed += sum(a.outcome is PushOutcome.FAILED for a in attempts)
    LOG.info("pushed release %s to %s: %d sent, %d already there, %d failed", version,
             node.name, sent, len(files) - len(todo), failed)  # fmt: skip
    return PushReport(node.name, version, len(files), sent, len(files) - len(todo), failed)


def _send_group(
    node: PacsNode,
    ae_title: str,
    timeouts: Timeouts,
    contexts: Sequence[object],
    group: Sequence[ReleaseFile],
    version: str,
) -> list[PushAttempt]:
    ae = client_ae(ae_title, timeouts)
    ae.requested_contexts = list(contexts)  # type: ignore[arg-type]
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
    if not assoc.is_established:
        raise refusal(node, assoc)
    accepted = {(str(c.abstract_syntax), c.transfer_syntax[0]) for c in assoc.accepted_contexts}
    attempts = []
    try:
        for file in group:
            status: int | None = None
            if (file.sop_class, file.transfer_syntax) in accepted and assoc.is_established:
                try:
                    answer = assoc.send_c_store(file.path)
                    status = getattr(answer, "Status", None)
                except (OSError, ValueError, AttributeError, RuntimeError) as exc:
                    LOG.warning("could not send %s: %s", file.relpath, type(exc).__name__)
            outcome = (
                PushOutcome.SENT if status is not None and is_success(status)
                else PushOutcome.FAILED
            )  # fmt: skip
            attempts.append(PushAttempt(node.name, version, file.relpath, file.sha256, outcome,
                                        status, dt.datetime.now(dt.UTC)))  # fmt: skip
    finally:
        if assoc.is_established:
            assoc.release()
    return attempts


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
