"""The Storage SCP of ``mricurate listen``: scanners and PACS send, ``incoming/`` fills.

One pynetdicom AE that accepts C-ECHO and C-STORE of every storage SOP class
in every transfer syntax (:func:`pipeline.net.contexts.listener_contexts`),
from allowed calling AE titles only (``require_calling_aet``: the peer gets a
proper A-ASSOCIATE-RJ, "calling AE title not recognised") and, where hosts
are listed, from those addresses only (checked in ``EVT_REQUESTED``, where
the peer's address is known before negotiation).  Every refusal is logged
with its reason; nothing a dataset holds is.

Datasets are received straight to disk (``STORE_RECV_CHUNKED_DATASET``):
pynetdicom writes each into a ``NamedTemporaryFile`` in
``tempfile.gettempdir()``, which :func:`prepare_receiving` points at the
workspace's ``private/receiving`` (0700, on ``incoming/``'s file system).
``tempfile.tempdir`` is global to the process, so the listener is meant to
own its process: ``mricurate listen`` is one, and ``mricurate serve`` starts
the listener as a child process rather than in its own (where Prefect's
temp files would land in ``private/`` and a half-received dataset's name
would depend on what else ran first).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pynetdicom import AE, _config, evt
from pynetdicom.transport import ThreadedAssociationServer

from pipeline.catalog import Catalog
from pipeline.net import spool
from pipeline.net.contexts import in_requestors_order, listener_contexts
from pipeline.net.errors import NetworkError
from pipeline.net.receive import LOG, Peer, Receiver
from pipeline.net.status import StoreStatus
from pipeline.workspace import ListenSettings, NodeRole, Workspace

# A-ASSOCIATE-RJ: rejected permanent, by the service user, no reason given.
_REJECT_HOST = (0x01, 0x01, 0x01)
# The PDU size we offer (the peer's own limit still applies to what it sends).
_MAX_PDU = 256 * 1024


@dataclass(frozen=True)
class ListenOptions:
    """Everything the listener needs, from the config and the command line."""

    ae_title: str
    address: str
    port: int
    allowed_ae_titles: tuple[str, ...]
    allowed_hosts: tuple[str, ...] = ()
    network_timeout: float = 60.0
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0

    @classmethod
    def of(
        cls,
        workspace: Workspace,
        *,
        port: int | None = None,
        ae_title: str | None = None,
        address: str | None = None,
        allow_ae: Iterable[str] = (),
    ) -> ListenOptions:
        """The workspace's ``[listen]``, its sender nodes' AE titles, and the overrides given."""
        settings: ListenSettings = workspace.config.listen
        senders = [n.ae_title for n in workspace.config.pacs if NodeRole.SENDER in n.roles]
        titles = dict.fromkeys([*settings.allowed_ae_titles, *senders, *allow_ae])
        return cls(
            ae_title=ae_title or settings.ae_title,
            address=address or settings.address,
            port=settings.port if port is None else port,
            allowed_ae_titles=tuple(titles),
            allowed_hosts=settings.allowed_hosts,
            network_timeout=settings.network_timeout,
            acse_timeout=settings.acse_timeout,
            dimse_timeout=settings.dimse_timeout,
        )


def prepare_receiving(workspace: Workspace) -> Path:
    """Make ``private/receiving`` (0700, emptied) this process's temp folder; return it.

    What an association cut off mid-dataset left there is removed: it is a
    part of a dataset (PHI), never answered "stored".  The folder must be on
    ``incoming/``'s file system, so that storing an instance is a rename.
    """
    folder = workspace.receiving
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    for leftover in folder.iterdir():
        if leftover.is_file() or leftover.is_symlink():
            leftover.unlink()
    if folder.stat().st_dev != workspace.incoming.stat().st_dev:
        raise NetworkError(
            f"{folder} and {workspace.incoming} are on different file systems: a received "
            "instance could not be renamed into incoming/ atomically; keep private/ and "
            "incoming/ on one file system"
        )
    # pynetdicom's NamedTemporaryFile() takes tempfile.gettempdir(); this process is the
    # listener's own (see the module's docstring), so setting it here is deliberate.
    tempfile.tempdir = str(folder)
    spool.install()  # a write that fails there (disk full) answers failure, leaves nothing
    return folder


class Listener:
    """A running Storage SCP over one workspace (:meth:`start`, then :meth:`stop`)."""

    def __init__(self, workspace: Workspace, catalog: Catalog, options: ListenOptions) -> None:
        if not options.allowed_ae_titles:
            raise NetworkError(
                "no calling AE title is allowed to send, so every association would be "
                "refused: list the scanners' and PACS' AE titles in [listen] "
                "allowed_ae_titles of mricurate.toml, or give --allow-ae TITLE"
            )
        self.workspace = workspace
        self.options = options
        self.receiver = Receiver(workspace.incoming, catalog)
        self._server: ThreadedAssociationServer | None = None
        self._contexts = listener_contexts()

    def _ae(self) -> AE:
        _config.STORE_RECV_CHUNKED_DATASET = True
        # pynetdicom logs the identifiers of requests and responses (UIDs, patient IDs
        # of queries) at INFO and DEBUG: never, whatever the log level.
        _config.LOG_REQUEST_IDENTIFIERS = False
        _config.LOG_RESPONSE_IDENTIFIERS = False
        ae = AE(ae_title=self.options.ae_title)
        ae.supported_contexts = self._contexts
        ae.require_calling_aet = list(self.options.allowed_ae_titles)
        ae.network_timeout = self.options.network_timeout
        ae.acse_timeout = self.options.acse_timeout
        ae.dimse_timeout = self.options.dimse_timeout
        ae.maximum_pdu_size = _MAX_PDU
        return ae

    def start(self) -> int:
        """Listen (in threads); return the port, the one the OS chose for port 0."""
        prepare_receiving(self.workspace)
        ae = self._ae()
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, self._requested),
            (evt.EVT_REJECTED, self._log_rejected),
            (evt.EVT_C_STORE, self._store),
        ]
        try:
            self._server = ae.start_server(
                (self.options.address, self.options.port), block=False, evt_handlers=handlers
            )
        except OSError as exc:
            raise NetworkError(
                f"cannot listen on {self.options.address} port {self.options.port}: "
                f"{exc.strerror}; choose another port (--port) or stop what holds it"
            ) from None
        assert self._server is not None
        port = int(self._server.server_address[1])
        LOG.info("listening as %s on %s port %d", self.options.ae_title, self.options.address,
                 port)  # fmt: skip
        return port

    def stop(self) -> None:
        """Stop listening; associations under way are aborted (their senders retry)."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _peer(self, event: evt.Event) -> Peer:
        requestor = event.assoc.requestor
        return Peer(requestor.ae_title, requestor.address)

    def _requested(self, event: evt.Event) -> None:
        """Before negotiation: refuse a host not listed; prefer the sender's syntaxes."""
        if self._refuse_host(event):
            return
        request = event.assoc.requestor.primitive
        if request is not None:
            event.assoc.acceptor.supported_contexts = in_requestors_order(
                request.presentation_context_definition_list, self._contexts
            )

    def _refuse_host(self, event: evt.Event) -> bool:
        allowed = self.options.allowed_hosts
        if not allowed:
            return False
        request = event.assoc.requestor.primitive
        calling = request.calling_ae_title if request is not None else "?"
        peer = Peer(calling, event.assoc.requestor.address)
        if peer.address not in allowed:
            LOG.warning("refused an association from %s (AE %s): the host is not in "
                        "listen.allowed_hosts", peer.address, peer.ae_title)  # fmt: skip
            event.assoc.acse.send_reject(*_REJECT_HOST)
            return True
        return False

    def _log_rejected(self, event: evt.Event) -> None:
        peer = self._peer(event)
        LOG.warning("refused an association from %s (AE %s): the calling AE title is not "
                    "allowed (listen.allowed_ae_titles, a sender node, --allow-ae)",
                    peer.address, peer.ae_title)  # fmt: skip

    def _store(self, event: evt.Event) -> int:
        try:
            announced = str(getattr(event.request, "AffectedSOPInstanceUID", ""))
            return int(self.receiver.store(event.dataset_path, announced, self._peer(event)).status)
        except Exception as exc:  # a failure status, never a success, for anything unforeseen
            LOG.error("could not store an instance: %s; answered 'out of resources'",
                      type(exc).__name__)  # fmt: skip
            return int(StoreStatus.OUT_OF_RESOURCES)
