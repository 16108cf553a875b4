"""The outbox's rules, one at a time, through the real twilio SDK and the built-in Twilio sandbox.

- Transient failures never end a page and never move the escalation; Retry-After is honoured.
- A page that could not go out while it was useful expires; it is never sent late.
- Accepting ends the assignment's other pages: queued ones cancelled, a ringing call hung up.
- A long outage is told to every supervisor through a channel that still works.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from devices.simulator import SimulatedDevice
from dispatch.models import EscalationStep, Notification, ProviderOutage, TimelineEvent
from dispatch.service import DispatchService
from tests.conftest import eventually
from tests.responder_helpers import (
    UNIT_PHONES,
    calls_to,
    fast_escalation,
    kinds,
    notifications,
    reply_sms,
    sandbox,
    texts_to,
)

Start = Callable[..., DispatchService]
POL01 = UNIT_PHONES["POL-01"]
SUP_POL = UNIT_PHONES["SUP-POL"]


def press(service: DispatchService, press_id: str) -> int:
    with SimulatedDevice(service.settings.mqtt.url or "", "BTN-0001") as button:
        return int(button.wait_status(button.press(press_id))["incident_id"])


def api_posts(service: DispatchService, resource: str) -> list[int | None]:
    return [r.response_status for r in sandbox(service).requests if r.path.endswith(resource) and r.method == "POST"]


def test_twilio_failing_transiently_past_the_old_attempt_limit_still_sends_once_and_moves_nothing(
    start_service: Start, roster: None, sessions: sessionmaker[Session]
) -> None:
    policy = [
        {"after_s": 0, "action": "notify_unit", "channels": ["sms"]},
        {"after_s": 60, "action": "supervisor", "channels": ["sms"]},
    ]
    service = start_service(escalation=fast_escalation(policy), twilio={"retry_backoff_s": 0.1})
    store = sandbox(service)
    store.fail_next(8, 503)  # twice the attempts the outbox used to allow before giving up
    incident_id = press(service, "transient-1")
    eventually(lambda: texts_to(store, POL01), timeout=20)
    time.sleep(1)
    assert api_posts(service, "/Messages.json") == [503] * 8 + [201]
    [row] = notifications(sessions)
    assert (row.state in ("queued", "sent", "delivered"), row.attempts) == (True, 9)
    with sessions() as session:
        [step] = session.execute(select(EscalationStep).where(EscalationStep.state == "pending")).scalars()
    assert step.action == "supervisor" and (step.due_at - row.created_at).total_seconds() > 50  # not brought forward
    assert kinds(sessions, incident_id).count("provider_unreachable") == 1  # said once, not per attempt
    metrics = service.metrics
    assert metrics.provider_failures.labels("Twilio", "sms", "transient")._value.get() == 8
    assert metrics.provider_up.labels("Twilio", "sms")._value.get() == 1  # answering again


def test_a_429_with_retry_after_is_not_retried_sooner(
    start_service: Start, roster: None, sessions: sessionmaker[Session]
) -> None:
    service = start_service(
        escalation=fast_escalation([{"after_s": 0, "action": "notify_unit"}]), twilio={"retry_backoff_s": 0.1}
    )
    store = sandbox(service)
    # Long enough that a slow press still meets it (a loaded CI machine once missed 1.8 s),
    # short enough that the retry 4 s later cannot.
    store.outage("error", 3.5, status=429, retry_after_s=4)
    press(service, "retry-after-1")
    eventually(lambda: texts_to(store, POL01), timeout=15)
    posts = [r for r in store.requests if r.path.endswith("/Messages.json") and r.method == "POST"]
    assert [r.response_status for r in posts] == [429, 201]
    assert (posts[1].received_at - posts[0].received_at).total_seconds() >= 3.9


def test_a_page_the_provider_could_not_take_while_it_was_useful_expires_and_is_never_sent_late(
    start_service: Start, roster: None, sessions: sessionmaker[Session]
) -> None:
    service = start_service(
        escalation=fast_escalation([{"after_s": 0, "action": "notify_unit"}]),
        twilio={"retry_backoff_s": 0.1, "retry_max_backoff_s": 0.5, "sms_validity_s": 3},
    )
    store = sandbox(service)
    store.outage("error", 6, status=500)
    incident_id = press(service, "expired-1")
    eventually(lambda: [n for n in notifications(sessions) if n.state == "expired"], timeout=15)
    time.sleep(4)  # the outage is over: an expired page must stay unsent
    assert texts_to(store, POL01) == []
    assert "sms_expired" in kinds(sessions, incident_id)


def test_accepting_by_sms_hangs_up_the_call_still_ringing_for_the_same_alert(
    start_service: Start, roster: None, sessions: sessionmaker[Session]
) -> None:
    both = [{"after_s": 0, "action": "notify_unit", "channels": ["sms", "voice"]}]
    service = start_service(escalation=fast_escalation(both))
    store = sandbox(service)
    incident_id = press(service, "accept-hangs-up-1")
    [call] = eventually(lambda: [c for c in calls_to(store, POL01) if c.status == "ringing"], timeout=15)
    reply_sms(service, POL01, "YA")
    eventually(lambda: (ended := store.call(call.sid)) is not None and ended.status == "canceled", timeout=10)
    modify = [r for r in store.requests if r.path.endswith(f"/Calls/{call.sid}.json") and r.method == "POST"]
    assert [r.form.get("Status") for r in modify] == [["canceled"]]
    # The timeline row is written once Twilio has answered the hang-up, a moment after the sandbox saw it.
    eventually(lambda: "call_ended" in kinds(sessions, incident_id))
    incident_kinds = kinds(sessions, incident_id)
    assert incident_kinds.index("accepted") < incident_kinds.index("call_ended")


def test_accepting_cancels_the_pages_of_the_same_assignment_not_yet_sent(
    start_service: Start, roster: None, sessions: sessionmaker[Session]
) -> None:
    service = start_service(
        escalation=fast_escalation([{"after_s": 0, "action": "notify_unit", "channels": ["sms", "voice"]}])
    )
    store = sandbox(service)
    store.outage("error", 30, status=500)  # nothing gets out: both pages wait in the outbox
    incident_id = press(service, "accept-cancels-1")
    eventually(lambda: all(n.attempts >= 1 for n in notifications(sessions)) and len(notifications(sessions)) == 2)
    # The unit heard of it another way (the radio) and accepts by SMS, which reaches us as a webhook.
    with sessions() as session:
        code = session.execute(select(Notification.alert_code)).scalars().first()
    reply_sms(service, POL01, f"YA {code}")
    eventually(lambda: {n.state for n in notifications(sessions)} == {"cancelled"}, timeout=10)
    assert kinds(sessions, incident_id).count("notification_cancelled") == 2


def test_a_long_outage_of_calls_is_told_to_the_supervisors_by_sms(
    start_service: Start, roster: None, sessions: sessionmaker[Session]
) -> None:
    voice_only = [{"after_s": 0, "action": "notify_unit", "channels": ["voice"]}]
    service = start_service(
        escalation=fast_escalation(voice_only, auditor_every_s=0.5),
        twilio={"retry_backoff_s": 0.1, "outage_alert_after_s": 1},
    )
    store = sandbox(service)
    store.outage("error", 3600, status=500, resource="Calls")  # only calls fail; Messages still works
    incident_id = press(service, "calls-down-1")
    [warning] = eventually(lambda: texts_to(store, SUP_POL), timeout=20)
    assert "PERINGATAN" in warning and "telepon" in warning and "Twilio" in warning
    with sessions() as session:
        [outage] = session.execute(select(ProviderOutage)).scalars()
        alerted = session.execute(
            select(TimelineEvent).where(TimelineEvent.kind == "provider_outage_alerted")
        ).scalar_one()
    assert (outage.channel, outage.ended_at, alerted.incident_id) == ("voice", None, incident_id)
    time.sleep(1.5)
    assert len(texts_to(store, SUP_POL)) == 1  # once per outage, not per audit

    store.end_outages()
    eventually(lambda: calls_to(store, POL01), timeout=15)
    eventually(lambda: _outages_open(sessions) == 0, timeout=10)


def _outages_open(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return len(session.execute(select(ProviderOutage).where(ProviderOutage.ended_at.is_(None))).scalars().all())
