"""Acknowledging by SMS in Indonesia: pages and replies through SMS Gateway for Android.

The service talks to a local stand-in of the gateway's REST API through the real
``android-sms-gateway`` client; the stand-in posts signed webhooks back, as the app does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from devices.simulator import SimulatedDevice
from dispatch.models import Assignment, EscalationStep, Notification
from dispatch.service import DispatchService
from foundation.db import transaction
from responders.models import Unit
from responders.sandbox.sms_gateway import GatewayStore, run_standalone, sign
from tests.conftest import eventually
from tests.responder_helpers import UNIT_PHONES, calls_to, fast_escalation, kinds, notifications, sandbox, texts_to

Start = Callable[..., DispatchService]
POL01 = UNIT_PHONES["POL-01"]
USER, PASSWORD, KEY = "dispatch", "gateway-password", "gateway-signing-key"
SMS_THEN_CALL = [
    {"after_s": 0, "action": "notify_unit", "channels": ["sms", "voice"]},
    {"after_s": 60, "action": "supervisor", "channels": ["sms"]},
]


@pytest.fixture
def gateway() -> Iterator[tuple[str, GatewayStore]]:
    store = GatewayStore()
    url, stop = run_standalone(store, USER, PASSWORD, KEY)
    yield url, store
    stop()


def with_gateway(start_service: Start, url: str, **sections: Any) -> DispatchService:
    return start_service(
        sms_gateway={"url": url, "username": USER, "password": PASSWORD, "signing_key": KEY},
        **sections,
    )


def prefer(sessions: sessionmaker[Session], unit_id: str, channels: list[str]) -> None:
    with transaction(sessions) as session:
        session.execute(update(Unit).where(Unit.id == unit_id).values(channels=channels))


def press(service: DispatchService, press_id: str) -> int:
    with SimulatedDevice(service.settings.mqtt.url or "", "BTN-0001") as button:
        return int(button.wait_status(button.press(press_id))["incident_id"])


def phone_replies(url: str, phone: str, text: str) -> None:
    requests.post(f"{url}/phones/sms", data={"from": phone, "text": text}, timeout=10).raise_for_status()


def test_a_unit_that_prefers_the_gateway_is_paged_there_and_accepts_by_replying_sms(
    start_service: Start, roster: None, sessions: sessionmaker[Session], gateway: tuple[str, GatewayStore]
) -> None:
    url, store = gateway
    prefer(sessions, "POL-01", ["sms_gateway", "voice"])
    service = with_gateway(start_service, url, escalation=fast_escalation(SMS_THEN_CALL))
    incident_id = press(service, "gateway-accept-1")

    [alert] = eventually(lambda: store.outbound_to(POL01), timeout=15)
    assert texts_to(sandbox(service), POL01) == []  # not through Twilio
    [call] = eventually(lambda: [c for c in calls_to(sandbox(service), POL01) if c.status == "ringing"], timeout=15)
    eventually(lambda: [n for n in notifications(sessions) if n.channel == "sms" and n.state == "delivered"])
    code = next(n.alert_code for n in notifications(sessions) if n.channel == "sms")
    assert f"#{code}" in alert.text

    phone_replies(url, POL01, f"YA {code}")
    with sessions() as session:
        assignment = eventually(
            lambda: session.execute(select(Assignment).where(Assignment.state == "accepted")).scalar_one_or_none()
        )
    assert assignment.accepted_unit_id == "POL-01"
    answer = eventually(lambda: [m for m in store.outbound_to(POL01) if m.id != alert.id], timeout=10)
    assert "POL" in answer[0].text or str(code) in answer[0].text  # the confirmation, back through the gateway
    eventually(lambda: (c := sandbox(service).call(call.sid)) is not None and c.status == "canceled", timeout=10)
    with sessions() as session:
        pending = session.execute(select(EscalationStep).where(EscalationStep.state == "pending")).scalars().all()
    assert pending == []  # the supervisor step was cancelled
    # call_ended is written once Twilio has answered the hang-up, a moment after the sandbox saw it.
    eventually(lambda: {"sms_reply", "accepted", "call_ended"} <= set(kinds(sessions, incident_id)))


def signed_event(event: dict[str, Any], stamp: int | None = None, key: str = KEY) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    timestamp = str(stamp if stamp is not None else int(time.time()))
    return body, {
        "Content-Type": "application/json",
        "X-Timestamp": timestamp,
        "X-Signature": sign(key, body, timestamp),
    }


def test_forged_stale_and_replayed_gateway_webhooks_are_refused_and_change_nothing(
    start_service: Start, roster: None, sessions: sessionmaker[Session], gateway: tuple[str, GatewayStore]
) -> None:
    url, store = gateway
    service = with_gateway(start_service, url, escalation=fast_escalation(SMS_THEN_CALL))
    press(service, "gateway-forged-1")
    eventually(lambda: store.outbound_to(POL01), timeout=15)
    code = next(n.alert_code for n in eventually(lambda: notifications(sessions)) if n.channel == "sms")
    hook = f"http://127.0.0.1:{service.web_port}/sms-gateway/events"

    def reply(event_id: str, message_id: str) -> dict[str, Any]:
        payload = {"messageId": message_id, "message": f"YA {code}", "phoneNumber": POL01, "receivedAt": "x"}
        return {"deviceId": "d", "event": "sms:received", "id": event_id, "payload": payload, "webhookId": "w"}

    body, headers = signed_event(reply("e1", "m1"), key="not-the-key")
    assert requests.post(hook, data=body, headers=headers, timeout=5).status_code == 403  # forged
    body, headers = signed_event(reply("e2", "m2"), stamp=int(time.time()) - 3600)
    assert requests.post(hook, data=body, headers=headers, timeout=5).status_code == 403  # stale
    assert _accepted(sessions) is None

    body, headers = signed_event(reply("e3", "m3"))
    assert requests.post(hook, data=body, headers=headers, timeout=5).status_code == 200
    assert requests.post(hook, data=body, headers=headers, timeout=5).status_code == 403  # the same event again
    body, headers = signed_event(reply("e4", "m3"))  # a new event about the same gateway message
    assert requests.post(hook, data=body, headers=headers, timeout=5).json() == {"duplicate": True}
    assert _accepted(sessions) == "POL-01"
    assert kinds(sessions, 1).count("accepted") == 1


def _accepted(sessions: sessionmaker[Session]) -> str | None:
    with sessions() as session:
        return session.execute(select(Assignment.accepted_unit_id)).scalars().first()


def test_a_gateway_phone_that_is_offline_hands_the_page_to_the_next_channel_once(
    start_service: Start, roster: None, sessions: sessionmaker[Session], gateway: tuple[str, GatewayStore]
) -> None:
    url, store = gateway
    store.offline = True  # no signal: the app's health check says "fail"
    prefer(sessions, "POL-01", ["sms_gateway", "sms", "voice"])
    service = with_gateway(start_service, url, escalation=fast_escalation([{"after_s": 0, "action": "notify_unit"}]))
    incident_id = press(service, "gateway-offline-1")
    eventually(lambda: texts_to(sandbox(service), POL01), timeout=15)
    time.sleep(1)
    assert len(texts_to(sandbox(service), POL01)) == 1 and store.outbound_to(POL01) == []
    [row] = notifications(sessions)
    assert row.provider == "twilio"
    assert "page_rerouted" in kinds(sessions, incident_id)


def test_a_page_in_doubt_at_the_gateway_is_asked_for_by_its_id_and_never_sent_twice(
    start_service: Start, roster: None, sessions: sessionmaker[Session], gateway: tuple[str, GatewayStore]
) -> None:
    url, store = gateway
    service = with_gateway(start_service, url, escalation=fast_escalation([{"after_s": 0, "action": "notify_unit"}]))
    press(service, "gateway-doubt-1")
    [sent] = eventually(lambda: store.outbound_to(POL01), timeout=15)
    # As if the sender had died after the gateway took it: the row is put back in doubt.
    with transaction(sessions) as session:
        session.execute(
            update(Notification).values(state="pending", provider_sid=None, outcome_unknown=True, lookups=0)
        )
    service.wake()
    row = eventually(lambda: [n for n in notifications(sessions) if n.provider_sid], timeout=15)[0]
    time.sleep(1)
    assert row.provider_sid == sent.id and len(store.outbound_to(POL01)) == 1
