"""What the catalog refuses, as part of mricurate's one hierarchy (:mod:`pipeline.errors`).

Messages name an input by the first 12 hex digits of its content sha256 and
a database by its URL without the password; never by a path, a patient
identifier or a reviewer's words, because these messages reach logs, run
summaries and Prefect's records.
"""

from __future__ import annotations

from pipeline.catalog.states import ItemState
from pipeline.errors import CurationError


def short(sha256: str) -> str:
    """The opaque key an input is named by in messages."""
    return sha256[:12]


class CatalogError(CurationError):
    """The catalog cannot do what was asked; the message says what to do instead."""


class UnknownItem(CatalogError):
    """An input that was never registered."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256
        super().__init__(
            f"input {short(sha256)} is not in the catalog: register it before changing its state"
        )


class IllegalTransition(CatalogError):
    """A state change the table of allowed transitions does not have.

    Nothing of the batch it came in was applied.
    """

    def __init__(self, sha256: str, from_state: ItemState | None, to_state: ItemState) -> None:
        self.sha256 = sha256
        self.from_state = from_state
        self.to_state = to_state
        origin = from_state.value if from_state is not None else "(not registered)"
        super().__init__(
            f"input {short(sha256)} cannot move from {origin} to {to_state.value}; "
            "nothing of this batch was applied (see pipeline.catalog.states.ALLOWED)"
        )


class AccessRefused(CatalogError):
    """A login token or session the review app must refuse (unknown, used, expired, revoked).

    The message never holds the secret that was tried.
    """
