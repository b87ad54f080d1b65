"""Fixtures every test directory shares.

The browser is defined here, once: Playwright's sync API allows one running
instance per thread, and a session fixture imported into two directories'
conftest files is two fixtures (two instances in one worker).

Hypothesis's per-example deadline (200 ms) is a timing assertion: on a
loaded 2-core machine a date shift failed it. Speed is measured in bench/,
so no property test has one.
"""

from __future__ import annotations

from hypothesis import settings

from tests.browser import browser

settings.register_profile("mricurate", deadline=None)
settings.load_profile("mricurate")

__all__ = ["browser"]
