"""A keypad answer counts once, and only from the alert's live call.

A Twilio signature proves a request came from Twilio once, not that it is new: a captured signed
``POST /twilio/voice/gather/N`` replayed later must change nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import requests
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from devices.simulator import SimulatedDevice
from dispatch.models import Assignment, KeypadAnswer, Notification
from dispatch.service import DispatchService
from responders.sandbox.store import SandboxCall, SandboxStore
from tests.conftest import count, eventually
from tests.responder_helpers import UNIT_PHONES, calls_to, fast_escalation, press_key, reply_sms, sandbox

Start = Callable[..., DispatchService]
POL01 = UNIT_PHONES["POL-01"]
VOICE_FIRST = fast_escalation(
    [
        {"after_s": 0, "action": "notify_unit", "channels": ["voice"]},
        {"after_s": 120, "action": "supervisor", "channels": ["sms"]},
    ]
)


def press(broker_url: str) -> None:
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        button.wait_status(button.press())


def accepted_by(sessions: sessionmaker[Session]) -> tuple[str, str | None]:
    with sessions() as session:
        assignment = session.query(Assignment).one()
        return assignment.state, assignment.accepted_unit_id


def signed_gather(service: DispatchService, notification_id: int, call_sid: str, digits: str) -> requests.Response:
    url = f"{service.public_base}/twilio/voice/gather/{notification_id}"
    form = {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "Digits": digits, "CallStatus": "in-progress"}
    signature = RequestValidator(service.twilio_auth_token).compute_signature(url, form)
    return requests.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=10)


def called(start_service: Start, broker_url: str) -> tuple[DispatchService, SandboxStore, SandboxCall]:
    """A press, and POL-01's phone ringing with its alert call."""
    service = start_service(escalation=VOICE_FIRST)
    store = sandbox(service)
    press(broker_url)
    [call] = eventually(lambda: calls_to(store, POL01))
    return service, store, call


def test_a_replayed_keypad_decline_does_not_undo_a_later_acceptance(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service, store, call = called(start_service, broker_url)
    press_key(service, call.sid, "2")  # "cannot go" ... and the request is captured on the way
    [captured] = [d for d in store.webhooks if d.kind == "gather"]
    eventually(lambda: accepted_by(sessions) == ("active", None))

    reply_sms(service, POL01, "YA")  # ... then the unit can go after all
    eventually(lambda: accepted_by(sessions) == ("accepted", "POL-01"))

    replay = requests.post(
        captured.url, data=captured.params, headers={"X-Twilio-Signature": captured.signature}, timeout=10
    )
    assert replay.status_code == 200
    assert replay.text == captured.response_text  # the first answer, said again
    assert accepted_by(sessions) == ("accepted", "POL-01")
    assert count(sessions, KeypadAnswer) == 1


def test_a_keypad_answer_from_a_call_that_is_over_or_another_call_changes_nothing(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service, _, call = called(start_service, broker_url)
    base = f"http://127.0.0.1:{service.web_port}/sandbox/twilio/phones/calls/{call.sid}"
    requests.post(f"{base}/answer", timeout=20).raise_for_status()
    [notification_id] = eventually(lambda: [n.id for n in store_notifications(sessions) if n.provider_sid == call.sid])

    other = signed_gather(service, notification_id, "CA" + "9" * 32, "1")  # not this alert's call
    assert other.status_code == 200 and "<Hangup" in other.text and "<Say" not in other.text
    assert accepted_by(sessions) == ("active", None)

    requests.post(f"{base}/hangup", timeout=20).raise_for_status()
    eventually(lambda: [n.state for n in store_notifications(sessions)] == ["completed"])
    late = signed_gather(service, notification_id, call.sid, "1")  # the call has ended
    assert late.status_code == 200 and "<Say" not in late.text
    assert accepted_by(sessions) == ("active", None)
    assert count(sessions, KeypadAnswer) == 0


def test_a_gather_without_a_call_sid_is_a_400(start_service: Start, roster: None, broker_url: str) -> None:
    service = start_service(escalation=VOICE_FIRST)
    url = f"{service.public_base}/twilio/voice/gather/1"
    form = {"Digits": "1"}
    signature = RequestValidator(service.twilio_auth_token).compute_signature(url, form)
    assert requests.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=10).status_code == 400


def store_notifications(sessions: sessionmaker[Session]) -> list[Notification]:
    with sessions() as session:
        return list(session.query(Notification).order_by(Notification.id))
