"""From a press to a responder who said "I'm going": through the real broker, database and twilio SDK.

The service runs with the built-in Twilio sandbox (no TWILIO_ACCOUNT_SID), so every
SMS and call goes through the real SDK over HTTP, and replies come back as webhooks
signed exactly like Twilio's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import requests
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from devices.simulator import SimulatedDevice
from dispatch.models import Assignment, Incident
from dispatch.service import DispatchService
from responders.models import Unit
from tests.conftest import count, eventually
from tests.responder_helpers import (
    UNIT_PHONES,
    calls_to,
    fast_escalation,
    kinds,
    notifications,
    press_key,
    replies_to,
    reply_sms,
    sandbox,
    texts_to,
)

Start = Callable[..., DispatchService]
POL01, POL02, SUP = UNIT_PHONES["POL-01"], UNIT_PHONES["POL-02"], UNIT_PHONES["SUP-POL"]


def press(broker_url: str, device: str = "BTN-0001", **fields: object) -> dict[str, object]:
    with SimulatedDevice(broker_url, device) as button:
        press_id = button.press(**fields)
        button.wait_status(press_id)
        return {"press_id": press_id, "device": button}


def test_a_press_texts_the_nearest_available_unit_and_tells_the_device(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(escalation=fast_escalation())
    store = sandbox(service)
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        press_id = button.press()
        assert button.wait_status(press_id)["state"] == "received"
        dispatched = button.wait_status(press_id)
    assert dispatched["state"] == "dispatched"
    assert dispatched["unit_name"] == "Patroli Polresta 1"
    assert 0 < dispatched["distance_m"] < 500
    [sms] = eventually(lambda: texts_to(store, POL01))
    assert "POLISI" in sms and "/a/" in sms and len(sms) <= 160
    [message] = [m for m in store.messages if m.to == POL01]
    # What is left of the page's useful time (sms_validity_s from when it was written).
    assert 110 <= (message.validity_period or 0) <= 120
    assert message.status_callback and message.status_callback.endswith("/twilio/sms/status")
    eventually(lambda: [n.state for n in notifications(sessions)][:1] == ["delivered"])


def test_nobody_answers_so_voice_then_next_nearest_then_supervisor(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(escalation=fast_escalation())
    store = sandbox(service)
    press(broker_url)
    eventually(lambda: texts_to(store, SUP) and calls_to(store, SUP), timeout=15)
    assert len(texts_to(store, POL01)) == 1 and len(calls_to(store, POL01)) == 1
    assert len(texts_to(store, POL02)) == 1 and len(calls_to(store, POL02)) == 1
    with sessions() as session:
        incident = session.query(Incident).one()
        assignment = session.query(Assignment).one()
    assert assignment.excluded == {"POL-01": "no answer"}
    steps = [k for k in kinds(sessions, incident.id) if k.startswith(("step_", "unit_"))]
    assert steps == [
        "unit_matched",
        "step_notify_unit",
        "step_notify_unit",
        "unit_timed_out",
        "unit_matched",
        "step_next_unit",
        "step_supervisor",
    ]
    ordered = [(n.recipient_id, n.channel) for n in notifications(sessions)]
    assert ordered == [
        ("POL-01", "sms"),
        ("POL-01", "voice"),
        ("POL-02", "sms"),
        ("POL-02", "voice"),
        ("SUP-POL", "sms"),
        ("SUP-POL", "voice"),
    ]
    eventually(lambda: "escalation_exhausted" in kinds(sessions, incident.id))


def test_an_sms_accept_stops_every_later_notification(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(
        escalation=fast_escalation(
            policy=[
                {"after_s": 0, "action": "notify_unit", "channels": ["sms"]},
                {"after_s": 3, "action": "notify_unit", "channels": ["voice"]},
                {"after_s": 4, "action": "supervisor", "channels": ["sms"]},
            ]
        )
    )
    store = sandbox(service)
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        press_id = button.press()
        [sms] = eventually(lambda: texts_to(store, POL01))
        code = sms.split("#")[1].split(":")[0] if "#" in sms else "1"
        reply_sms(service, POL01, f"ya {code}")
        states = [button.wait_status(press_id)["state"] for _ in range(3)]
    assert states[-1] == "acknowledged"
    [reply] = eventually(lambda: replies_to(store, POL01))
    assert f"#{code}" in reply and "TIBA" in reply
    time.sleep(5)  # past every step of the policy
    assert len(texts_to(store, POL01)) == 1
    assert calls_to(store, POL01) == [] and texts_to(store, SUP) == []
    with sessions() as session:
        unit = session.get_one(Unit, "POL-01")
        assert (unit.status, unit.current_incident_id) == ("busy", session.query(Incident).one().id)
        assert session.query(Assignment).one().state == "accepted"


def test_a_forged_signature_gets_403_and_changes_nothing(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(escalation=fast_escalation())
    press(broker_url)
    eventually(lambda: texts_to(sandbox(service), POL01))
    url = f"http://127.0.0.1:{service.web_port}/twilio/sms"
    form = {"MessageSid": "SM" + "f" * 32, "From": POL01, "To": "+15005550006", "Body": "Y 1"}
    forged = RequestValidator("not-the-token").compute_signature(url, form)
    for headers in ({"X-Twilio-Signature": forged}, {}):
        assert requests.post(url, data=form, headers=headers, timeout=5).status_code == 403
    with sessions() as session:
        assert session.query(Assignment).one().state == "active"
    assert count(sessions, Incident, Incident.state == "dispatched") == 1


def test_the_same_message_sid_twice_is_one_acceptance(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(escalation=fast_escalation())
    press(broker_url)
    eventually(lambda: texts_to(sandbox(service), POL01))
    url = f"{service.public_base}/twilio/sms"
    form = {
        "MessageSid": "SM" + "a" * 32,
        "AccountSid": "AC" + "0" * 32,
        "From": POL01,
        "To": "+15005550006",
        "Body": "Y 1",
        "NumMedia": "0",
    }
    signature = RequestValidator(service.twilio_auth_token).compute_signature(url, form)
    answers = [requests.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=5) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].text == answers[1].text
    with sessions() as session:
        incident = session.query(Incident).one()
    assert kinds(sessions, incident.id).count("accepted") == 1
    assert kinds(sessions, incident.id).count("sms_reply") == 1


def test_a_call_answered_and_hung_up_without_a_key_is_not_an_acknowledgement(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(
        escalation=fast_escalation(
            policy=[
                {"after_s": 0, "action": "notify_unit", "channels": ["voice"]},
                {"after_s": 30, "action": "supervisor", "channels": ["sms"]},
            ]
        )
    )
    store = sandbox(service)
    press(broker_url)
    [call] = eventually(lambda: calls_to(store, POL01))
    base = f"http://127.0.0.1:{service.web_port}/sandbox/twilio/phones/calls/{call.sid}"
    requests.post(f"{base}/answer", timeout=20).raise_for_status()
    requests.post(f"{base}/hangup", timeout=20).raise_for_status()  # voicemail-like: answered, no key
    eventually(lambda: [n.state for n in notifications(sessions)] == ["completed"])
    with sessions() as session:
        assert session.query(Assignment).one().state == "active"


def test_a_keypad_1_in_the_call_accepts(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(
        escalation=fast_escalation(
            policy=[
                {"after_s": 0, "action": "notify_unit", "channels": ["voice"]},
                {"after_s": 30, "action": "supervisor", "channels": ["sms"]},
            ]
        )
    )
    store = sandbox(service)
    press(broker_url)
    [call] = eventually(lambda: calls_to(store, POL01))
    press_key(service, call.sid, "1")
    eventually(lambda: count(sessions, Assignment, Assignment.state == "accepted") == 1)
    with sessions() as session:
        incident = session.query(Incident).one()
    assert "accepted" in kinds(sessions, incident.id)
    assert incident.state == "acknowledged"


def test_a_decline_pages_the_next_nearest_unit_at_once(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(
        escalation=fast_escalation(
            policy=[
                {"after_s": 0, "action": "notify_unit", "channels": ["sms"]},
                {"after_s": 60, "action": "next_unit", "channels": ["sms"]},
                {"after_s": 120, "action": "supervisor", "channels": ["sms"]},
            ]
        )
    )
    store = sandbox(service)
    press(broker_url)
    eventually(lambda: texts_to(store, POL01))
    reply_sms(service, POL01, "TOLAK")
    eventually(lambda: texts_to(store, POL02), timeout=5)  # long before the 60 s step
    with sessions() as session:
        assert session.query(Assignment).one().excluded == {"POL-01": "declined"}


def test_the_one_tap_link_accepts_once_and_only_once(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(escalation=fast_escalation())
    store = sandbox(service)
    press(broker_url)
    [sms] = eventually(lambda: texts_to(store, POL01))
    link = sms[sms.index("http") :].split()[0]
    page = requests.get(link, timeout=5)
    assert page.status_code == 200 and "TERIMA" in page.text
    accept_path = page.text.split('action="')[1].split('"')[0]
    base = f"http://127.0.0.1:{service.web_port}"
    first = requests.post(base + accept_path, timeout=5)
    second = requests.post(base + accept_path, timeout=5)
    assert first.status_code == 200
    assert second.status_code == 409
    assert requests.get(link.replace(link.rsplit(".", 1)[1], "forged"), timeout=5).status_code == 404
    with sessions() as session:
        assert session.query(Assignment).one().accepted_unit_id == "POL-01"


def test_a_cancel_in_the_grace_window_stops_the_paging_and_stands_the_unit_down(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(
        intake={"cancel_grace_s": 60},
        escalation=fast_escalation(
            policy=[
                {"after_s": 0, "action": "notify_unit", "channels": ["sms"]},
                {"after_s": 2, "action": "notify_unit", "channels": ["voice"]},
            ]
        ),
    )
    store = sandbox(service)
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        press_id = button.press()
        eventually(lambda: texts_to(store, POL01))
        button.publish("cancel", {"press_id": press_id})
        eventually(lambda: len(texts_to(store, POL01)) == 2)
    time.sleep(3)  # past the voice step
    assert calls_to(store, POL01) == []
    assert "dibatalkan" in texts_to(store, POL01)[1]
    with sessions() as session:
        assert session.query(Assignment).one().state == "cancelled"
        assert session.query(Incident).one().state == "cancelled"
