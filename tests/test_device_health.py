"""Device supervision: silent and low-battery buttons raise one alert per episode."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from devices.models import Device
from devices.simulator import SimulatedDevice
from dispatch.device_health import HealthPolicy, check_devices
from dispatch.models import TimelineEvent
from dispatch.service import DispatchService
from foundation.clock import utcnow
from foundation.db import transaction
from tests.conftest import eventually

POLICY = HealthPolicy(supervision_interval_s=900, low_battery_pct=20)


def device_events(sessions: sessionmaker[Session], device_id: str) -> list[str]:
    with sessions() as session:
        query = select(TimelineEvent.kind).where(TimelineEvent.device_id == device_id)
        return list(session.execute(query.order_by(TimelineEvent.id)).scalars())


def run_check(sessions: sessionmaker[Session], minutes_from_now: float) -> list[str]:
    with transaction(sessions) as session:
        return check_devices(session, utcnow() + timedelta(minutes=minutes_from_now), POLICY)


def test_a_device_silent_past_its_interval_raises_one_alert_not_one_per_check(
    sessions: sessionmaker[Session], roster: None
) -> None:
    assert run_check(sessions, 0) == []
    raised = run_check(sessions, 16)
    # BTN-0005 has its own 10-minute interval; every other device uses the 15-minute default.
    assert "BTN-0005:silent" in raised and "BTN-0001:silent" in raised
    assert run_check(sessions, 17) == []
    assert device_events(sessions, "BTN-0001") == ["device_silent"]


def test_the_per_device_interval_overrides_the_default(sessions: sessionmaker[Session], roster: None) -> None:
    assert run_check(sessions, 11) == ["BTN-0005:silent"]


def test_low_battery_alerts_once_and_clears_when_charged(sessions: sessionmaker[Session], roster: None) -> None:
    with transaction(sessions) as session:
        session.get_one(Device, "BTN-0002").battery = 15
    assert run_check(sessions, 0) == ["BTN-0002:low_battery"]
    assert run_check(sessions, 0) == []
    with transaction(sessions) as session:
        session.get_one(Device, "BTN-0002").battery = 95
    run_check(sessions, 0)
    assert device_events(sessions, "BTN-0002") == ["device_low_battery", "device_battery_ok"]


def test_a_heartbeat_from_a_silent_device_records_its_recovery(
    start_service: Callable[..., DispatchService],
    roster: None,
    sessions: sessionmaker[Session],
    broker_url: str,
) -> None:
    # Only the check at start and the ones called here run: the periodic job is an hour away.
    service = start_service(devices={"supervision_interval_s": 0.5, "health_check_every_s": 3600})

    def button_9_alerted() -> bool:
        service.check_device_health()
        return "device_silent" in device_events(sessions, "BTN-0009")

    eventually(button_9_alerted)
    with SimulatedDevice(broker_url, "BTN-0009", listen=False) as button:
        button.publish("heartbeat", {"battery": 80})
    eventually(lambda: device_events(sessions, "BTN-0009")[-1:] == ["device_recovered"])


def test_a_check_skips_a_button_that_intake_holds_instead_of_deadlocking_with_it(
    sessions: sessionmaker[Session], roster: None, engine: Engine
) -> None:
    # An intake batch locks buttons in the order their presses came (here BTN-0007, then
    # BTN-0002), the check in id order. Were the check to wait, each would wait for the other.
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks: SQLite serialises every writer on its one write lock")
    with sessions() as intake, intake.begin():
        intake.execute(update(Device).where(Device.id == "BTN-0007").values(battery=90))
        with sessions() as check, check.begin():
            check.execute(text("SET LOCAL lock_timeout = '5s'"))  # a wait fails the test, not hangs it
            raised = check_devices(check, utcnow() + timedelta(minutes=16), POLICY)
        intake.execute(update(Device).where(Device.id == "BTN-0002").values(battery=90))
    assert "BTN-0001:silent" in raised and "BTN-0002:silent" in raised
    assert "BTN-0007:silent" not in raised  # heard from right now: not silent
    assert run_check(sessions, 16) == ["BTN-0007:silent"]  # once intake let go, the next check sees it
