"""A press over the real broker becomes exactly one incident, with a timeline and a status reply."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from devices.models import Device
from devices.simulator import SimulatedDevice
from dispatch.models import InboundMessage, Incident, TimelineEvent
from dispatch.service import DispatchService
from foundation.db import transaction
from tests.conftest import count, eventually

Start = Callable[..., DispatchService]


def incidents(sessions: sessionmaker[Session]) -> list[Incident]:
    with sessions() as session:
        return list(session.execute(select(Incident).order_by(Incident.id)).scalars())


# The intake's own events; dispatching adds its own (tested in test_responder_loop.py).
INTAKE_EVENTS = (
    "press_received",
    "press_repeated",
    "flagged_for_review",
    "cancelled",
    "cancelled_by_resident",
)


def events(sessions: sessionmaker[Session], incident_id: int) -> list[str]:
    with sessions() as session:
        rows = session.execute(
            select(TimelineEvent.kind)
            .where(TimelineEvent.incident_id == incident_id, TimelineEvent.kind.in_(INTAKE_EVENTS))
            .order_by(TimelineEvent.id)
        )
        return list(rows.scalars())


def test_a_press_opens_an_incident_and_the_device_hears_received(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    start_service()
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        press_id = button.press(ts="2026-11-23T08:00:00+07:00", lat=-7.7540, lon=113.2160, accuracy_m=8, battery=77)
        status = button.wait_status(press_id)
    assert status["state"] == "received"
    [incident] = incidents(sessions)
    assert status["incident_id"] == incident.id
    assert (incident.device_id, incident.press_id, incident.service) == ("BTN-0001", press_id, "police")
    assert (incident.lat, incident.lon, incident.location_source) == (-7.7540, 113.2160, "device_gps")
    assert incident.source_ts is not None and incident.source_ts.isoformat() == "2026-11-23T01:00:00+00:00"
    assert incident.opened_at > incident.source_ts  # server time is kept apart from the device's clock
    assert events(sessions, incident.id) == ["press_received"]
    with sessions() as session:
        device = session.get_one(Device, "BTN-0001")
        assert device.battery == 77
        assert device.last_seen_at == incident.opened_at  # seen when its press was taken


def test_the_same_press_delivered_three_times_makes_one_incident(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    start_service()
    with SimulatedDevice(broker_url, "BTN-0002") as button:
        for _ in range(3):
            button.press("retry-1")
            # Every press is answered with the incident's current state (dispatch may have begun).
            assert button.wait_status("retry-1")["state"] in ("received", "dispatched")
    [incident] = incidents(sessions)
    # The "dispatched" status can answer wait_status before a repeat is handled: wait for the log.
    eventually(lambda: events(sessions, incident.id) == ["press_received", "press_repeated", "press_repeated"])
    assert count(sessions, InboundMessage, InboundMessage.outcome == "duplicate") == 2
    # Each event names the message it came from, and that message's log row names the incident.
    with sessions() as session:
        logged = session.execute(
            select(TimelineEvent.kind, InboundMessage.outcome, InboundMessage.incident_id)
            .join(InboundMessage, InboundMessage.id == TimelineEvent.data["inbound_message_id"].as_integer())
            .where(TimelineEvent.incident_id == incident.id)
            .order_by(TimelineEvent.id)
        ).all()
    assert [tuple(row) for row in logged] == [
        ("press_received", "accepted", incident.id),
        ("press_repeated", "duplicate", incident.id),
        ("press_repeated", "duplicate", incident.id),
    ]


def test_without_location_or_service_the_registered_ones_are_used(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    start_service()
    with SimulatedDevice(broker_url, "BTN-0005") as button:
        button.wait_status(button.press())
    [incident] = incidents(sessions)
    assert (incident.service, incident.location_source) == ("ambulance", "device_registered")
    assert (incident.lat, incident.lon) == (-7.7741, 113.1990)


def test_a_press_may_name_another_service_than_the_registered_one(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    start_service()
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        button.wait_status(button.press(service="ambulance"))
    assert incidents(sessions)[0].service == "ambulance"


def test_a_press_from_an_unknown_device_is_recorded_and_flagged_for_a_human(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    start_service()
    with SimulatedDevice(broker_url, "STRANGER-9") as button:
        status = button.wait_status(button.press(lat=-7.75, lon=113.21))
    assert status["needs_review"] is True
    [incident] = incidents(sessions)
    assert incident.needs_review and incident.review_reason == "unregistered device"
    assert incident.state == "received"  # never auto-dispatched
    assert incident.service is None
    assert events(sessions, incident.id) == ["press_received", "flagged_for_review"]


def test_a_cancel_within_the_grace_window_closes_the_incident(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    start_service(intake={"cancel_grace_s": 60})
    with SimulatedDevice(broker_url, "BTN-0003") as button:
        press_id = button.press()
        button.wait_status(press_id)
        button.publish("cancel", {"press_id": press_id})
        eventually(lambda: button.wait_status(press_id)["state"] == "cancelled")
    [incident] = incidents(sessions)
    assert (incident.state, incident.disposition) == ("cancelled", "cancelled_within_grace")
    assert incident.closed_at is not None
    assert events(sessions, incident.id) == ["press_received", "cancelled"]


def test_a_late_cancel_is_recorded_but_leaves_the_incident_open_for_a_dispatcher(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    start_service(intake={"cancel_grace_s": 0})
    with SimulatedDevice(broker_url, "BTN-0003") as button:
        press_id = button.press()
        button.wait_status(press_id)
        button.publish("cancel", {"press_id": press_id})
        eventually(lambda: button.wait_status(press_id).get("needs_review"))
    [incident] = incidents(sessions)
    assert incident.state in ("received", "dispatched")
    assert incident.disposition == "cancelled_by_resident"
    assert incident.needs_review
    assert events(sessions, incident.id) == ["press_received", "cancelled_by_resident"]


def test_a_heartbeat_updates_last_seen_battery_and_signal(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    start_service()
    with SimulatedDevice(broker_url, "BTN-0007", listen=False) as button:
        button.publish("heartbeat", {"ts": "2026-11-23T01:00:00Z", "battery": 64, "rssi": -81})

    def seen() -> Device | None:
        with sessions() as session:
            device = session.get_one(Device, "BTN-0007")
            return device if device.last_seen_at else None

    device = eventually(seen)
    assert (device.battery, device.rssi) == (64, -81)


def test_the_timeline_cannot_be_changed_or_deleted(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    start_service()
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        button.wait_status(button.press())
    for statement in ("UPDATE timeline_events SET kind = 'edited'", "DELETE FROM timeline_events"):
        with pytest.raises(DBAPIError, match="append-only"), transaction(sessions) as session:
            session.connection().exec_driver_sql(statement)
    assert events(sessions, incidents(sessions)[0].id) == ["press_received"]
