"""The table of allowed transitions, edge by edge, as data and through a real catalog."""

from __future__ import annotations

import itertools

import pytest

from pipeline.catalog import (
    ALLOWED,
    DECISION_MOVES,
    Catalog,
    IllegalTransition,
    InputKind,
    ItemState,
    StateChange,
    UnknownItem,
)
from tests.catalog.conftest import sha

S = ItemState
# The edges the brief of issue 10 names, written out independently of the table.
EXPECTED = {
    (None, S.NEW),
    (S.NEW, S.PROCESSED),
    (S.PROCESSED, S.NEEDS_REVIEW),
    (S.PROCESSED, S.VERIFIED),
    (S.NEEDS_REVIEW, S.VERIFIED),
    (S.VERIFIED, S.RELEASED),
    (S.QUARANTINED, S.NEW),
    (S.RELEASED, S.PROCESSED),
    *((state, S.QUARANTINED) for state in S if state is not S.WITHDRAWN),
    *((state, S.WITHDRAWN) for state in S if state is not S.WITHDRAWN),
}
# A legal way from "not registered" to each state (after register: NEW).
PATH = {
    S.NEW: [],
    S.PROCESSED: [S.PROCESSED],
    S.NEEDS_REVIEW: [S.PROCESSED, S.NEEDS_REVIEW],
    S.VERIFIED: [S.PROCESSED, S.VERIFIED],
    S.RELEASED: [S.PROCESSED, S.VERIFIED, S.RELEASED],
    S.QUARANTINED: [S.QUARANTINED],
    S.WITHDRAWN: [S.WITHDRAWN],
}


def test_the_table_is_exactly_the_edges_of_the_issue() -> None:
    table = {(before, after) for before, targets in ALLOWED.items() for after in targets}
    assert table == EXPECTED
    assert set(ALLOWED) == {None, *S}
    assert ALLOWED[S.WITHDRAWN] == frozenset()  # withdrawal is final


def test_every_decision_moves_along_an_allowed_edge() -> None:
    for moves in DECISION_MOVES.values():
        for before, after in moves.items():
            assert after in ALLOWED[before], (before, after)


def test_every_edge_through_the_catalog(catalog: Catalog, run: int) -> None:
    """All 49 (state, state) pairs: the allowed ones are applied, the others refused."""
    pairs = list(itertools.product(S, S))
    items = {pair: sha(pair) for pair in pairs}
    assert catalog.register([(h, InputKind.DICOM, 1) for h in items.values()], run) == set(
        items.values()
    )
    catalog.transition(
        [StateChange(items[pair], step) for pair in pairs for step in PATH[pair[0]]], run
    )
    for (before, after), item in items.items():
        assert catalog.state_of(item) is before
        if after in ALLOWED[before]:
            catalog.transition([StateChange(item, after)], run)
            assert catalog.state_of(item) is after
            assert catalog.history(item)[-1].from_state is before
        else:
            with pytest.raises(IllegalTransition) as refused:
                catalog.transition([StateChange(item, after)], run)
            assert (refused.value.from_state, refused.value.to_state) == (before, after)
            assert catalog.state_of(item) is before


def test_a_refused_edge_says_which_input_and_which_states(catalog: Catalog, run: int) -> None:
    item = sha("refused")
    catalog.register([(item, InputKind.TWIX, 5)], run)
    with pytest.raises(IllegalTransition) as refused:
        catalog.transition([StateChange(item, S.RELEASED)], run)
    message = str(refused.value)
    assert item[:12] in message and item not in message
    assert "from new to released" in message
    assert catalog.history(item)[-1].to_state is S.NEW


def test_only_registration_leads_out_of_nothing(catalog: Catalog, run: int) -> None:
    with pytest.raises(UnknownItem, match=sha("never")[:12]):
        catalog.transition([StateChange(sha("never"), S.NEW)], run)
