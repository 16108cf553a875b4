"""What a responder's answer does, and what the responder is told back, in Indonesian or English."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from devices.simulator import SimulatedDevice
from dispatch.models import Assignment, Incident
from dispatch.service import DispatchService
from responders.models import Unit
from tests.conftest import eventually
from tests.responder_helpers import (
    UNIT_PHONES,
    fast_escalation,
    kinds,
    replies_to,
    reply_sms,
    sandbox,
    texts_to,
)

Start = Callable[..., DispatchService]
POL01, POL02, POL04 = UNIT_PHONES["POL-01"], UNIT_PHONES["POL-02"], UNIT_PHONES["POL-04"]
SLOW = fast_escalation(
    [
        {"after_s": 0, "action": "notify_unit", "channels": ["sms"]},
        {"after_s": 120, "action": "supervisor", "channels": ["sms"]},
    ]
)
BOTH_UNITS = fast_escalation(
    [
        {"after_s": 0, "action": "notify_unit", "channels": ["sms"]},
        {"after_s": 0.5, "action": "next_unit", "channels": ["sms"]},
        {"after_s": 120, "action": "supervisor", "channels": ["sms"]},
    ]
)


def answer(service: DispatchService, phone: str, body: str) -> str:
    before = len(replies_to(sandbox(service), phone))
    reply_sms(service, phone, body)
    return str(eventually(lambda: replies_to(sandbox(service), phone)[before:])[0])


def test_arrival_and_completion_close_the_incident_and_free_the_unit(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(escalation=SLOW)
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        press_id = button.press()
        eventually(lambda: texts_to(sandbox(service), POL01))
        for verb in ("OK", "TIBA", "SELESAI"):
            answer(service, POL01, verb)
        states = []
        while "resolved" not in states:
            states.append(button.wait_status(press_id)["state"])
    assert states[-3:] == ["acknowledged", "on_scene", "resolved"]
    with sessions() as session:
        incident = session.query(Incident).one()
        unit = session.get_one(Unit, "POL-01")
    assert (incident.state, incident.closed_at is not None) == ("resolved", True)
    assert (unit.status, unit.current_incident_id) == ("available", None)
    assert [k for k in kinds(sessions, incident.id) if k in ("accepted", "on_scene", "resolved")] == [
        "accepted",
        "on_scene",
        "resolved",
    ]


def test_a_second_unit_accepting_late_is_told_who_already_has_it(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(escalation=BOTH_UNITS)
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        button.wait_status(button.press())
    eventually(lambda: texts_to(sandbox(service), POL02))
    answer(service, POL02, "YA")
    late = answer(service, POL01, "Y")
    assert "sudah diterima Patroli Polsek Mayangan pukul" in late
    with sessions() as session:
        assert session.query(Assignment).one().accepted_unit_id == "POL-02"


def test_a_bare_verb_with_two_open_alerts_asks_which_one(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(escalation=SLOW)
    with SimulatedDevice(broker_url, "BTN-0001") as first, SimulatedDevice(broker_url, "BTN-0011") as second:
        first.wait_status(first.press())
        second.wait_status(second.press())
    eventually(lambda: len(texts_to(sandbox(service), POL01)) == 2)
    question = answer(service, POL01, "ya")
    assert "beberapa peringatan terbuka" in question and "1, 2" in question
    with sessions() as session:
        assert {a.state for a in session.query(Assignment)} == {"active"}
    assert "2" in answer(service, POL01, "ya 2")
    with sessions() as session:
        states = sorted(a.state for a in session.query(Assignment))
    assert states == ["accepted", "active"]


def test_an_english_unit_gets_english_texts_and_replies(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(escalation=SLOW)
    with SimulatedDevice(broker_url, "BTN-0007") as button:  # Jrebeng Lor: nearest police is POL-04 (en)
        button.wait_status(button.press(service="police"))
    [sms] = eventually(lambda: texts_to(sandbox(service), POL04))
    assert "POLICE" in sms and "Reply" in sms
    assert answer(service, POL04, "yes").startswith("Thank you, you accepted #1")


def test_unknown_numbers_and_gibberish_get_a_capped_number_of_error_replies(
    start_service: Start, roster: None, broker_url: str
) -> None:
    service = start_service(escalation=SLOW, twilio={"error_replies_per_hour": 2})
    stranger = "+628999000111"
    first = answer(service, stranger, "Y 1")
    assert "tidak terdaftar" in first and "112" in first
    answer(service, stranger, "Y 1")
    before = len(replies_to(sandbox(service), stranger))
    reply_sms(service, stranger, "Y 1")
    assert len(replies_to(sandbox(service), stranger)) == before  # third error within the hour: silence


def test_a_supervisor_cannot_accept_on_behalf_of_a_unit(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(escalation=fast_escalation([{"after_s": 0, "action": "supervisor", "channels": ["sms"]}]))
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        button.wait_status(button.press())
    supervisor = UNIT_PHONES["SUP-POL"]
    eventually(lambda: texts_to(sandbox(service), supervisor))
    assert "tidak dapat dilakukan" in answer(service, supervisor, "Y")
    with sessions() as session:
        assert session.query(Assignment).one().accepted_unit_id is None
