"""Browser tests: Debian's Chromium driven by Playwright (``executable_path``, no downloaded browser).

They skip, saying why, where Chromium or Playwright is missing; CI sets ``BRIDGE_REQUIRE_BROWSER=1`` to
fail instead (its .ci/run installs both).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine's notes say: without these, Chromium's background requests hit the closed network.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "Playwright is not installed (pip install -e '.[test]')"
    else:
        if os.path.exists(CHROMIUM):
            with sync_playwright() as playwright:
                launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                yield launched
                launched.close()
            return
        reason = "Chromium is not installed (Debian: apt-get install chromium)"
    if os.environ.get("BRIDGE_REQUIRE_BROWSER"):
        pytest.fail(reason)
    pytest.skip(reason)
