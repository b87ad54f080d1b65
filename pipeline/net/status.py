"""DIMSE status codes the listener answers and the push reads (PS3.4 Annex B, PS3.7 C)."""

from __future__ import annotations

import enum


class StoreStatus(enum.IntEnum):
    """The C-STORE statuses the listener answers with."""

    SUCCESS = 0x0000
    # The sender should retry later: our disk or catalog could not take it now.
    OUT_OF_RESOURCES = 0xA700
    # The dataset's SOP Instance UID is not the one the request announced.
    DATASET_DOES_NOT_MATCH = 0xA900
    # Not a dataset we can parse (truncated, garbage): sending it again will not help.
    CANNOT_UNDERSTAND = 0xC000


def is_success(status: int) -> bool:
    """Success, or a warning (0x0001, 0xB000-0xBFFF): the peer kept the instance."""
    return status == 0x0000 or status == 0x0001 or 0xB000 <= status <= 0xBFFF
