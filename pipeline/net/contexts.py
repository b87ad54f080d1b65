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


def in_requestors_order(
    requested: Iterable[PresentationContext], supported: Iterable[PresentationContext]
) -> list[PresentationContext]:
    """``supported``, each context's syntaxes reordered to the requestor's preference.

    pynetdicom accepts, for each proposed context, the first of *our* syntaxes
    the requestor offers.  A sender that offers [Explicit VR, Implicit VR]
    for one context would then be told "implicit" (first in pynetdicom's list)
    and convert what it has.  Ours are put in the order the requestor gave
    them (over all its contexts for that SOP class), the rest after: the
    sender sends what it named first, as it has it.
    """
    preferred: dict[str, list[str]] = {}
    for context in requested:
        order = preferred.setdefault(str(context.abstract_syntax), [])
        order.extend(str(ts) for ts in context.transfer_syntax if str(ts) not in order)
    contexts = []
    for context in supported:
        ours = [str(ts) for ts in context.transfer_syntax]
        first = [ts for ts in preferred.get(str(context.abstract_syntax), []) if ts in ours]
        ordered = first + [ts for ts in ours if ts not in first]
        assert context.abstract_syntax is not None
        contexts.append(build_context(context.abstract_syntax, ordered))
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
