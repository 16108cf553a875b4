"""The one-tap link page as a responder sees it on a phone, in a real browser."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import requests

from tests.browser.conftest import Console, shot
from tests.conftest import eventually
from tests.responder_helpers import UNIT_PHONES, api_token, sandbox, texts_to
from tests.test_responder_loop import press

if TYPE_CHECKING:
    from playwright.sync_api import Browser
else:  # the module must import (and skip) where Playwright is not installed
    Browser = Any

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - skipped by conftest
    expect = None

StartConsole = Callable[..., Console]


def open_on_a_phone(browser: Browser, sms: str, name: str) -> Any:
    phone = browser.new_context(viewport={"width": 390, "height": 760}, locale="id-ID")
    page = phone.new_page()
    page.goto(sms[sms.index("http") :].split()[0])
    expect(page.locator("button.accept")).to_be_visible()
    shot(page, name)
    return page


def test_the_link_page_shows_every_field_of_a_button_alert_and_of_a_112_pin(
    start_console: StartConsole, browser: Browser, broker_url: str
) -> None:
    console = start_console()
    store = sandbox(console.service)
    press(broker_url, "BTN-0001")
    [sms] = eventually(lambda: texts_to(store, UNIT_PHONES["POL-01"]))
    page = open_on_a_phone(browser, sms, "link-page-button")
    code = sms.split("#")[1].split(":")[0]
    expect(page.locator("dl")).to_contain_text(f"Kode{code}")  # the same code as the SMS
    expect(page.locator("dl")).to_contain_text("Tombol milikToko Emas Sinar")
    expect(page.locator("dl")).to_contain_text("LayananPolisi")

    token = api_token(console.sessions, "rina-link", "call_taker")
    call = {"call_id": "C-LINK", "services": ["police"], "priority": 1, "lat": -7.7466, "lon": 113.2236}
    call["description"] = "perampokan, satu korban luka"
    answer = requests.post(
        console.url("/api/calls"), json=call, headers={"Authorization": f"Bearer {token}"}, timeout=20
    )
    assert answer.status_code == 201
    [sms] = eventually(lambda: texts_to(store, UNIT_PHONES["POL-02"]))
    page = open_on_a_phone(browser, sms, "link-page-112-pin")
    expect(page.locator("dl")).to_contain_text("Laporan 112perampokan, satu korban luka")
    expect(page.locator("dl")).to_contain_text("Prioritas1")
    expect(page.locator("dl")).to_contain_text("-7.74660,113.22360 (dekat Kel. Jati)")
    expect(page.locator("dl")).not_to_contain_text("Tombol milik")
