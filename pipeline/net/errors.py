"""What goes wrong on the network, said so that the operator knows what to do next."""

from __future__ import annotations

from pipeline.errors import CurationError


class NetworkError(CurationError):
    """A peer cannot be reached, refused us, or the listener cannot start."""
