"""Logging out in a real browser ends the session on the server: a copied cookie opens nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.browser.conftest import Console, shot
from tests.browser.test_console_browser import login

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page
else:  # the module must import (and skip) where Playwright is not installed
    Browser = Page = Any

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - skipped by conftest
    expect = None


def test_a_cookie_copied_before_logout_opens_nothing_after_it(
    start_console: Callable[..., Console], page: Page, browser: Browser
) -> None:
    console = start_console()
    login(page, console, "budi")
    copied = page.context.cookies()
    assert any(c["name"] == "dispatch_console" for c in copied)

    page.locator("form[action$='/console/logout'] button").click()
    expect(page.locator("input[name=username]")).to_be_visible()
    shot(page, "logged_out")

    # Someone who copied the cookie off the desk (or from the browser's profile) tries it later.
    other = browser.new_context()
    try:
        other.add_cookies(copied)  # type: ignore[arg-type]
        thief = other.new_page()
        thief.goto(console.url("/console/"))
        expect(thief.locator("input[name=username]")).to_be_visible()
        assert "/console/login" in thief.url
        status = thief.evaluate("async () => (await fetch('/api/incidents')).status")
        assert status == 401
    finally:
        other.close()
