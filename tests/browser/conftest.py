"""Headless Chromium (Debian's package) driven by Playwright, against the e2e stack.

The stack (budgetd + fake upstream + shim as real processes) is the e2e layer's fixture. The
browser is the system's ``/usr/bin/chromium``: ``playwright install`` is never run. Without it
the tests skip, except under ``CI=true`` where a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from tests.e2e.conftest import MASTER_KEY, Stack, client, stack

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, ViewportSize

__all__ = ["ARTIFACTS", "Browsing", "browser", "browsing", "client", "stack"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
WIDE: ViewportSize = {"width": 1280, "height": 860}


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per test module (closed before other modules' event loops run)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium chromium-driver)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


# Chromium reports every HTTP error answer of a fetch as a console error; a test that provokes
# a refusal on purpose says which statuses it expects.
_FAILED_LOAD = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")


@dataclass
class Browsing:
    """A fresh page (own context, so own sessionStorage) and what its console said."""

    page: Page
    base_url: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def sign_in(self, key: str = MASTER_KEY) -> None:
        """Open /ui and sign in with ``key``."""
        page = self.page
        page.goto(f"{self.base_url}/ui")
        page.get_by_label("Master key").fill(key)
        page.get_by_role("button", name="Sign in").click()

    def screenshot(self, name: str) -> Path:
        """Save the whole page under tests/artifacts/."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        # A transient "saved" toast would cover the content it reports on.
        self.page.locator("#toast").evaluate("toast => { toast.hidden = true; }")
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_no_console_errors(self, expected_statuses: frozenset[int] = frozenset()) -> None:
        """No script error, console error or warning, except refusals the test provoked."""
        unexpected = []
        for message in self.errors:
            failed = _FAILED_LOAD.search(message)
            if failed and int(failed.group(1)) in expected_statuses:
                continue
            unexpected.append(message)
        assert unexpected == [], unexpected
        assert self.warnings == [], self.warnings


@pytest.fixture
def browsing(browser: Browser, stack: Stack) -> Iterator[Browsing]:
    """A page in its own browser context, with console errors collected."""
    context = browser.new_context(viewport=WIDE)
    page = context.new_page()
    out = Browsing(page, stack.shim_url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            out.errors.append(message.text)
        elif message.type == "warning":
            out.warnings.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda e: out.errors.append(f"page error: {e}"))
    page.set_default_timeout(10_000)
    try:
        yield out
    finally:
        context.close()
