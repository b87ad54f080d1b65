"""C-ECHO of a configured node: ``mricurate echo NODE`` (is it there, does it take us?)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from pipeline.net.errors import NetworkError, TransientError
from pipeline.workspace import PacsNode


@dataclass(frozen=True)
class Timeouts:
    """Seconds: network (idle connection), ACSE (association set-up), DIMSE (an answer)."""

    network: float = 60.0
    acse: float = 30.0
    dimse: float = 60.0


DEFAULT_TIMEOUTS = Timeouts()


def client_ae(ae_title: str, timeouts: Timeouts) -> AE:
    """An association requestor with our AE title and the timeouts given."""
    ae = AE(ae_title=ae_title)
    ae.network_timeout = timeouts.network
    ae.acse_timeout = timeouts.acse
    ae.dimse_timeout = timeouts.dimse
    return ae


def refusal(node: PacsNode, assoc: object) -> NetworkError:
    """Why an association with ``node`` was not established, and what to check."""
    where = f"{node.name} ({node.ae_title} at {node.host}:{node.port})"
    if getattr(assoc, "is_rejected", False):
        return NetworkError(
            f"{where} rejected the association: check that it lists our AE title as a "
            "known peer (and our host), and that its AE title is spelled as it expects"
        )
    # pynetdicom marks a connection that never opened as aborted too: worth a retry.
    return TransientError(
        f"cannot reach {where}, or it aborted the association: check the host and port, "
        "that the node is running, that a firewall lets us through, and its log; then "
        "try again"
    )


def echo(node: PacsNode, *, ae_title: str, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> float:
    """Send a C-ECHO to ``node``; return the round trip in seconds.

    Raises
    ------
    NetworkError
        The node cannot be reached, refused the association, or answered a failure.
    """
    ae = client_ae(ae_title, timeouts)
    ae.add_requested_context(Verification)
    started = time.monotonic()
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
    if not assoc.is_established:
        raise refusal(node, assoc)
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    code = getattr(status, "Status", None)
    if code != 0x0000:
        answer = "no answer" if code is None else f"status 0x{code:04X}"
        raise NetworkError(f"{node.name} answered the C-ECHO with {answer}; check its log")
    return time.monotonic() - started
