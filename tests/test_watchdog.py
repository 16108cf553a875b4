"""A process that looks alive but does nothing must say so; a lost MQTT session is an alarm.

/healthz answers 503 while a scheduler job stands still (here: held up by a database lock
another connection keeps), and 200 "degraded" after the broker lost our session.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import paho.mqtt.client as mqtt
import requests
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from devices.gateway import BrokerAddress
from dispatch.escalation import schedule
from dispatch.escalation_policy import StepRef
from dispatch.models import Assignment, Incident, TimelineEvent
from dispatch.service import DispatchService
from dispatch.watchdog import Watchdog
from foundation.clock import utcnow
from foundation.db import transaction
from tests.conftest import eventually

Start = Callable[..., DispatchService]


def health(service: DispatchService) -> dict[str, Any]:
    try:
        response = requests.get(f"http://127.0.0.1:{service.web_port}/healthz", timeout=5)
    except requests.RequestException as exc:
        return {"http": 0, "error": str(exc)}
    return {"http": response.status_code, **response.json()}


@contextmanager
def steps_table_locked(engine: Engine) -> Iterator[None]:
    """Another connection holds the lock the steps job needs (SQLite: the write lock)."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            transaction = connection.begin()
            connection.exec_driver_sql("LOCK TABLE escalation_steps IN ACCESS EXCLUSIVE MODE")
        else:
            transaction = connection.begin()  # BEGIN IMMEDIATE: the write lock (foundation.db)
            connection.exec_driver_sql("UPDATE escalation_steps SET state = state")
        try:
            yield
        finally:
            transaction.rollback()


def test_a_job_held_up_past_the_limit_makes_healthz_503_until_it_moves_again(
    start_service: Start, engine: Engine, caplog: Any
) -> None:
    service = start_service(watchdog={"stall_after_s": 2})
    assert health(service)["http"] == 200
    with steps_table_locked(engine):
        # Both jobs need the lock: each is reported once it has stood still past the limit.
        stalled = eventually(lambda: "job steps" in (h := health(service)).get("stalled", {}) and h, timeout=20)
        assert (stalled["http"], stalled["status"]) == (503, "failing")
        eventually(lambda: watchdog_said(caplog, "job steps: no progress"))
    eventually(lambda: health(service)["http"] == 200, timeout=30)
    eventually(lambda: watchdog_said(caplog, "job steps moves again"))


def watchdog_said(caplog: Any, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records if r.name == "dispatch.watchdog")


def test_a_job_that_keeps_running_on_time_is_no_stall() -> None:
    watchdog = Watchdog(stall_after_s=0.2, gateway_stalled_for=lambda: 0.0)
    watchdog.watch("outbox", every_s=0.1)
    for _ in range(5):
        time.sleep(0.1)
        watchdog.beat("outbox")  # a slow provider, but each request finishes
        assert watchdog.stalls() == {}
    time.sleep(0.4)
    assert set(watchdog.stalls()) == {"job outbox"}


def test_received_messages_with_nothing_committed_are_a_stall() -> None:
    waited = [0.0]
    watchdog = Watchdog(stall_after_s=1, gateway_stalled_for=lambda: waited[0])
    assert watchdog.stalls() == {}
    waited[0] = 5.0
    assert set(watchdog.stalls()) == {"mqtt handler"}


def test_a_broker_that_lost_our_session_is_reported_as_an_alarm(start_service: Start, broker_url: str) -> None:
    service = start_service(mqtt={"reconnect_max_s": 1})
    assert "degraded" not in health(service)
    # Someone connects with our client id and a clean session: the broker closes our connection
    # and throws our session (and anything queued in it) away.
    address = BrokerAddress.from_url(broker_url)
    impostor = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=service.settings.mqtt.client_id, clean_session=True)
    impostor.username_pw_set(address.username or f"impostor-{uuid.uuid4().hex[:6]}", address.password)
    impostor.connect(address.host, address.port)
    impostor.loop_start()
    time.sleep(0.5)
    impostor.disconnect()
    impostor.loop_stop()

    report = eventually(lambda: health(service).get("degraded"), timeout=20)
    assert "lost at" in report["mqtt session"]
    assert service.gateway.sessions_lost == 1
    assert service.metrics.mqtt_sessions_lost._value.get() == 1
    assert eventually(lambda: service.gateway.connected, timeout=20)


def test_an_engine_behind_its_timers_is_one_alarm_for_the_service_not_one_per_incident(
    start_service: Start, sessions: sessionmaker[Session], caplog: Any
) -> None:
    service = start_service(escalation={"overdue_after_s": 10})
    service.scheduler.pause_job("steps")  # the engine is busy elsewhere: nothing due gets executed
    now = utcnow()
    with transaction(sessions) as session:
        for n in range(20):
            incident = Incident(
                source="press", device_id="BTN-0001", press_id=f"late-{n}", service="police", lat=-7.75, lon=113.2
            )
            session.add(incident)
            session.flush()
            assignment = Assignment(incident_id=incident.id, service="police", excluded={})
            session.add(assignment)
            session.flush()
            schedule(session, assignment, StepRef(0, 0), "notify_unit", now - timedelta(seconds=45))
    service.audit()
    # The oldest step was due 45 s before `now`; the audit ran a moment later, so "behind"
    # is 45 s plus however long this machine took to get here (rounded to whole seconds).
    late = 45 + (utcnow() - now).total_seconds()
    report = health(service)["degraded"]["escalation"]
    behind_s = re.fullmatch(r"behind by (\d+) s \(20 steps due\)", report)
    assert behind_s and 45 <= int(behind_s.group(1)) <= math.ceil(late), report
    assert service.metrics.escalation_steps_due._value.get() == 20
    assert 45 <= service.metrics.escalation_behind._value.get() <= late
    alarms = [r.getMessage() for r in caplog.records if "behind by" in r.getMessage()]
    assert alarms == [f"escalation is behind by {behind_s.group(1)} s: 20 steps due, not yet run"]
    with sessions() as session:
        assert session.execute(select(func.count()).select_from(TimelineEvent)).scalar_one() == 0

    service.scheduler.resume_job("steps")
    eventually(lambda: service.escalation.next_due_at() is None or service.escalation.next_due_at() > utcnow())
    service.audit()
    assert "escalation" not in health(service).get("degraded", {})
