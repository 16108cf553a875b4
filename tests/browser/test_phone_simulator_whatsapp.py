"""The phone simulator shows a WhatsApp alert as a WhatsApp bubble with its buttons; a tap accepts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from devices.simulator import SimulatedDevice
from dispatch.models import Assignment
from tests.browser.conftest import Console, shot
from tests.conftest import eventually
from tests.responder_helpers import UNIT_PHONES, sandbox
from tests.test_whatsapp import WHATSAPP, chats_to, prefer

if TYPE_CHECKING:
    from collections.abc import Callable

    from playwright.sync_api import Page
else:  # the module must import (and skip) where Playwright is not installed
    Page = Any
try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover
    expect = None

POL01 = UNIT_PHONES["POL-01"]


def test_a_whatsapp_alert_shows_its_buttons_and_terima_accepts(
    start_console: Callable[..., Console], page: Page, broker_url: str
) -> None:
    console = start_console(whatsapp=WHATSAPP)
    prefer(console.sessions, "POL-01", ["whatsapp", "voice"])
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        button.wait_status(button.press("wa-browser-1"))
    eventually(lambda: chats_to(sandbox(console.service), POL01), timeout=15)

    page.goto(console.url("/sandbox/twilio/phones?lang=id"))
    card = page.locator("section.phone", has_text=POL01)
    bubble = card.locator(".msg.wa.outbound")
    expect(bubble).to_contain_text("Panggilan darurat untuk Patroli Polresta 1", timeout=5_000)
    expect(bubble.locator(".wa-buttons button")).to_have_text(["Terima", "Tolak"])
    shot(page, "phone_simulator_whatsapp")
    bubble.locator("button", has_text="Terima").click()
    expect(card.locator("pre.result")).to_contain_text("HTTP 200", timeout=10_000)

    def accepted() -> bool:
        with console.sessions() as session:
            return session.execute(select(Assignment.state)).scalar_one() == "accepted"

    assert eventually(accepted, timeout=10)
