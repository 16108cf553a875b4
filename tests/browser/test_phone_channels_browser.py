"""The demo's phone simulator in a real browser: each message says which channel carried it.

The demo runs the SMS Gateway for Android stand-in beside the Twilio sandbox; a +62 responder
is paged by SMS through the gateway and called through Twilio, and replies from the
simulator's gateway reply box (a signed ``sms:received`` webhook to the service).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from devices.simulator import SimulatedDevice
from dispatch.models import Assignment
from tests.browser.conftest import Console, shot
from tests.conftest import eventually
from tests.responder_helpers import UNIT_PHONES, fast_escalation, notifications

try:  # the module must import (and skip) where Playwright is not installed
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - skipped by conftest
    expect = None

POL01 = UNIT_PHONES["POL-01"]
SMS_AND_CALL = fast_escalation(
    [
        {"after_s": 0, "action": "notify_unit", "channels": ["sms", "voice"]},
        {"after_s": 120, "action": "supervisor", "channels": ["sms"]},
    ]
)


def accepted_by(console: Console) -> str | None:
    with console.sessions() as session:
        return session.execute(select(Assignment.accepted_unit_id).where(Assignment.state == "accepted")).scalar()


def test_each_message_names_its_channel_and_a_reply_through_the_gateway_accepts(
    start_console: Callable[..., Console], page: Any, broker_url: str
) -> None:
    console = start_console(sms_gateway={"sandbox": True}, escalation=SMS_AND_CALL)
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        button.wait_status(button.press("browser-gateway-1"))
    [sms] = eventually(lambda: [n for n in notifications(console.sessions) if n.channel == "sms"], timeout=15)

    page.goto(console.url("/sandbox/twilio/phones?lang=id"))
    card = page.locator("section.phone", has_text=POL01)
    alert = card.locator(".msg.gateway.outbound")
    expect(alert).to_contain_text(f"#{sms.alert_code}", timeout=10_000)
    expect(alert.locator(".channel")).to_have_text("SMS lewat SMS Gateway for Android (dua arah)")
    expect(card.locator(".call .channel").first).to_have_text("Panggilan suara lewat Twilio", timeout=10_000)

    page.goto(console.url("/sandbox/twilio/phones?lang=en"))
    card = page.locator("section.phone", has_text=POL01)
    expect(card.locator(".msg.gateway.outbound .channel")).to_have_text("SMS via SMS Gateway for Android (two-way)")
    expect(card.locator(".call .channel").first).to_have_text("Voice call via Twilio")
    assert card.locator(".msg:not(.gateway)").count() == 0  # Twilio carried no SMS to this +62 phone

    card.locator("form.reply.gateway textarea").fill(f"YA {sms.alert_code}")
    card.locator("button", has_text="Reply via gateway").click()
    expect(card.locator("pre.result")).to_contain_text("HTTP 200", timeout=10_000)
    eventually(lambda: accepted_by(console) == "POL-01", timeout=10)
    expect(card.locator(".msg.gateway.inbound")).to_contain_text(f"YA {sms.alert_code}", timeout=5_000)
    expect(card.locator(".msg.gateway.outbound")).to_have_count(2, timeout=10_000)  # and the confirmation
    shot(page, "phone_channels")

    # Twilio SMS from a +62 number: shown, and marked as what Twilio really offers there.
    page.fill("#textin input[name=From]", POL01)
    page.fill("#textin input[name=Body]", "TIBA")
    page.click("#textin button")
    expect(card.locator(".msg:not(.gateway) .channel").first).to_contain_text("SMS via Twilio · send-only")
