"""112 call records (MQTT and HTTP), the authenticated API, geocoding, and multi-agency dispatch."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import requests
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session, sessionmaker

from dispatch.auth import hash_password, issue_token
from dispatch.models import Assignment, Incident, User
from dispatch.service import DispatchService
from foundation.clock import utcnow
from foundation.db import transaction
from tests.conftest import count, eventually, mqtt_login
from tests.nominatim_fake import FakeNominatim, FakePlace
from tests.responder_helpers import UNIT_PHONES, fast_escalation, kinds, sandbox, texts_to

Start = Callable[..., DispatchService]
SLOW = fast_escalation([{"after_s": 0, "action": "notify_unit"}, {"after_s": 120, "action": "supervisor"}])
CALL = {
    "call_id": "C-1",
    "ts": "2026-11-23T08:00:00+07:00",
    "caller_number": "+6281234000111",
    "call_taker": "rina",
    "services": ["police"],
    "priority": 1,
    "classification": "normal",
    "lat": -7.7540,
    "lon": 113.2160,
    "accuracy_m": 15,
    "description": "perampokan di toko emas",
}


@pytest.fixture
def tokens(sessions: sessionmaker[Session]) -> dict[str, str]:
    """A bearer token per role."""
    issued = {}
    with transaction(sessions) as session:
        for role in ("call_taker", "dispatcher", "admin"):
            user = User(username=f"{role}-1", name=role, role=role, password_hash=hash_password("pw"))
            session.add(user)
            session.flush()
            issued[role] = issue_token(session, user, "tests", utcnow())
    return issued


def api(service: DispatchService, method: str, path: str, token: str | None, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(
        method, f"http://127.0.0.1:{service.web_port}/api{path}", headers=headers, timeout=20, **kwargs
    )


class CallCenter:
    """The call-center system: publishes call records, listens to their status."""

    def __init__(self, url: str) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cc-{uuid.uuid4().hex[:6]}")
        address = mqtt_login(self.client, url, "callcenter")
        self.client.on_message = lambda _c, _u, msg: self.statuses.append(json.loads(msg.payload))
        self.client.connect(address.host, address.port)
        self.client.subscribe("calls/112/status/#", qos=1)
        self.client.loop_start()

    def publish(self, record: dict[str, Any]) -> None:
        self.client.publish("calls/112", json.dumps(record), qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def call_center(broker_url: str) -> Iterator[CallCenter]:
    center = CallCenter(broker_url)
    yield center
    center.close()


def test_a_call_record_over_mqtt_becomes_a_dispatched_incident_and_the_call_center_hears_it(
    start_service: Start, roster: None, sessions: sessionmaker[Session], call_center: CallCenter
) -> None:
    service = start_service(escalation=SLOW)
    call_center.publish(CALL)
    eventually(lambda: texts_to(sandbox(service), UNIT_PHONES["POL-01"]))
    eventually(lambda: "dispatched" in [s["state"] for s in call_center.statuses if s.get("call_id") == "C-1"])
    states = [s["state"] for s in call_center.statuses if s.get("call_id") == "C-1"]
    assert states[0] == "received" and states[-1] == "dispatched"
    with sessions() as session:
        incident = session.query(Incident).one()
    assert (incident.source, incident.call_id, incident.location_source) == ("call", "C-1", "handset")
    assert "call_logged" in kinds(sessions, incident.id)


def test_the_same_call_id_twice_is_one_incident(
    start_service: Start, roster: None, sessions: sessionmaker[Session], call_center: CallCenter, tokens: dict[str, str]
) -> None:
    service = start_service(escalation=SLOW)
    call_center.publish(CALL)
    call_center.publish(CALL)
    eventually(lambda: count(sessions, Incident) == 1 and len([s for s in call_center.statuses]) >= 2)
    again = api(service, "POST", "/calls", tokens["call_taker"], json=CALL)
    assert again.status_code == 200 and again.json()["created"] is False
    assert count(sessions, Incident) == 1


@pytest.mark.parametrize("classification", ["prank", "ghost", "info"])
def test_prank_ghost_and_info_calls_are_recorded_but_never_dispatched(
    start_service: Start, roster: None, sessions: sessionmaker[Session], tokens: dict[str, str], classification: str
) -> None:
    service = start_service(escalation=SLOW)
    body = {**CALL, "call_id": f"C-{classification}", "classification": classification}
    response = api(service, "POST", "/calls", tokens["call_taker"], json=body)
    assert response.status_code == 201
    assert response.json()["state"] == "resolved"
    with sessions() as session:
        incident = session.query(Incident).one()
        assert (incident.classification, incident.disposition) == (classification, classification)
    assert count(sessions, Assignment) == 0
    assert sandbox(service).messages == []


def test_repeat_prank_callers_are_flagged_but_their_next_call_is_still_dispatched(
    start_service: Start, roster: None, sessions: sessionmaker[Session], tokens: dict[str, str]
) -> None:
    service = start_service(escalation=SLOW)
    for n in range(2):
        api(
            service,
            "POST",
            "/calls",
            tokens["call_taker"],
            json={**CALL, "call_id": f"P-{n}", "classification": "prank"},
        )
    real = api(service, "POST", "/calls", tokens["call_taker"], json={**CALL, "call_id": "P-real"}).json()
    assert (real["prank_count"], real["repeat_prank"]) == (2, True)
    assert real["state"] in ("received", "dispatched")
    eventually(lambda: texts_to(sandbox(service), UNIT_PHONES["POL-01"]))


def test_the_api_refuses_without_a_token_with_the_wrong_role_and_with_a_bad_body(
    start_service: Start, roster: None, tokens: dict[str, str]
) -> None:
    service = start_service(escalation=SLOW)
    assert api(service, "GET", "/incidents", None).status_code == 401
    assert api(service, "GET", "/incidents", "dsp_not-a-token").status_code == 401
    created = api(service, "POST", "/calls", tokens["call_taker"], json=CALL).json()
    forbidden = api(
        service, "POST", f"/incidents/{created['incident_id']}/cancel", tokens["call_taker"], json={"reason": "test"}
    )
    assert forbidden.status_code == 403 and "dispatcher" in forbidden.json()["error"]
    bad = api(service, "POST", "/calls", tokens["call_taker"], json={**CALL, "call_id": "C-9", "priority": 7})
    assert bad.status_code == 422
    assert "priority" in json.dumps(bad.json())
    missing = api(service, "POST", "/calls", tokens["call_taker"], json={"services": ["police"]})
    assert missing.status_code == 422 and "call_id" in json.dumps(missing.json())


def test_the_openapi_document_is_generated_from_the_code(start_service: Start, tokens: dict[str, str]) -> None:
    service = start_service()
    document = requests.get(f"http://127.0.0.1:{service.web_port}/api/openapi.json", timeout=10).json()
    paths = document["paths"]
    for path in (
        "/api/calls",
        "/api/incidents",
        "/api/incidents/{incident_id}",
        "/api/units",
        "/api/devices",
        "/api/incidents/{incident_id}/assign",
        "/api/incidents/{incident_id}/location",
    ):
        assert path in paths, path
    schemas = json.dumps(document["components"])
    assert "call_id" in schemas and "disposition" in schemas
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_an_address_is_geocoded_through_nominatims_real_client(
    start_service: Start, roster: None, sessions: sessionmaker[Session], tokens: dict[str, str]
) -> None:
    place = FakePlace(lat=-7.7560, lon=113.2150, display_name="Jalan Dr. Sutomo, Probolinggo", importance=0.62)
    with FakeNominatim({"Jl. Dr. Sutomo 12, Probolinggo": place}) as nominatim:
        service = start_service(
            escalation=SLOW,
            geocoding={"kind": "nominatim", "nominatim_domain": nominatim.domain, "nominatim_scheme": "http"},
        )
        body = {k: v for k, v in CALL.items() if k not in ("lat", "lon", "accuracy_m")}
        body["address"] = "Jl. Dr. Sutomo 12, Probolinggo"
        created = api(service, "POST", "/calls", tokens["call_taker"], json=body).json()
        assert nominatim.requests and nominatim.requests[0].user_agent == "probolinggo-dispatch"
    detail = api(service, "GET", f"/incidents/{created['incident_id']}", tokens["call_taker"]).json()
    assert (detail["lat"], detail["lon"], detail["location_source"]) == (-7.756, 113.215, "geocoded")
    assert detail["geocode"]["source"] == "nominatim" and detail["geocode"]["confidence"] == 0.62
    assert detail["address_text"] == "Jl. Dr. Sutomo 12, Probolinggo"


def test_an_address_nobody_knows_asks_the_call_taker_for_the_location_and_the_pin_dispatches(
    start_service: Start, roster: None, sessions: sessionmaker[Session], tokens: dict[str, str]
) -> None:
    service = start_service(escalation=SLOW)
    body = {k: v for k, v in CALL.items() if k not in ("lat", "lon", "accuracy_m")}
    body["address"] = "di belakang rumah pak haji yang catnya hijau"
    created = api(service, "POST", "/calls", tokens["call_taker"], json=body).json()
    assert created["location_needed"] is True
    assert count(sessions, Assignment) == 0  # nothing guessed, nothing dispatched
    moved = api(
        service,
        "POST",
        f"/incidents/{created['incident_id']}/location",
        tokens["call_taker"],
        json={"lat": -7.7540, "lon": 113.2160, "note": "caller described the mosque"},
    )
    assert moved.status_code == 200
    eventually(lambda: texts_to(sandbox(service), UNIT_PHONES["POL-01"]))
    assert "location_overridden" in kinds(sessions, created["incident_id"])


def test_an_address_whose_parts_disagree_is_not_dispatched_and_shows_both_places(
    start_service: Start, roster: None, sessions: sessionmaker[Session], tokens: dict[str, str]
) -> None:
    service = start_service(escalation=SLOW)
    body = {k: v for k, v in CALL.items() if k not in ("lat", "lon", "accuracy_m")}
    body["address"] = "Jl. Raya Bromo, Kel. Mayangan"  # the road's point is 5 km from Mayangan
    created = api(service, "POST", "/calls", tokens["call_taker"], json=body).json()
    assert created["location_needed"] is True
    detail = api(service, "GET", f"/incidents/{created['incident_id']}", tokens["call_taker"]).json()
    geocode = detail["geocode"]
    assert (detail["lat"], geocode["auto_dispatch"], geocode["conflicts"]) == (None, False, ["kelurahan Mayangan"])
    assert geocode["confidence"] < 0.6
    assert [c["name"] for c in geocode["candidates"]] == ["Jl. Raya Bromo", "Kel. Mayangan"]
    assert count(sessions, Assignment) == 0  # nobody sent to a place the address does not agree on
    [flag] = [e for e in detail["timeline"] if e["kind"] == "flagged_for_review"]
    assert flag["data"]["geocode_confidence"] == geocode["confidence"]
    # The timeline never says "found" for a place nobody may be sent to.
    assert "geocoded_uncertain" in [e["kind"] for e in detail["timeline"]]
    assert "geocoded" not in [e["kind"] for e in detail["timeline"]]
    chosen = geocode["candidates"][1]  # the call-taker picks Kel. Mayangan
    api(
        service,
        "POST",
        f"/incidents/{created['incident_id']}/location",
        tokens["call_taker"],
        json={"lat": chosen["lat"], "lon": chosen["lon"]},
    )
    eventually(lambda: texts_to(sandbox(service), UNIT_PHONES["POL-02"]))


def test_a_road_named_with_its_kelurahan_is_dispatched_to_the_roads_point_there(
    start_service: Start, roster: None, sessions: sessionmaker[Session], tokens: dict[str, str]
) -> None:
    service = start_service(escalation=SLOW)
    body = {k: v for k, v in CALL.items() if k not in ("lat", "lon", "accuracy_m")}
    body["address"] = "Jl. Soekarno-Hatta, Kel. Jati"
    created = api(service, "POST", "/calls", tokens["call_taker"], json=body).json()
    detail = api(service, "GET", f"/incidents/{created['incident_id']}", tokens["call_taker"]).json()
    assert (detail["lat"], detail["lon"], detail["location_source"]) == (-7.7479, 113.2231, "geocoded")
    assert "auto_dispatch" not in detail["geocode"] and "candidates" not in detail["geocode"]
    eventually(lambda: texts_to(sandbox(service), UNIT_PHONES["POL-02"]))  # Mayangan's unit, not Kademangan's


def test_the_operators_pin_beats_the_geocode(
    start_service: Start, roster: None, sessions: sessionmaker[Session], tokens: dict[str, str]
) -> None:
    service = start_service(escalation=SLOW)
    body = {k: v for k, v in CALL.items() if k not in ("lat", "lon", "accuracy_m")}
    body["address"] = "Kel. Kedopok"  # in the gazetteer: geocoded far south-west, near POL-03
    created = api(service, "POST", "/calls", tokens["call_taker"], json=body).json()
    detail = api(service, "GET", f"/incidents/{created['incident_id']}", tokens["call_taker"]).json()
    assert detail["location_source"] == "geocoded" and detail["geocode"]["source"] == "gazetteer"
    api(
        service,
        "POST",
        f"/incidents/{created['incident_id']}/location",
        tokens["call_taker"],
        json={"lat": -7.7406, "lon": 113.2178},
    )  # actually at the Mayangan police post (POL-02)
    eventually(lambda: texts_to(sandbox(service), UNIT_PHONES["POL-02"]))
    detail = api(service, "GET", f"/incidents/{created['incident_id']}", tokens["call_taker"]).json()
    assert (detail["lat"], detail["lon"], detail["location_source"]) == (-7.7406, 113.2178, "operator")


def test_a_call_for_two_services_pages_one_unit_of_each_and_resolves_when_both_have(
    start_service: Start, roster: None, sessions: sessionmaker[Session], tokens: dict[str, str]
) -> None:
    from tests.responder_helpers import reply_sms

    service = start_service(escalation=SLOW)
    created = api(
        service,
        "POST",
        "/calls",
        tokens["call_taker"],
        json={**CALL, "call_id": "C-multi", "services": ["police", "ambulance"]},
    ).json()
    [police] = eventually(lambda: texts_to(sandbox(service), UNIT_PHONES["POL-01"]))
    [ambulance] = eventually(lambda: texts_to(sandbox(service), UNIT_PHONES["AMB-01"]))
    assert police.startswith("DARURAT POLISI") and ambulance.startswith("DARURAT AMBULANS")
    for phone in (UNIT_PHONES["POL-01"], UNIT_PHONES["AMB-01"]):
        reply_sms(service, phone, "YA")
    reply_sms(service, UNIT_PHONES["POL-01"], "SELESAI")

    def state() -> str:
        return str(api(service, "GET", f"/incidents/{created['incident_id']}", tokens["call_taker"]).json()["state"])

    eventually(lambda: state() == "acknowledged")  # police done, ambulance still working
    reply_sms(service, UNIT_PHONES["AMB-01"], "SELESAI")
    eventually(lambda: state() == "resolved")


def test_a_dispatcher_can_assign_escalate_cancel_and_close(
    start_service: Start, roster: None, sessions: sessionmaker[Session], tokens: dict[str, str]
) -> None:
    service = start_service(escalation=SLOW)
    dispatcher = tokens["dispatcher"]
    first = api(service, "POST", "/calls", tokens["call_taker"], json=CALL).json()["incident_id"]
    eventually(lambda: texts_to(sandbox(service), UNIT_PHONES["POL-01"]))
    assigned = api(service, "POST", f"/incidents/{first}/assign", dispatcher, json={"unit_id": "POL-04"})
    assert assigned.status_code == 200
    eventually(lambda: texts_to(sandbox(service), UNIT_PHONES["POL-04"]))
    wrong_service = {"unit_id": "AMB-01", "service": "police"}
    mismatch = api(service, "POST", f"/incidents/{first}/assign", dispatcher, json=wrong_service)
    assert mismatch.status_code == 409 and "ambulance unit" in mismatch.json()["error"]
    assert api(service, "POST", f"/incidents/{first}/escalate", dispatcher, json={}).status_code == 200
    eventually(lambda: texts_to(sandbox(service), UNIT_PHONES["SUP-POL"]))
    closed = api(service, "POST", f"/incidents/{first}/close", dispatcher, json={"disposition": "false_alarm"})
    assert closed.json()["state"] == "resolved"
    assert api(service, "POST", f"/incidents/{first}/cancel", dispatcher, json={"reason": "x"}).status_code == 409
    second = api(service, "POST", "/calls", tokens["call_taker"], json={**CALL, "call_id": "C-2"}).json()
    cancelled = api(
        service,
        "POST",
        f"/incidents/{second['incident_id']}/cancel",
        dispatcher,
        json={"reason": "caller called back: resolved"},
    )
    assert cancelled.json()["state"] == "cancelled"
    listed = api(service, "GET", "/incidents?open=false", tokens["call_taker"]).json()["incidents"]
    assert {i["id"] for i in listed} == {first, second["incident_id"]}
    units = api(service, "GET", "/units", tokens["call_taker"]).json()["units"]
    assert {u["id"] for u in units} >= {"POL-01", "AMB-01"}
    devices = api(service, "GET", "/devices", tokens["call_taker"]).json()["devices"]
    assert len(devices) == 12
