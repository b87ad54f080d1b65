"""What goes wrong on the network, said so that the operator knows what to do next."""

from __future__ import annotations

from pipeline.errors import CurationError


class NetworkError(CurationError):
    """A peer cannot be reached, refused us, or the listener cannot start."""


class CohortError(CurationError):
    """A cohort file of ``mricurate pull`` is refused (named by row and column, no value)."""


class TransientError(NetworkError):
    """A failure worth trying again: the node is down, timed out, aborted, or out of resources.

    ``mricurate pull`` retries these with a growing delay, a bounded number of
    times; every other :class:`NetworkError` is final for the row it hit.
    """
