"""Headless Chromium for page tests: Debian's chromium driven by Playwright, never a browser it downloads."""

import importlib.util
import os
from contextlib import contextmanager

from tests.support.skips import skip_or_fail

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    """Skip the calling test module without Playwright or chromium (with REQUIRE_SERVICES=1: fail it)."""
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the 'playwright' Python package is not installed")
    if not os.path.exists(CHROMIUM):
        missing.append(f"{CHROMIUM} is missing (apt-get install chromium)")
    if missing:
        skip_or_fail(
            "browser tests need Playwright and Debian's chromium: " + "; ".join(missing), module=True
        )


@contextmanager
def chromium_browser():
    """A headless Chromium, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
