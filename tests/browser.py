"""A real browser for the tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browser download cannot work on a hospital network (nor in
CI here), so the tests launch the system's chromium by path.  The flags keep
it from reaching out: without them it tries Google's hosts at every start and
its background connections are refused by a closed network.  A test that
needs the browser skips, with the reason, when chromium is not installed
(``make test`` installs it).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

CHROMIUM_ARGS = (
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--metrics-recording-only",
)


def chromium_path() -> str:
    """The system chromium, or skip the test with the reason."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One headless chromium for the session; each test opens its own context."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield launched
        finally:
            launched.close()
