"""Presentation contexts: everything for the listener, exactly the files' syntaxes for a push."""

from __future__ import annotations

from collections.abc import Iterable

from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, build_context
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

#: The most presentation contexts one association may propose (PS3.8: odd ids 1-255).
MAX_CONTEXTS = 128


def listener_contexts() -> list[PresentationContext]:
    """Verification, and every storage SOP class with every transfer syntax.

    pynetdicom's defaults offer four uncompressed syntaxes only: a scanner that
    sends JPEG 2000 or JPEG-LS would be refused (or, with a converting sender,
    its pixels re-encoded).  The listener stores what it is sent, as it is.
    """
    contexts = [build_context(Verification)]
    for context in AllStoragePresentationContexts:
        assert context.abstract_syntax is not None  # every one of pynetdicom's list has one
        contexts.append(build_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES))
    return contexts


def push_contexts(pairs: Iterable[tuple[str, str]]) -> list[list[PresentationContext]]:
    """Contexts for (SOP class, transfer syntax) pairs, one per pair, in groups of 128.

    A chunked send (``STORE_SEND_CHUNKED_DATASET``) cannot re-encode: the
    accepted context must carry each file's own syntax, so each pair is proposed
    with that one syntax.  More than 128 pairs take more than one association.
    """
    unique = sorted(set(pairs))
    groups = [unique[i : i + MAX_CONTEXTS] for i in range(0, len(unique), MAX_CONTEXTS)]
    return [[build_context(sop_class, [syntax]) for sop_class, syntax in group] for group in groups]
