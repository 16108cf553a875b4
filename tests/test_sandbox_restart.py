"""The demo's phone simulator still shows its phones after a restart (the sandbox keeps its log in the data dir)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any

import requests

from devices.simulator import SimulatedDevice
from dispatch.service import DispatchService
from foundation.settings import Settings
from tests.conftest import eventually
from tests.responder_helpers import UNIT_PHONES, calls_to, fast_escalation, reply_sms, sandbox, texts_to

POL01 = UNIT_PHONES["POL-01"]
SMS_THEN_CALL = fast_escalation(
    [
        {"after_s": 0, "action": "notify_unit", "channels": ["sms", "voice"]},
        {"after_s": 120, "action": "supervisor", "channels": ["sms"]},
    ]
)


def phone(service: DispatchService, number: str) -> dict[str, Any]:
    view = requests.get(f"http://127.0.0.1:{service.web_port}/sandbox/twilio/phones.json", timeout=10).json()
    return next(p for p in view["phones"] if p["number"] == number)


def test_the_phones_survive_a_restart_and_a_call_cut_by_it_shows_as_failed(
    make_settings: Callable[..., Settings], roster: None, broker_url: str
) -> None:
    settings = make_settings(escalation=SMS_THEN_CALL)
    first = DispatchService(settings)
    first.start()
    try:
        assert first.gateway.wait_connected(10)
        with SimulatedDevice(broker_url, "BTN-0001") as button:
            button.wait_status(button.press())
        store = sandbox(first)
        [alert] = eventually(lambda: texts_to(store, POL01))
        eventually(lambda: calls_to(store, POL01))  # ringing when the process stops
        reply_sms(first, POL01, "TIBA")  # an inbound message and its answer, too
        before = phone(first, POL01)
    finally:
        first.stop(forget_mqtt_session=True)
    saved = settings.data_dir / "sandbox-twilio.json"
    assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600  # numbers and live links: owner only

    second = DispatchService(settings)
    second.start()
    try:
        after = phone(second, POL01)
        assert [m["sid"] for m in after["messages"]] == [m["sid"] for m in before["messages"]]
        assert alert in [m["body"] for m in after["messages"]]
        [call] = after["calls"]
        assert call["sid"] == before["calls"][0]["sid"] and call["status"] == "failed"
    finally:
        second.stop(forget_mqtt_session=True)
