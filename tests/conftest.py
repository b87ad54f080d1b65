"""Fixtures every test directory shares.

The browser is defined here, once: Playwright's sync API allows one running
instance per thread, and a session fixture imported into two directories'
conftest files is two fixtures (two instances in one worker).

Hypothesis's per-example deadline (200 ms) is a timing assertion: on a
loaded 2-core machine a date shift failed it. Speed is measured in bench/,
so no property test has one.
"""

from __future__ import annotations

import pytest
from hypothesis import settings

from tests.browser import browser

settings.register_profile("mricurate", deadline=None)
settings.load_profile("mricurate")

__all__ = ["browser"]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep the tests that share a module fixture on one xdist worker.

    ``--dist loadgroup`` hands ungrouped tests out one by one, so a module
    fixture (a de-identified sample, a Prefect run, real files compared) was
    built on both workers: about 20 s of the suite's time.  Tests that use one
    are grouped by their module; tests already in a group keep theirs.

    ``tryfirst``: xdist's worker reads the groups in its own hook of this
    name, which otherwise runs first (no test was grouped).  Among tryfirst
    hooks pluggy calls the last registered first, so ``tests/flows/conftest.py``
    (loaded later, at its folder's collection) has put its tests in "prefect"
    by now.
    """
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        shared = any(
            definition.scope == "module"
            for definitions in info.name2fixturedefs.values()
            for definition in definitions
        )
        if shared:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
