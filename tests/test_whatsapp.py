"""WhatsApp through Twilio: alerts as the approved template, quick-reply buttons, receipts.

The service talks to the built-in Twilio sandbox through the real twilio SDK; the sandbox
renders the template, walks each message to ``read`` and posts the phones' taps and texts
back to ``/twilio/whatsapp`` signed like every Twilio webhook.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import requests
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from devices.simulator import SimulatedDevice
from dispatch.models import Assignment, EscalationStep, TimelineEvent
from dispatch.service import SANDBOX_PREFIX, DispatchService
from foundation.db import transaction
from responders.models import Unit
from responders.sandbox import SandboxStore
from responders.sandbox.store import SandboxMessage
from tests.conftest import eventually
from tests.responder_helpers import UNIT_PHONES, fast_escalation, kinds, notifications, sandbox, texts_to

Start = Callable[..., DispatchService]
POL01 = UNIT_PHONES["POL-01"]
SENDER = "+15005550010"
TEMPLATES = {"id": "HX" + "1" * 32, "en": "HX" + "2" * 32}
WHATSAPP = {"from_number": SENDER, "templates": TEMPLATES}
# A text step, then the supervisor: "later steps stop" is the supervisor step never firing.
TEXT_THEN_SUPERVISOR = [
    {"after_s": 0, "action": "notify_unit", "channels": ["sms"]},
    {"after_s": 4, "action": "supervisor", "channels": ["sms"]},
]


def prefer(sessions: sessionmaker[Session], unit_id: str, channels: list[str], language: str = "id") -> None:
    with transaction(sessions) as session:
        session.execute(update(Unit).where(Unit.id == unit_id).values(channels=channels, language=language))


def start(
    start_service: Start, policy: list[dict[str, Any]] = TEXT_THEN_SUPERVISOR, **sections: Any
) -> DispatchService:
    return start_service(escalation=fast_escalation(policy), whatsapp=WHATSAPP, **sections)


def press(service: DispatchService, press_id: str) -> int:
    with SimulatedDevice(service.settings.mqtt.url or "", "BTN-0001") as button:
        return int(button.wait_status(button.press(press_id))["incident_id"])


def chats_to(store: SandboxStore, phone: str) -> list[SandboxMessage]:
    """WhatsApp messages the service sent through the API to this phone."""
    return [m for m in store.messages if m.to == f"whatsapp:{phone}" and m.direction == "outbound-api"]


def phone_post(service: DispatchService, path: str, **data: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{service.web_port}{SANDBOX_PREFIX}/phones/{path}"
    response = requests.post(url, data=data, timeout=20)
    response.raise_for_status()
    return dict(response.json())


def the_assignment(sessions: sessionmaker[Session]) -> Assignment:
    with sessions() as session:
        return session.execute(select(Assignment)).scalar_one()


def pending_steps(sessions: sessionmaker[Session]) -> list[EscalationStep]:
    with sessions() as session:
        return list(session.execute(select(EscalationStep).where(EscalationStep.state == "pending")).scalars())


def test_an_alert_goes_as_the_template_in_the_responders_language_and_terima_accepts(
    start_service: Start, roster: None, sessions: sessionmaker[Session]
) -> None:
    prefer(sessions, "POL-01", ["whatsapp", "voice"])
    service = start(start_service)
    store = sandbox(service)
    incident_id = press(service, "wa-terima-1")

    [alert] = eventually(lambda: chats_to(store, POL01), timeout=15)
    [row] = [n for n in notifications(sessions) if n.recipient_id == "POL-01"]
    [sent] = [r for r in store.requests if r.path.endswith("/Messages.json") and r.method == "POST"]
    assert sent.form["ContentSid"] == [TEMPLATES["id"]]
    assert sent.form["From"] == [f"whatsapp:{SENDER}"]
    variables = json.loads(sent.form["ContentVariables"][0])
    assert (variables["1"], variables["3"]) == ("Patroli Polresta 1", str(row.alert_code))
    assert variables["4"] in row.body  # the same one-tap link as the SMS text would carry
    assert f"Kode {row.alert_code}: tekan Terima atau Tolak" in alert.body  # rendered from the approved text
    assert alert.buttons == [["Terima", f"accept:{row.alert_code}"], ["Tolak", f"decline:{row.alert_code}"]]
    assert texts_to(store, POL01) == []  # not also by SMS

    answer = phone_post(service, f"whatsapp/{alert.sid}/buttons/0")
    assert answer["ok"], answer
    assert eventually(lambda: the_assignment(sessions).state == "accepted")
    assert the_assignment(sessions).accepted_unit_id == "POL-01"
    assert pending_steps(sessions) == []  # the supervisor step will not come
    assert answer["replies"] and str(row.alert_code) in answer["replies"][0]  # confirmed on WhatsApp
    events = kinds(sessions, incident_id)
    assert "chat_reply" in events and "accepted" in events


def test_a_read_receipt_alone_changes_nothing_and_the_next_step_still_comes(
    start_service: Start, roster: None, sessions: sessionmaker[Session]
) -> None:
    prefer(sessions, "POL-01", ["whatsapp"], language="en")
    service = start(start_service)
    store = sandbox(service)
    incident_id = press(service, "wa-read-1")

    [alert] = eventually(lambda: chats_to(store, POL01), timeout=15)
    assert alert.content_sid == TEMPLATES["en"]
    assert [title for title, _ in alert.buttons] == ["Accept", "Decline"]
    eventually(lambda: [n for n in notifications(sessions) if n.recipient_id == "POL-01" and n.state == "read"])
    assert the_assignment(sessions).state == "active"  # still paging: read is not accepted
    assert "accepted" not in kinds(sessions, incident_id)
    assert kinds(sessions, incident_id).count("chat_read") == 1  # on the timeline, as a receipt
    supervisor = UNIT_PHONES["SUP-POL"]
    eventually(lambda: texts_to(store, supervisor), timeout=15)  # the policy's next step came on time


def test_a_free_text_ya_over_whatsapp_accepts_like_an_sms_reply(
    start_service: Start, roster: None, sessions: sessionmaker[Session]
) -> None:
    prefer(sessions, "POL-01", ["whatsapp", "sms"])
    service = start(start_service)
    store = sandbox(service)
    press(service, "wa-ya-1")
    eventually(lambda: chats_to(store, POL01), timeout=15)
    code = next(n.alert_code for n in notifications(sessions) if n.recipient_id == "POL-01")

    answer = phone_post(service, "whatsapp", From=POL01, Body=f"ya {code}")
    assert answer["ok"], answer
    assert eventually(lambda: the_assignment(sessions).state == "accepted")
    replies = [m for m in store.messages if m.to == f"whatsapp:{POL01}" and m.direction == "outbound-reply"]
    assert len(replies) == 1 and str(code) in replies[0].body  # answered on WhatsApp, not by SMS
    assert texts_to(store, POL01) == []


def test_an_unsigned_or_forged_whatsapp_webhook_is_refused_and_changes_nothing(
    start_service: Start, roster: None, sessions: sessionmaker[Session]
) -> None:
    prefer(sessions, "POL-01", ["whatsapp"])
    service = start(start_service)
    store = sandbox(service)
    press(service, "wa-forged-1")
    eventually(lambda: chats_to(store, POL01), timeout=15)
    code = next(n.alert_code for n in notifications(sessions) if n.recipient_id == "POL-01")
    tap = {
        "MessageSid": "SM" + "f" * 32,
        "From": f"whatsapp:{POL01}",
        "To": f"whatsapp:{SENDER}",
        "Body": "Terima",
        "ButtonText": "Terima",
        "ButtonPayload": f"accept:{code}",
    }
    hook = f"http://127.0.0.1:{service.web_port}/twilio/whatsapp"
    assert requests.post(hook, data=tap, timeout=10).status_code == 403
    forged = requests.post(hook, data=tap, headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}, timeout=10)
    assert forged.status_code == 403
    time.sleep(0.5)
    assert the_assignment(sessions).state == "active"


def test_whatsapp_down_the_next_provider_in_the_list_carries_the_page_once(
    start_service: Start, roster: None, sessions: sessionmaker[Session]
) -> None:
    prefer(sessions, "POL-01", ["whatsapp", "sms"])
    service = start(start_service)
    store = sandbox(service)
    store.outage("error", 60, status=503, resource="WhatsApp")
    incident_id = press(service, "wa-down-1")

    eventually(lambda: texts_to(store, POL01), timeout=15)
    time.sleep(1.5)  # a second send would have happened by now
    assert len(texts_to(store, POL01)) == 1
    assert chats_to(store, POL01) == []
    [row] = [n for n in notifications(sessions) if n.recipient_id == "POL-01"]
    assert (row.provider, row.state in ("queued", "sent", "delivered")) == ("twilio", True)
    with sessions() as session:
        [rerouted] = session.execute(
            select(TimelineEvent).where(TimelineEvent.incident_id == incident_id, TimelineEvent.kind == "page_rerouted")
        ).scalars()
    assert (rerouted.data["provider"], rerouted.data["to_provider"]) == ("WhatsApp", "Twilio")
    assert "503" in rerouted.data["reason"] or "Unavailable" in rerouted.data["reason"]


def test_a_template_whose_answer_was_lost_is_found_by_its_link_and_never_sent_twice(
    start_service: Start, roster: None, sessions: sessionmaker[Session]
) -> None:
    prefer(sessions, "POL-01", ["whatsapp"])
    service = start(start_service, twilio={"timeout_s": 1, "retry_backoff_s": 0.1})
    store = sandbox(service)
    # created, answered after the client gave up; the window is long enough that a loaded machine
    # still pages inside it (with 1.5 s, a slow CI run sent the first template after it closed)
    store.outage("slow", 4, hang_s=2, resource="WhatsApp")
    press(service, "wa-lookup-1")

    row = eventually(
        lambda: next(
            (n for n in notifications(sessions) if n.recipient_id == "POL-01" and n.provider_sid is not None), None
        ),
        timeout=20,
    )
    time.sleep(1)
    [alert] = chats_to(store, POL01)
    assert row.provider_sid == alert.sid and row.attempts >= 2
    with sessions() as session:
        events = session.execute(select(TimelineEvent).where(TimelineEvent.kind == "chat_queued")).scalars().all()
    [queued] = [e for e in events if e.data["notification_id"] == row.id]
    assert queued.data["found_after_lookups"] and queued.data["provider"] == "WhatsApp"
