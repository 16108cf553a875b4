"""The board tells the truth about urgency: nobody coming first, every cell in words, and ownership.

Incidents are made through the real call path (API through a console session) and then put into
the state under test by writing the database, as the engine would: "unanswered" is the state the
engine gives an incident whose escalation policy ran out (an exhausted assignment).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from devices.models import Device
from dispatch.console import board
from dispatch.models import Assignment, EscalationStep, Incident, TimelineEvent, User
from dispatch.service import DispatchService
from foundation.clock import utcnow
from foundation.db import transaction
from responders.models import Unit
from tests.conftest import eventually
from tests.test_console_web import (
    Browser,
    users,  # noqa: F401  (the fixture, shared)
)

Start = Callable[..., DispatchService]
POLICY = [
    {"after_s": 0, "action": "notify_unit", "channels": ["sms"]},
    {"after_s": 600, "action": "supervisor", "channels": ["sms"]},
]
NEAR_JATI = (-7.7543, 113.2159)


@pytest.fixture
def service(start_service: Start, roster: None, users: dict[str, int]) -> DispatchService:  # noqa: F811
    policies = {s: POLICY for s in ("police", "disaster", "ambulance")}
    return start_service(escalation={"policies": policies, "repeat": 0})


def log_call(browser: Browser, call_id: str, **fields: Any) -> int:
    body = {"call_id": call_id, "services": ["police"], "lat": NEAR_JATI[0], "lon": NEAR_JATI[1], **fields}
    response = browser.http.post(
        browser.base + "/api/calls", json=body, headers={"X-CSRF-Token": browser.csrf}, timeout=20
    )
    assert response.status_code == 201, response.text
    return int(response.json()["incident_id"])


def paged(sessions: sessionmaker[Session], incident_id: int) -> Assignment:
    """Wait until the first step paged a unit (the notify_unit step ran)."""

    def check() -> Assignment | None:
        with sessions() as session:
            a = session.execute(select(Assignment).where(Assignment.incident_id == incident_id)).scalar_one_or_none()
            return a if a is not None and a.dispatched_at is not None else None

    result: Assignment = eventually(check)
    return result


def make_unanswered(sessions: sessionmaker[Session], incident_id: int) -> None:
    """What the engine does when the policy is exhausted: assignment exhausted, incident unanswered."""
    paged(sessions, incident_id)
    with transaction(sessions) as session:
        session.execute(
            update(EscalationStep)
            .where(EscalationStep.incident_id == incident_id, EscalationStep.state == "pending")
            .values(state="cancelled")
        )
        session.execute(update(Assignment).where(Assignment.incident_id == incident_id).values(state="exhausted"))
        session.execute(update(Incident).where(Incident.id == incident_id).values(state="unanswered"))


def accept(sessions: sessionmaker[Session], incident_id: int, *, on_scene: bool = False) -> None:
    with transaction(sessions) as session:
        a = session.execute(select(Assignment).where(Assignment.incident_id == incident_id)).scalar_one()
        session.execute(
            update(EscalationStep)
            .where(EscalationStep.incident_id == incident_id, EscalationStep.state == "pending")
            .values(state="cancelled")
        )
        a.state = "on_scene" if on_scene else "accepted"
        a.accepted_unit_id, a.accepted_at = a.unit_id, a.dispatched_at
        session.get_one(Incident, incident_id).state = "on_scene" if on_scene else "acknowledged"


def backdate(sessions: sessionmaker[Session], incident_id: int, seconds: float) -> None:
    with transaction(sessions) as session:
        incident = session.get_one(Incident, incident_id)
        incident.opened_at = incident.opened_at - timedelta(seconds=seconds)


def row_html(page: str, incident_id: int) -> str:
    """The inside of the board row of one incident."""
    return page.split(f'id="incident-{incident_id}"')[1].split(">", 1)[1].split("</tr>")[0]


def visible(html: str) -> str:
    """The text a person reads (tags and attributes removed)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]*>", " ", html))


def board_json(browser: Browser) -> list[dict[str, Any]]:
    response = browser.get("/console/board.json")
    assert response.status_code == 200
    rows: list[dict[str, Any]] = response.json()["incidents"]
    return rows


def test_buckets_put_nobody_coming_first_then_paging_oldest_first(
    service: DispatchService, sessions: sessionmaker[Session]
) -> None:
    browser = Browser(service)
    browser.login("budi")
    on_scene = log_call(browser, "C-scene")
    accepted = log_call(browser, "C-accepted")
    young = log_call(browser, "C-young")
    old = log_call(browser, "C-old")
    nobody = log_call(browser, "C-nobody")
    for incident_id in (on_scene, accepted, young, old):
        paged(sessions, incident_id)
    accept(sessions, on_scene, on_scene=True)
    accept(sessions, accepted)
    backdate(sessions, old, 75)
    make_unanswered(sessions, nobody)

    rows = board_json(browser)
    assert [(r["id"], r["bucket"]) for r in rows] == [
        (nobody, "attention"),
        (old, "paging"),
        (young, "paging"),
        (accepted, "en_route"),
        (on_scene, "on_scene"),
    ]
    assert rows[0]["alarm"] is True and rows[0]["state"] == "unanswered"
    assert rows[1]["age_level"] == "late" and rows[2]["age_level"] == "ok"

    page = browser.get("/console/").text
    for name, count in (("attention", 1), ("paging", 2), ("en_route", 1), ("on_scene", 1)):
        assert f'data-bucket-count="{name}">{count}<' in page
    assert (
        page.index(f'id="incident-{nobody}"')
        < page.index(f'id="incident-{old}"')
        < page.index(f'id="incident-{young}"')
    )
    assert 'data-alarm="1"' in page.split(f'id="incident-{nobody}"')[1].split(">")[0]
    assert "tak terjawab" in page and "tak ada jawaban" in page


def test_every_cell_says_what_it_means_and_badges_follow_the_current_state(
    service: DispatchService, sessions: sessionmaker[Session]
) -> None:
    browser = Browser(service)
    browser.login("budi")
    described = log_call(browser, "C-desc", description="Pencurian di toko emas, pelaku bersenjata", priority=1)
    pinned = log_call(browser, "C-pin")
    paged(sessions, described)
    paged(sessions, pinned)

    rows = {r["id"]: r for r in board_json(browser)}
    step = rows[described]["assignments"][0]["step"]
    assert step == {"round": 1, "seq": 1, "of": 2, "what": "sms", "unit_id": "POL-01"}
    page = browser.get("/console/").text
    row = row_html(page, described)
    assert "putaran 1 · langkah 1 dari 2: SMS" in row
    assert "lalu supervisor dalam" in row
    assert "POL-01" in row and "memanggil" in row
    assert "prioritas 1" in row and "Pencurian di toko emas" in row
    pin_row = row_html(page, pinned)
    assert "pin di peta (-7.75430, 113.21590)" in pin_row and "tanpa keterangan" in pin_row

    # A supervisor step that ran before the acceptance leaves no badge and no step once accepted.
    with transaction(sessions) as session:
        session.execute(
            update(EscalationStep)
            .where(EscalationStep.incident_id == described, EscalationStep.action == "supervisor")
            .values(state="done", done_at=EscalationStep.due_at, result={"channels": ["sms"]})
        )
    assert {r["id"]: r for r in board_json(browser)}[described]["supervisor"] is True
    accept(sessions, described)
    after = {r["id"]: r for r in board_json(browser)}[described]
    assert after["supervisor"] is False and after["assignments"][0]["step"] is None
    english = Browser(service)
    english.login("budi")
    english.post("/console/language", {"lang": "en"})
    row = visible(row_html(english.get("/console/").text, described))
    assert "POL-01" in row and "accepted" in row and "supervisor" not in row and "1/2" not in row


def test_take_ownership_stops_the_alarm_and_is_on_the_timeline(
    service: DispatchService, sessions: sessionmaker[Session]
) -> None:
    dispatcher = Browser(service)
    dispatcher.login("budi")
    nobody = log_call(dispatcher, "C-own")
    make_unanswered(sessions, nobody)
    board_page = dispatcher.get("/console/").text
    assert f'/console/incidents/{nobody}/ownership"' in board_page

    done = dispatcher.post(f"/console/incidents/{nobody}/ownership", {"back": "board"})
    assert done.status_code == 200 and done.url.endswith("/console/")
    assert f"Anda mengambil alih kejadian #{nobody}." in done.text
    row = next(r for r in board_json(dispatcher) if r["id"] == nobody)
    assert row["alarm"] is False and row["owned_by"] == "budi" and row["bucket"] == "attention"
    with sessions() as session:
        incident = session.get_one(Incident, nobody)
        assert incident.owned_by == "user:budi" and incident.owned_at is not None
        assert incident.state == "unanswered"  # still true: nobody accepted
        event = session.execute(
            select(TimelineEvent).where(TimelineEvent.incident_id == nobody, TimelineEvent.kind == "ownership_taken")
        ).scalar_one()
        assert event.actor == "user:budi" and event.data["state"] == "unanswered"

    # A second dispatcher is told who has it, in their language; the API says it in English.
    with transaction(sessions) as session:
        session.execute(update(User).where(User.username == "admin").values(language="en"))
    other = Browser(service)
    other.login("admin")
    refused = other.post(f"/console/incidents/{nobody}/ownership")
    assert refused.status_code == 409 and "budi already took ownership of incident" in refused.text
    api = other.http.post(
        f"{other.base}/api/incidents/{nobody}/ownership", headers={"X-CSRF-Token": other.csrf}, timeout=20
    )
    assert api.status_code == 409 and api.json() == {"error": f"budi already took ownership of incident {nobody}"}


def test_ownership_over_the_api_and_its_refusals(service: DispatchService, sessions: sessionmaker[Session]) -> None:
    dispatcher = Browser(service)
    dispatcher.login("budi")
    paging = log_call(dispatcher, "C-paging")
    nobody = log_call(dispatcher, "C-api-own")
    paged(sessions, paging)
    make_unanswered(sessions, nobody)
    url = dispatcher.base + "/api/incidents/{}/ownership"
    headers = {"X-CSRF-Token": dispatcher.csrf}

    nothing = dispatcher.http.post(url.format(paging), headers=headers, timeout=20)
    assert nothing.status_code == 409 and "nothing to take ownership of" in nothing.json()["error"]
    assert dispatcher.http.post(url.format(999999), headers=headers, timeout=20).status_code == 404
    taker = Browser(service)
    taker.login("rina")
    assert taker.http.post(url.format(nobody), headers={"X-CSRF-Token": taker.csrf}, timeout=20).status_code == 403
    assert 'class="inline own-form"' not in taker.get("/console/").text  # call-takers get no board actions

    done = dispatcher.http.post(url.format(nobody), headers=headers, timeout=20)
    assert done.status_code == 200 and done.json()["state"] == "unanswered"
    spec = dispatcher.http.get(dispatcher.base + "/api/openapi.json", timeout=20).json()
    assert "/api/incidents/{incident_id}/ownership" in spec["paths"]


def test_the_assign_list_has_only_the_incidents_services_nearest_first(
    service: DispatchService, sessions: sessionmaker[Session]
) -> None:
    browser = Browser(service)
    browser.login("budi")
    incident_id = log_call(browser, "C-assign", services=["ambulance"])
    paged(sessions, incident_id)
    row = next(r for r in board_json(browser) if r["id"] == incident_id)
    choices = row["assignable"]
    assert choices and {c["service"] for c in choices} == {"ambulance"}
    distances = [c["distance_m"] for c in choices]
    assert distances == sorted(distances)
    page = browser.get(f"/console/incidents/{incident_id}").text
    options = page.split('id="assign-unit"')[1].split("</select>")[0]
    assert "POL-" not in options and "AMB-" in options and (" km ·" in options or " m ·" in options)
    assert "siaga" in options or "bertugas" in options


def test_bucket_rules() -> None:
    def urgency(state: str, *assignments: str, review: bool = False, owned: bool = False) -> board.Urgency:
        return board.Urgency(state, review, False, assignments, 10.0, owned)

    assert board.bucket(urgency("unanswered", "exhausted")) == "attention"
    assert board.bucket(urgency("dispatched", "active", review=True)) == "attention"
    assert board.bucket(urgency("dispatched", "active", "accepted")) == "paging"  # one service still paging
    assert board.bucket(urgency("acknowledged", "accepted", "on_scene")) == "en_route"
    assert board.bucket(urgency("on_scene", "on_scene", "resolved")) == "on_scene"
    assert board.alarm(urgency("unanswered", "exhausted"))
    assert not board.alarm(urgency("unanswered", "exhausted", owned=True))
    assert [board.age_level(s) for s in (10, 50, 61)] == ["ok", "warn", "late"]
    assert board.step_what("notify_unit", ["sms", "voice"]) == "sms_voice"
    assert board.step_what("notify_unit", ["chat", "voice"]) == "sms_voice"  # a chat step is a text


def test_units_page_shows_pending_pages_and_the_current_incident(
    service: DispatchService, sessions: sessionmaker[Session]
) -> None:
    browser = Browser(service)
    browser.login("rina")
    paging = log_call(browser, "C-units-paging")
    accepted = log_call(browser, "C-units-accepted", services=["ambulance"])
    paged(sessions, paging)
    paged(sessions, accepted)
    accept(sessions, accepted)
    with transaction(sessions) as session:
        amb = session.execute(select(Assignment).where(Assignment.incident_id == accepted)).scalar_one()
        session.execute(
            update(Unit).where(Unit.id == amb.accepted_unit_id).values(status="busy", current_incident_id=accepted)
        )
    page = browser.get("/console/units").text
    pol = visible(page.split('data-unit="POL-01"')[1].split("</tr>")[0])
    assert f"#{paging} Polisi, menunggu jawaban" in pol
    unit = visible(page.split(f'data-unit="{amb.accepted_unit_id}"')[1].split("</tr>")[0])
    assert f"#{accepted}" in unit and "bertugas" in unit and "menunggu jawaban" not in unit


def test_a_device_never_seen_is_not_called_healthy(service: DispatchService, sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        session.execute(update(Device).where(Device.id == "BTN-0002").values(last_seen_at=utcnow(), battery=90))
    browser = Browser(service)
    browser.login("rina")
    page = browser.get("/console/devices").text
    never = visible(page.split('data-device="BTN-0001"')[1].split("</tr>")[0])
    assert "belum pernah terlihat" in never and "baik" not in never
    seen = visible(page.split('data-device="BTN-0002"')[1].split("</tr>")[0])
    assert "baik" in seen and "belum pernah terlihat" not in seen


def test_a_failing_phone_provider_is_said_above_every_incident_until_it_answers_again(
    service: DispatchService, sessions: sessionmaker[Session]
) -> None:
    from dispatch.models import ProviderOutage

    browser = Browser(service)
    browser.login("budi")
    assert 'class="outage' not in browser.get("/console/board/rows").text
    started = utcnow().replace(hour=13, minute=30, second=27, microsecond=0)  # 20:30:27 WIB
    with transaction(sessions) as session:
        session.add(ProviderOutage(provider="Twilio", channel="sms", started_at=started, last_failure_at=started))
    banner = browser.get("/console/board/rows").text
    assert "Twilio tidak terjangkau untuk SMS sejak 20:30:27 WIB" in banner
    with transaction(sessions) as session:
        session.execute(update(ProviderOutage).values(ended_at=utcnow()))
    assert 'class="outage' not in browser.get("/console/board/rows").text
