"""The audit report's tests: a real browser for the rendered page."""

from tests.browser import browser  # noqa: F401
