"""Escalation semantics: what a failed page brings forward, how rounds start, when nobody answers.

Through the real broker, database and twilio SDK against the built-in sandbox; the
default policy's timeline on a simulated clock is in tests/test_escalation_timeline.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from devices.simulator import SimulatedDevice
from dispatch.models import Assignment, Incident, TimelineEvent
from dispatch.service import DispatchService
from foundation.db import transaction
from responders.models import Unit
from tests.conftest import eventually
from tests.responder_helpers import (
    UNIT_PHONES,
    api_token,
    calls_to,
    fast_escalation,
    kinds,
    notifications,
    reply_sms,
    sandbox,
    texts_to,
)

Start = Callable[..., DispatchService]
POL01, POL02, SUP = UNIT_PHONES["POL-01"], UNIT_PHONES["POL-02"], UNIT_PHONES["SUP-POL"]


def press(broker_url: str, device: str = "BTN-0001") -> None:
    with SimulatedDevice(broker_url, device) as button:
        button.wait_status(button.press())


def events(sessions: sessionmaker[Session], kind: str) -> list[dict[str, Any]]:
    with sessions() as session:
        rows = session.execute(select(TimelineEvent).where(TimelineEvent.kind == kind).order_by(TimelineEvent.id))
        return [{**e.data, "unit_id": e.unit_id, "at": e.at} for e in rows.scalars()]


def pages(sessions: sessionmaker[Session]) -> list[tuple[str, str]]:
    return [(n.recipient_id, n.channel) for n in notifications(sessions)]


def post_status(service: DispatchService, path: str, form: dict[str, str]) -> None:
    """A status callback signed exactly like Twilio's."""
    url = f"{service.public_base}/twilio/{path}"
    signature = RequestValidator(service.twilio_auth_token).compute_signature(url, form)
    answer = requests.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=20)
    assert answer.status_code == 204


# -- 1. a page that definitely failed brings the next step forward ------------------------------

SLOW_AFTER_CALL = [
    {"after_s": 0, "action": "notify_unit", "channels": ["voice"]},
    {"after_s": 120, "action": "next_unit", "channels": ["sms"]},
    {"after_s": 240, "action": "supervisor", "channels": ["sms"]},
]


def test_a_call_nobody_picks_up_pages_the_next_unit_at_once_and_says_why(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(escalation=fast_escalation(SLOW_AFTER_CALL))
    store = sandbox(service)
    press(broker_url)
    [call] = eventually(lambda: calls_to(store, POL01))
    port = service.web_port
    requests.post(f"http://127.0.0.1:{port}/sandbox/twilio/phones/calls/{call.sid}/no-answer", timeout=20)
    eventually(lambda: texts_to(store, POL02), timeout=15)  # not 120 s later
    [forward] = events(sessions, "step_brought_forward")
    assert (forward["reason"], forward["action"], forward["round"], forward["seq"]) == ("no-answer", "next_unit", 0, 1)
    assert forward["at"] <= events(sessions, "step_next_unit")[0]["at"]


@pytest.mark.parametrize("status", ["busy", "failed"])
def test_a_busy_or_failed_call_brings_the_next_step_forward(
    status: str, start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(escalation=fast_escalation(SLOW_AFTER_CALL))
    store = sandbox(service)
    press(broker_url)
    [call] = eventually(lambda: calls_to(store, POL01))
    post_status(service, "voice/status", {"CallSid": call.sid, "CallStatus": status, "AccountSid": call.account_sid})
    eventually(lambda: texts_to(store, POL02), timeout=15)
    assert [e["reason"] for e in events(sessions, "step_brought_forward")] == [status]


def test_an_sms_refused_for_good_brings_the_next_step_forward(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(
        escalation=fast_escalation(
            [
                {"after_s": 0, "action": "notify_unit", "channels": ["sms"]},
                {"after_s": 120, "action": "notify_unit", "channels": ["voice"]},
            ]
        )
    )
    sandbox(service).undeliverable_numbers[POL01] = 21614  # a landline: no SMS will ever arrive
    press(broker_url)
    eventually(lambda: calls_to(sandbox(service), POL01), timeout=15)
    [forward] = events(sessions, "step_brought_forward")
    assert (forward["reason"], forward["action"], forward["seq"]) == ("permanent_sms_failure", "notify_unit", 1)


def test_an_sms_refused_while_the_same_steps_call_rings_waits_for_the_call(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(
        escalation=fast_escalation(
            [
                {"after_s": 0, "action": "notify_unit", "channels": ["sms", "voice"]},
                {"after_s": 120, "action": "next_unit", "channels": ["sms"]},
            ]
        )
    )
    store = sandbox(service)
    store.undeliverable_numbers[POL01] = 21614
    press(broker_url)
    [call] = eventually(lambda: calls_to(store, POL01))
    eventually(lambda: "sms_undelivered" in kinds(sessions, 1))
    assert "step_brought_forward" not in kinds(sessions, 1)  # the call may still be answered
    requests.post(
        f"http://127.0.0.1:{service.web_port}/sandbox/twilio/phones/calls/{call.sid}/no-answer", timeout=20
    ).raise_for_status()
    eventually(lambda: texts_to(store, POL02), timeout=15)
    assert [e["reason"] for e in events(sessions, "step_brought_forward")] == ["no-answer"]


def test_a_failed_page_of_an_earlier_step_moves_nothing(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(
        escalation=fast_escalation(
            [
                {"after_s": 0, "action": "notify_unit", "channels": ["voice"]},
                {"after_s": 1, "action": "next_unit", "channels": ["sms"]},
                {"after_s": 240, "action": "supervisor", "channels": ["sms"]},
            ]
        )
    )
    store = sandbox(service)
    press(broker_url)
    [call] = eventually(lambda: calls_to(store, POL01))
    eventually(lambda: texts_to(store, POL02))  # the escalation has moved on to POL-02
    requests.post(
        f"http://127.0.0.1:{service.web_port}/sandbox/twilio/phones/calls/{call.sid}/no-answer", timeout=20
    ).raise_for_status()
    eventually(lambda: "voice_no_answer" in kinds(sessions, 1))
    # POL-02 keeps its full time: POL-01's old call ringing out says nothing about POL-02.
    assert "step_brought_forward" not in kinds(sessions, 1)
    assert texts_to(store, SUP) == []


# -- 2. every round starts from the nearest available unit -------------------------------------


def test_a_new_round_starts_again_from_the_nearest_unit(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    start_service(escalation=fast_escalation(repeat=1, round_gap_s=1))
    press(broker_url)
    eventually(lambda: "escalation_exhausted" in kinds(sessions, 1), timeout=40)
    one_round = [
        ("POL-01", "sms"),
        ("POL-01", "voice"),
        ("POL-02", "sms"),
        ("POL-02", "voice"),
        ("SUP-POL", "sms"),
        ("SUP-POL", "voice"),
    ]
    assert pages(sessions) == one_round + one_round  # round 2 pages POL-01, the nearest, first again
    [started] = events(sessions, "round_started")
    assert (started["round"], started["readmitted"]) == (1, ["POL-01"])
    assert [(e["unit_id"], e["round"]) for e in events(sessions, "unit_timed_out")] == [
        ("POL-01", 0),
        ("POL-02", 0),  # still being paged when round 1 ended
        ("POL-01", 1),
    ]


def test_a_unit_that_declined_is_never_paged_again_for_the_incident(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(escalation=fast_escalation(repeat=1, round_gap_s=1))
    store = sandbox(service)
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        button.press()
        eventually(lambda: texts_to(store, POL01))
        reply_sms(service, POL01, "TOLAK")
        eventually(lambda: "escalation_exhausted" in kinds(sessions, 1), timeout=40)
    assert [p for p in pages(sessions) if p[0] == "POL-01"] == [("POL-01", "sms")]
    units = [recipient for recipient, channel in pages(sessions) if channel == "sms" and recipient != "SUP-POL"]
    # Round 2 starts from the nearest unit that has not declined: POL-02, then POL-03.
    assert units == ["POL-01", "POL-02", "POL-02", "POL-03"]
    with sessions() as session:
        excluded = session.execute(select(Assignment)).scalar_one().excluded
    assert excluded == {"POL-01": "declined", "POL-02": "no answer"}  # POL-03 is the one being paged


# -- 3. a supervisor is paged at most once per round -------------------------------------------


def test_a_supervisor_paged_because_no_unit_was_left_is_not_paged_again_in_that_round(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    with transaction(sessions) as session:
        session.execute(update(Unit).where(Unit.service == "police", Unit.id != "POL-01").values(status="off_duty"))
    start_service(escalation=fast_escalation(repeat=1, round_gap_s=1))
    press(broker_url)
    eventually(lambda: "escalation_exhausted" in kinds(sessions, 1), timeout=40)
    one_round = [("POL-01", "sms"), ("POL-01", "voice"), ("SUP-POL", "sms"), ("SUP-POL", "voice")]
    assert pages(sessions) == one_round + one_round  # once per round, by the next_unit step
    next_unit = events(sessions, "step_next_unit")
    supervisor = events(sessions, "step_supervisor")
    assert [s["notifications"] for s in next_unit] == [2, 2]
    assert [(s["notifications"], s["already_paged"]) for s in supervisor] == [
        (0, next_unit[0]["step_id"]),
        (0, next_unit[1]["step_id"]),
    ]
    assert "no_supervisor" not in kinds(sessions, 1)


# -- 5. exhaustion is a state of its own ---------------------------------------------------------


def test_nobody_accepting_makes_the_incident_unanswered_and_the_button_is_told(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(escalation=fast_escalation())
    store = sandbox(service)
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        press_id = button.press()
        states = [button.wait_status(press_id, timeout_s=30)["state"] for _ in range(3)]
        assert states == ["received", "dispatched", "unanswered"]
        with sessions() as session:
            incident = session.execute(select(Incident)).scalar_one()
            assert (incident.state, incident.needs_review) == ("unanswered", True)
            assert session.execute(select(Assignment)).scalar_one().state == "exhausted"
        # A late acceptance still counts, and moves the incident on as usual.
        reply_sms(service, POL02, "YA")
        accepted = button.wait_status(press_id, timeout_s=30)
    assert (accepted["state"], accepted["unit_name"]) == ("acknowledged", "Patroli Polsek Mayangan")
    assert [e["state"] for e in events(sessions, "state_changed")] == ["unanswered", "acknowledged"]
    # The supervisor's page was queued before the exhaustion; on a loaded machine it may still be on its way.
    assert eventually(lambda: texts_to(store, SUP), timeout=20)


def test_a_dispatcher_assigning_a_unit_after_exhaustion_makes_it_dispatched_again(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    token = api_token(sessions, "budi", "dispatcher")
    service = start_service(escalation=fast_escalation())
    press(broker_url)
    eventually(lambda: "escalation_exhausted" in kinds(sessions, 1), timeout=30)
    answer = requests.post(
        f"http://127.0.0.1:{service.web_port}/api/incidents/1/assign",
        json={"unit_id": "POL-04"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=20,
    )
    assert answer.status_code == 200
    with sessions() as session:
        assert session.get_one(Incident, 1).state == "dispatched"
    eventually(lambda: texts_to(sandbox(service), UNIT_PHONES["POL-04"]))


def test_the_resident_is_told_nobody_has_answered_yet_never_that_help_is_coming(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(escalation=fast_escalation(resident_sms=True))
    press(broker_url)
    eventually(lambda: "escalation_exhausted" in kinds(sessions, 1), timeout=30)
    resident = "+628120000001"  # BTN-0001's registered phone
    texts = eventually(lambda: len(texts_to(sandbox(service), resident)) == 2 and texts_to(sandbox(service), resident))
    assert "sedang dihubungi" in texts[0]  # dispatched
    assert texts[1] == (
        "Belum ada petugas yang menjawab panggilan untuk kejadian 1. Pusat komando menanganinya sekarang. "
        "Bila bisa, hubungi 112."
    )
