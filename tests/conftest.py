"""Fixtures every test directory shares.

The browser is defined here, once: Playwright's sync API allows one running
instance per thread, and a session fixture imported into two directories'
conftest files is two fixtures (two instances in one worker).
"""

from __future__ import annotations

from tests.browser import browser

__all__ = ["browser"]
